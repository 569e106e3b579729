/*
 * jwt_secret.h - where an HS256 secret comes from and when it is refused. Anyone holding the
 * secret mints admin tokens, so a secret that can be guessed is refused at start, before any
 * token is signed or checked with it: shorter than JWT_SECRET_MIN bytes, or equal to an example
 * printed in this repository (README, docs/, deploy/, scripts/: an example copied unchanged is
 * public). tests/system/test_config.py finds every example there and checks it is refused.
 */
#ifndef CATRACA_GATEWAY_JWT_SECRET_H
#define CATRACA_GATEWAY_JWT_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define JWT_SECRET_MIN 32  /* bytes: RFC 7518 3.2 asks a key at least as long as the hash */
#define JWT_SECRET_MAX 256 /* bytes read; a longer secret is refused, not cut */
/* What every refusal tells the operator to do. */
#define JWT_SECRET_ADVICE "make one with: openssl rand -base64 48"

/* NULL when the secret may be used; otherwise why not (a sentence without the secret). */
const char *jwt_secret_weakness(const uint8_t *secret, size_t length);

/*
 * Reads the secret from the file at path into out (JWT_SECRET_MAX bytes): the whole file but one
 * trailing "\n" or "\r\n" (what `openssl rand -base64 48 > file` writes). Returns 0, or -1 with
 * a sentence in why (the file is missing, unreadable, empty or too long).
 */
int jwt_secret_read_file(const char *path, uint8_t *out, size_t *length, char *why,
                         size_t why_size);

#endif
