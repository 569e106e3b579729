/*
 * codec.h - the wire format of commands and outcomes, as stored in the log
 * and the store.
 *
 * Format version 3, little-endian, no padding. Older versions are still read:
 * version 2 is version 3 without the event spec's last 16 bytes, the schedule
 * (opens_at_ms, prequeue_ms; read as 0, 0: not scheduled), and version 1 is
 * version 2 without the byte before them, the line policy (read as
 * ENGINE_LINE_BOUNDED). Records other than CREATE_EVENT are the same in every
 * version.
 *   byte 0      format version (CODEC_VERSION)
 *   byte 1      type (enum engine_command_type / engine_outcome_type)
 *   then the type's fields in declaration order: integers fixed-width LE,
 *   strings as one length byte then the bytes (no NUL), byte arrays raw.
 * A decoder accepts exactly one record: trailing bytes are an error.
 *
 * Decoding is safe on any input (it is fuzzed): it never reads past `length`,
 * and returns 0 with *out fully written, or an error with *out zeroed:
 * CATRACA_E_TRUNCATED, CATRACA_E_VERSION, CATRACA_E_CORRUPT (unknown type,
 * string too long or containing NUL, count or enum out of range, trailing
 * bytes). A decoded command can still be semantically wrong (quantity 0, an
 * unknown category): that is for the engine to answer, not the codec.
 *
 * Encoding returns 0 and the length, CATRACA_E_NOSPACE when `capacity` is too
 * small, or CATRACA_E_INVALID for a value the format cannot carry (a string
 * longer than its limit, an unknown type). Buffers of
 * CATRACA_COMMAND_ENCODED_MAX / CATRACA_OUTCOME_ENCODED_MAX always suffice.
 * decode(encode(x)) == x field by field (strings compared as C strings).
 */
#ifndef CATRACA_CORE_CODEC_H
#define CATRACA_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/wire.h"

#define CODEC_VERSION 3
#define CODEC_VERSION_OLDEST 1

int codec_command_encode(const struct engine_command *command, uint8_t *buffer, size_t capacity,
                         size_t *length);
int codec_command_decode(const uint8_t *buffer, size_t length, struct engine_command *out);
/*
 * The same answer as codec_command_decode() and the same values in every field the record's
 * type uses, without zeroing the rest of *out (a command is 3.7 KB, most of it a CREATE_EVENT's
 * spec): for a PURCHASE, CONFIRM, CANCEL, SET_STATE or TICK only type, now_ms and that type's
 * member of the union are written, its strings NUL-terminated at their length (the bytes after
 * the NUL and the other members keep whatever they held; the engine reads a string up to its
 * NUL). Any other type, and any record refused, goes through codec_command_decode() (*out
 * zeroed on error). For replays that decode a whole log (catraca audit).
 */
int codec_command_decode_fields(const uint8_t *buffer, size_t length, struct engine_command *out);

int codec_outcome_encode(const struct engine_outcome *outcome, uint8_t *buffer, size_t capacity,
                         size_t *length);
int codec_outcome_decode(const uint8_t *buffer, size_t length, struct engine_outcome *out);

/* The event spec's part of the format, shared with engine snapshots. */
void codec_event_spec_put(struct wire_writer *writer, const struct engine_event_spec *spec);
void codec_event_spec_get(struct wire_reader *reader, struct engine_event_spec *spec);
/* The spec as format `version` wrote it (engine snapshots of format 1 carry version 1 specs). */
void codec_event_spec_get_version(struct wire_reader *reader, struct engine_event_spec *spec,
                                  uint8_t version);

#endif
