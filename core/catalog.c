/* Opening the catalog, and the transaction runner every call goes
 * through. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog_internal.h"
#include "log.h"

int64_t sl_catalog_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sqlite3 *catalog_db(sl_catalog *cat) { return cat->db; }

/* Sleep before retry `attempt` (1, 2, ...): 1 ms doubling up to 50 ms. */
static void backoff(int attempt) {
  long sleep_us = attempt < 7 ? 1000L << (attempt - 1) : 50000;
  if (sleep_us > 50000) sleep_us = 50000;
  struct timespec pause = {0, sleep_us * 1000};
  nanosleep(&pause, NULL);
}

/* SQLite's busy handler covers most waits for a lock. Some SQLITE_BUSY
 * results return without calling it: BEGIN IMMEDIATE while another
 * connection recovers the WAL index, and PRAGMA journal_mode = WAL while
 * another connection opens the same new file. Those steps are retried
 * here with short sleeps until `timeout_ms` has passed. */
static int retry_busy(sqlite3 *db, int timeout_ms, const char *what,
                      int (*step)(sqlite3 *db, sl_error *err), sl_error *err) {
  int64_t deadline = monotonic_ms() + timeout_ms;
  for (int attempt = 1;; attempt++) {
    int rc = step(db, err);
    if (rc != -EBUSY) return rc;
    if (monotonic_ms() >= deadline) {
      SL_WARN("catalog.busy", "step=\"%s\" attempts=%d timeout_ms=%d", what, attempt,
              timeout_ms);
      return rc;
    }
    backoff(attempt);
  }
}

static int begin_immediate_once(sqlite3 *db, sl_error *err) {
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : catalog_sqlite_error(db, rc, err, "begin write transaction");
}

int catalog_begin_immediate(sqlite3 *db, int timeout_ms, sl_error *err) {
  return retry_busy(db, timeout_ms, "begin", begin_immediate_once, err);
}

static int begin(sl_catalog *cat, catalog_txn_kind kind, sl_error *err) {
  if (kind == CATALOG_WRITE) return catalog_begin_immediate(cat->db, cat->busy_timeout_ms, err);
  int rc = sqlite3_exec(cat->db, "BEGIN", NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : catalog_sqlite_error(cat->db, rc, err, "begin transaction");
}

int catalog_run(sl_catalog *cat, catalog_txn_kind kind, catalog_txn_fn fn, void *ctx,
                sl_error *err) {
  if (cat == NULL) return sl_error_set(err, EINVAL, "no catalog given");
  pthread_mutex_lock(&cat->lock);
  int rc = begin(cat, kind, err);
  if (rc == 0) {
    rc = fn(cat, ctx, err);
    if (rc >= 0) {
      int src = sqlite3_exec(cat->db, "COMMIT", NULL, NULL, NULL);
      if (src != SQLITE_OK) rc = catalog_sqlite_error(cat->db, src, err, "commit");
    }
    if (rc < 0 && !sqlite3_get_autocommit(cat->db))
      sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
  }
  pthread_mutex_unlock(&cat->lock);
  return rc;
}

/* Create the file with mode 0600 unless it exists, so that SQLite (which
 * gives its -wal and -shm files the mode of the database) never makes a
 * world-readable catalog. O_NOFOLLOW rejects a symlink at `path`. */
static int create_file(const char *path, sl_error *err) {
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ELOOP)
    return sl_error_set(err, EINVAL, "catalog path is a symlink: %s", path);
  if (fd < 0) return sl_error_errno(err, errno, "cannot open catalog %s", path);
  close(fd);
  return 0;
}

