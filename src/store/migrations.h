/* migrations.h - the sql/NNN_*.sql files, embedded at build time (cmake/embed_sql.cmake). */
#ifndef CATRACA_STORE_MIGRATIONS_H
#define CATRACA_STORE_MIGRATIONS_H

#include <stddef.h>

struct migration {
    int version;              /* NNN */
    const char *name;         /* the file name */
    const unsigned char *sql; /* NUL-terminated */
};

extern const struct migration migrations[]; /* ascending versions */
extern const size_t migration_count;

#endif
