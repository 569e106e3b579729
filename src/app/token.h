/*
 * token.h - `catraca token`: mints an HS256 JWT for a subject, a role and a lifetime with the
 * same secret the gateways check (CATRACA_JWT_SECRET, --jwt-secret-file, --config), so an
 * operator or a script has admin and payments tokens without a hand-written minter.
 */
#ifndef CATRACA_APP_TOKEN_H
#define CATRACA_APP_TOKEN_H

#define TOKEN_LIFETIME_S_MAX (366 * 24 * 3600)

/*
 * argv[1] is "token". Prints the token and a newline on stdout. Returns the exit status: 0, or 2
 * after a usage error (a missing or bad option, a refused secret).
 */
int token_main(int argc, char **argv);

/* "3600", "90s", "15m", "12h", "30d" -> seconds in 1..TOKEN_LIFETIME_S_MAX; -1 otherwise. */
long long token_parse_lifetime(const char *text);

#endif
