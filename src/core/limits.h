/*
 * limits.h - every hard bound of the engine and its codec, in one place.
 *
 * A limit is configured once and enforced at the edge (the gateway rejects
 * what the engine would refuse). Runtime pool sizes live in struct
 * engine_config; these are the compile-time maxima those sizes and the wire
 * format are checked against.
 */
#ifndef CATRACA_CORE_LIMITS_H
#define CATRACA_CORE_LIMITS_H

#include <assert.h>
#include <stdint.h>

/* Ids (event, category, customer, payment reference): 1..64 bytes, API.md. */
#define CATRACA_ID_MAX 64
/* Display names (event, category): bytes of UTF-8. */
#define CATRACA_NAME_MAX 128
/* Categories per event. Category indexes fit in a uint8_t. */
#define CATRACA_CATEGORIES_MAX 16
/* Tickets one purchase may ask for; the event's per_customer_limit is <= this. */
#define CATRACA_QUANTITY_MAX 10
/* Tickets per category. */
#define CATRACA_CAPACITY_MAX 10000000u
/* Hold duration bounds (1 s .. 24 h). */
#define CATRACA_HOLD_MS_MIN 1000
#define CATRACA_HOLD_MS_MAX (24 * 3600 * 1000)
/* Secret that derives ticket codes (from the CREATE_EVENT command). */
#define CATRACA_SECRET_BYTES 16
/* Scheduled on-sale: the pre-queue window lasts at most 7 days; the draw's seed is a
 * SHA-256 digest. */
#define CATRACA_PREQUEUE_MS_MAX (7LL * 24 * 3600 * 1000)
#define CATRACA_DRAW_SEED_BYTES 32
/* Pool sizes an engine may be configured with. Indexes are uint32_t. */
#define CATRACA_PURCHASES_MAX (1u << 26)
#define CATRACA_CUSTOMERS_MAX (1u << 26)

/* Encoded size bounds for the codec (see codec.h). */
#define CATRACA_COMMAND_ENCODED_MAX 4096
#define CATRACA_OUTCOME_ENCODED_MAX 192

static_assert(CATRACA_CATEGORIES_MAX <= 255, "category index is a uint8_t");
static_assert(CATRACA_QUANTITY_MAX <= 255, "quantity fits in a byte on the wire");
static_assert((uint64_t)CATRACA_CAPACITY_MAX * CATRACA_CATEGORIES_MAX < UINT32_MAX,
              "event-wide ticket counts fit in uint32_t");
static_assert(CATRACA_PURCHASES_MAX < UINT32_MAX / 2, "purchase hash table of 2x size fits");
static_assert(CATRACA_CUSTOMERS_MAX < UINT32_MAX / 2, "customer hash table of 2x size fits");
static_assert(CATRACA_ID_MAX < 256 && CATRACA_NAME_MAX < 256, "string lengths are one byte");
static_assert(CATRACA_COMMAND_ENCODED_MAX >=
                  64 + 2 * (CATRACA_ID_MAX + CATRACA_NAME_MAX + 2) + CATRACA_SECRET_BYTES +
                      CATRACA_CATEGORIES_MAX * (CATRACA_ID_MAX + CATRACA_NAME_MAX + 2 + 16) + 16,
              "the largest CREATE_EVENT fits the command encoding bound");

#endif
