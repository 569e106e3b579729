/*
 * error.h - the one table of error codes. 0 is success, errors are negative.
 */
#ifndef CATRACA_CORE_ERROR_H
#define CATRACA_CORE_ERROR_H

#define CATRACA_ERRNO_MAP(X)                                                                       \
    X(INVALID, -1, "invalid argument")                                                             \
    X(NOMEM, -2, "out of memory")                                                                  \
    X(TOO_LARGE, -3, "value exceeds a configured limit")                                           \
    X(NOSPACE, -4, "output buffer too small")                                                      \
    X(TRUNCATED, -5, "input ends before the record does")                                          \
    X(VERSION, -6, "unsupported format version")                                                   \
    X(CORRUPT, -7, "malformed record")                                                             \
    X(IO, -8, "input/output error")                                                                \
    X(UNAVAILABLE, -9, "backend unavailable")                                                      \
    X(FENCED, -10, "partition lease lost to another owner")                                        \
    X(FULL, -11, "queue full")                                                                     \
    X(TIMEOUT, -12, "timed out")                                                                   \
    X(NOTFOUND, -13, "not found")

enum catraca_error {
#define CATRACA_ERROR_ENUM(name, value, text) CATRACA_E_##name = (value),
    CATRACA_ERRNO_MAP(CATRACA_ERROR_ENUM)
#undef CATRACA_ERROR_ENUM
};

/* A static string for any value; "unknown error" for codes not in the table. */
const char *catraca_strerror(int error);

#endif