static int read_cursor_key(sl_catalog *cat, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db, "SELECT value FROM meta WHERE key = 'cursor_key'", &stmt,
                           err);
  if (rc < 0) return rc;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == CATALOG_CURSOR_KEY_SIZE) {
    memcpy(cat->cursor_key, sqlite3_column_blob(stmt, 0), CATALOG_CURSOR_KEY_SIZE);
    rc = 0;
  } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    rc = sl_error_set(err, EIO, "catalog has no valid cursor key in table meta");
  } else {
    rc = catalog_sqlite_error(cat->db, rc, err, "read cursor key");
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int set_wal_once(sqlite3 *db, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "PRAGMA journal_mode = WAL", &stmt, err);
  if (rc < 0) return rc;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const char *mode = (const char *)sqlite3_column_text(stmt, 0);
    rc = mode != NULL && strcmp(mode, "wal") == 0
             ? 0
             : sl_error_set(err, EIO, "cannot switch catalog to WAL mode (mode is %s)",
                            mode != NULL ? mode : "unknown");
  } else {
    rc = catalog_sqlite_error(db, rc, err, "set WAL mode");
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Connection settings and schema. The version is read before anything
 * is written, so a database from a newer sandlot stays untouched.
 * synchronous=NORMAL in WAL mode keeps every commit across a crash of the
 * process; a power loss may lose the last commits. */
static int configure(sl_catalog *cat, sl_error *err) {
  sqlite3_busy_timeout(cat->db, cat->busy_timeout_ms);
  sqlite3_extended_result_codes(cat->db, 1);
  sqlite3_db_config(cat->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  sqlite3_db_config(cat->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);

  int version = 0;
  int rc = catalog_schema_version(cat->db, &version, err);
  if (rc == 0 && version > SL_CATALOG_SCHEMA_VERSION)
    rc = sl_error_set(err, ENOTSUP,
                      "catalog schema version %d is newer than this sandlot supports (%d); "
                      "use a newer sandlot",
                      version, SL_CATALOG_SCHEMA_VERSION);
  if (rc == 0) rc = retry_busy(cat->db, cat->busy_timeout_ms, "set WAL mode", set_wal_once, err);
  if (rc == 0) rc = catalog_exec(cat->db, "PRAGMA synchronous = NORMAL", err);
  if (rc == 0 && version < SL_CATALOG_SCHEMA_VERSION)
    rc = catalog_migrate(cat->db, SL_CATALOG_SCHEMA_VERSION, cat->busy_timeout_ms, err);
  if (rc == 0) rc = catalog_exec(cat->db, "PRAGMA foreign_keys = ON", err);
  if (rc == 0) rc = read_cursor_key(cat, err);
  return rc;
}

int sl_catalog_open(const char *path, sl_catalog **out, sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output handle given");
  *out = NULL;
  if (path == NULL || path[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid catalog path: empty");
  if (strlen(path) >= PATH_MAX)
    return sl_error_set(err, ENAMETOOLONG, "catalog path too long: %.64s...", path);
  int rc = create_file(path, err);
  if (rc < 0) return rc;

  sl_catalog *cat = calloc(1, sizeof *cat);
  if (cat == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  pthread_mutex_init(&cat->lock, NULL);
  cat->busy_timeout_ms = SL_CATALOG_DEFAULT_BUSY_TIMEOUT_MS;
  memcpy(cat->path, path, strlen(path) + 1);

  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW |
              SQLITE_OPEN_EXRESCODE;
  int src = sqlite3_open_v2(path, &cat->db, flags, NULL);
  if (src != SQLITE_OK) {
    int code = sqlite3_system_errno(cat->db);
    rc = code > 0 ? sl_error_errno(err, code, "cannot open catalog")
                  : catalog_sqlite_error(cat->db, src, err, "cannot open catalog");
  } else {
    rc = configure(cat, err);
  }
  if (rc < 0) {
    sl_catalog_close(cat);
    return sl_error_wrap(err, "catalog %s", path);
  }
  SL_DEBUG("catalog.open", "path=%s schema=%d", path, SL_CATALOG_SCHEMA_VERSION);
  *out = cat;
  return 0;
}

int sl_catalog_open_store(const sl_store *store, sl_catalog **out, sl_error *err) {
  char path[PATH_MAX];
  int rc = sl_store_catalog_path(store, path, sizeof path, err);
  return rc < 0 ? rc : sl_catalog_open(path, out, err);
}

void sl_catalog_close(sl_catalog *cat) {
  if (cat == NULL) return;
  sqlite3_close_v2(cat->db);
  pthread_mutex_destroy(&cat->lock);
  free(cat);
}

void sl_catalog_set_busy_timeout(sl_catalog *cat, int ms) {
  if (cat == NULL) return;
  pthread_mutex_lock(&cat->lock);
  cat->busy_timeout_ms = ms < 0 ? 0 : ms;
  sqlite3_busy_timeout(cat->db, cat->busy_timeout_ms);
  pthread_mutex_unlock(&cat->lock);
}

void sl_id_list_free(sl_id_list *list) {
  if (list == NULL) return;
  free(list->ids);
  list->ids = NULL;
  list->count = 0;
}
