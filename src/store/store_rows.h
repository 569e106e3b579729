/*
 * store_rows.h - the byte formats every store adapter uses for the columns
 * that are not plain numbers: an event's spec (a codec CREATE_EVENT record),
 * its counters (per category seven little-endian uint32, capacity, available,
 * held, sold, waiting count, waiting quantity, returned, then
 * available_again_at_ms as a little-endian int64; rows from before the line
 * policy hold only the first six; then for a scheduled sale the draw: its state
 * byte and two little-endian uint32, the purchases pre-queued and deferred,
 * absent for any other sale and in rows from before the line policy) and ticket codes
 * (eight little-endian bytes each). One definition, so a database written by
 * one adapter reads the same in tools written against another.
 */
#ifndef CATRACA_STORE_STORE_ROWS_H
#define CATRACA_STORE_STORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_COUNTS_RECORD_BYTES 36
#define STORE_COUNTS_RECORD_BYTES_V1 24
#define STORE_COUNTS_DRAW_BYTES 9
#define STORE_COUNTS_BYTES_MAX                                                                     \
    (CATRACA_CATEGORIES_MAX * STORE_COUNTS_RECORD_BYTES + STORE_COUNTS_DRAW_BYTES)
#define STORE_TICKETS_BYTES_MAX (CATRACA_QUANTITY_MAX * 8)

/* spec into out[CATRACA_COMMAND_ENCODED_MAX]; 0 or a codec error. */
int store_spec_encode(const struct engine_event_spec *spec, uint8_t *out, size_t *length);
/* 0, or CATRACA_E_CORRUPT when the bytes are not a CREATE_EVENT record. */
int store_spec_decode(const uint8_t *in, size_t length, struct engine_event_spec *out);
void store_counts_encode(const struct store_event *event, uint8_t *out, size_t *length);
/* Reads as many categories as both the spec and the bytes have. */
void store_counts_decode(const uint8_t *in, size_t length, struct store_event *event);
/* Returns the byte length (ticket_count * 8; 0 for a count beyond the bound). */
/* True for the rows whose line facts are filled on read (WAITING, REJECTED line_full). */
bool store_row_needs_line_facts(const struct store_purchase *purchase);
/* Fills purchase->line from its event's row (is_known stays false for an unknown category). */
void store_line_facts_fill(const struct store_event *event, struct store_purchase *purchase);
size_t store_tickets_encode(const struct store_purchase *purchase, uint8_t *out);
void store_tickets_decode(const uint8_t *in, size_t length, struct store_purchase *purchase);
/* The same into codes[CATRACA_QUANTITY_MAX]; returns the count (0 for a blob of more). */
uint8_t store_tickets_decode_codes(const uint8_t *in, size_t length, uint64_t *codes);

#endif
