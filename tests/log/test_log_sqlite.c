/*
 * The SQLite log (src/log/log_sqlite.c, embedded mode) against the
 * conformance suite, on a real database file in a temporary directory, with
 * both of its faults injected from outside the adapter (no test seam in
 * log_sqlite.c, so production code is what is tested):
 *   - COMMIT fails: an auto-extension (sqlite3_auto_extension: run for every
 *     connection opened afterwards, the adapter's included) installs a commit
 *     hook that, when armed, returns non-zero once, which SQLite turns into a
 *     ROLLBACK of the transaction and SQLITE_CONSTRAINT_COMMITHOOK.
 *   - fsync fails: a VFS over the default one, registered as the new default
 *     before any connection opens, whose xSync fails once when armed with
 *     SQLITE_IOERR_FSYNC. The log runs with synchronous=FULL (the default of
 *     `catraca serve`), so a commit syncs the WAL before it counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "log/conformance_log.h"
#include "log/log_sqlite.h"

static char directory[64], path[128];

/* ---- COMMIT fails: a commit hook on every connection ------------------------------------- */

static atomic_int is_commit_failing;
static atomic_int commits_failed;

static int failing_commit_hook(void *context)
{
    (void)context;
    if (atomic_exchange(&is_commit_failing, 0) == 0)
        return 0;
    atomic_fetch_add(&commits_failed, 1);
    return 1; /* non-zero: SQLite rolls the transaction back */
}

static int install_commit_hook(sqlite3 *db, char **message, const void *api)
{
    (void)message;
    (void)api;
    sqlite3_commit_hook(db, failing_commit_hook, NULL);
    return SQLITE_OK;
}

/* ---- fsync fails: a VFS over the default one --------------------------------------------- */

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static atomic_int is_sync_failing;
static atomic_int syncs_failed;

struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* the real VFS's file, right after this struct */
};

#define REAL(file) (((struct fault_file *)(file))->real)

static int fault_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int fault_read(sqlite3_file *f, void *buffer, int amount, sqlite3_int64 offset)
{
    return REAL(f)->pMethods->xRead(REAL(f), buffer, amount, offset);
}
static int fault_write(sqlite3_file *f, const void *buffer, int amount, sqlite3_int64 offset)
{
    return REAL(f)->pMethods->xWrite(REAL(f), buffer, amount, offset);
}
static int fault_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int fault_sync(sqlite3_file *f, int flags)
{
    if (atomic_exchange(&is_sync_failing, 0) != 0) {
        atomic_fetch_add(&syncs_failed, 1);
        return SQLITE_IOERR_FSYNC;
    }
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int fault_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int fault_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}
static int fault_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}
static int fault_check_reserved_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int fault_file_control(sqlite3_file *f, int op, void *argument)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, argument);
}
static int fault_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int fault_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int fault_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}
static int fault_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
static void fault_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int fault_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}
static int fault_fetch(sqlite3_file *f, sqlite3_int64 offset, int amount, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), offset, amount, out);
}
static int fault_unfetch(sqlite3_file *f, sqlite3_int64 offset, void *page)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), offset, page);
}

static const sqlite3_io_methods fault_methods = {
    .iVersion = 3,
    .xClose = fault_close,
    .xRead = fault_read,
    .xWrite = fault_write,
    .xTruncate = fault_truncate,
    .xSync = fault_sync,
    .xFileSize = fault_file_size,
    .xLock = fault_lock,
    .xUnlock = fault_unlock,
    .xCheckReservedLock = fault_check_reserved_lock,
    .xFileControl = fault_file_control,
    .xSectorSize = fault_sector_size,
    .xDeviceCharacteristics = fault_device_characteristics,
    .xShmMap = fault_shm_map,
    .xShmLock = fault_shm_lock,
    .xShmBarrier = fault_shm_barrier,
    .xShmUnmap = fault_shm_unmap,
    .xFetch = fault_fetch,
    .xUnfetch = fault_unfetch,
};

static int fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                      int *out_flags)
{
    (void)vfs;
    struct fault_file *f = (struct fault_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set: set it only when the real file opened. */
    f->base.pMethods = f->real->pMethods != NULL ? &fault_methods : NULL;
    return rc;
}
static int fault_delete(sqlite3_vfs *vfs, const char *name, int sync_directory)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync_directory);
}
static int fault_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int fault_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, size, out);
}

static void fault_vfs_register(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    assert_non_null(real_vfs);
    fault_vfs = *real_vfs; /* randomness, sleep, clock, dlopen: the real ones */
    fault_vfs.pNext = NULL;
    fault_vfs.zName = "catraca-fault";
    fault_vfs.szOsFile = (int)sizeof(struct fault_file) + real_vfs->szOsFile;
    fault_vfs.xOpen = fault_open;
    fault_vfs.xDelete = fault_delete;
    fault_vfs.xAccess = fault_access;
    fault_vfs.xFullPathname = fault_full_pathname;
    assert_int_equal(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK); /* the default from now */
}

/* ---- the target -------------------------------------------------------------------------- */

static int sqlite_open(void *context, size_t read_max, struct catraca_log *out)
{
    (void)context;
    struct log_sqlite_options options = {
        .is_synchronous_full = true, .busy_timeout_ms = 5000, .read_max = read_max};
    return log_sqlite_open(path, &options, out);
}

static void fail_next_commit(void *context)
{
    (void)context;
    atomic_store(&is_commit_failing, 1);
}

static void fail_next_sync(void *context)
{
    (void)context;
    atomic_store(&is_sync_failing, 1);
}

/* ---- SQLite's own ------------------------------------------------------------------------ */

/* The faults did fire, once per round (a suite that passes because nothing failed proves
 * nothing): the conformance suite runs each fault on new events and on events written before. */
static void test_faults_fired(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&commits_failed), 2);
    assert_int_equal(atomic_load(&syncs_failed), 2);
    assert_int_equal(atomic_load(&is_commit_failing), 0);
    assert_int_equal(atomic_load(&is_sync_failing), 0);
}

/* A database that cannot be opened is an error at open, never a handle that fails later. */
static void test_open_unwritable(void **state)
{
    (void)state;
    struct log_sqlite_options options = {.busy_timeout_ms = 100, .read_max = 1};
    struct catraca_log log;
    assert_int_equal(log_sqlite_open("/nonexistent-directory/x.db", &options, &log), CATRACA_E_IO);
}

int main(void)
{
    snprintf(directory, sizeof(directory), "/tmp/catraca-log-sqlite-XXXXXX");
    if (mkdtemp(directory) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/log.db", directory);
    fault_vfs_register();
    sqlite3_auto_extension((void (*)(void))install_commit_hook);

    struct conformance_target target = {
        .name = "sqlite",
        .open = sqlite_open,
        .fail_next_commit = fail_next_commit,
        .fail_next_sync = fail_next_sync,
    };
    int failed = conformance_log_run(&target);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_fired),
        cmocka_unit_test(test_open_unwritable),
    };
    failed += cmocka_run_group_tests_name("sqlite_own", tests, NULL, NULL);
    char command[160];
    snprintf(command, sizeof(command), "rm -rf %s", directory);
    if (system(command) != 0)
        failed++;
    return failed;
}
