/* Shared between the catalog_*.c files and the catalog tests; not part of
 * the public API. */
#ifndef SANDLOT_CATALOG_INTERNAL_H
#define SANDLOT_CATALOG_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>

#include "catalog.h"

#define CATALOG_CURSOR_KEY_SIZE 16

struct sl_catalog {
  sqlite3 *db;
  pthread_mutex_t lock; /* held for the whole of each public call */
  int busy_timeout_ms;
  unsigned char cursor_key[CATALOG_CURSOR_KEY_SIZE];
  char path[PATH_MAX];
};

/* The connection of a handle, for tests that inspect the database. */
sqlite3 *catalog_db(sl_catalog *cat);

/* ---- transactions (catalog.c) ---- */

typedef enum { CATALOG_READ, CATALOG_WRITE } catalog_txn_kind;
typedef int (*catalog_txn_fn)(sl_catalog *cat, void *ctx, sl_error *err);

/* Lock the handle, begin a transaction (BEGIN IMMEDIATE for writes), call
 * fn, then commit when it returned >= 0 and roll back otherwise. */
int catalog_run(sl_catalog *cat, catalog_txn_kind kind, catalog_txn_fn fn, void *ctx,
                sl_error *err);

/* Run BEGIN IMMEDIATE, retrying on SQLITE_BUSY until `timeout_ms` has
 * passed. Fails with EBUSY then. */
int catalog_begin_immediate(sqlite3 *db, int timeout_ms, sl_error *err);

/* ---- SQLite helpers (catalog_sql.c) ---- */

/* Map an SQLite result code to an errno and fill `err` with "what: the
 * SQLite message". BUSY and LOCKED give EBUSY; UNIQUE and PRIMARY KEY
 * constraints EEXIST; other constraints EINVAL; NOMEM ENOMEM; FULL ENOSPC;
 * READONLY EROFS; NOTADB and CORRUPT EIO; the rest EIO. */
int catalog_sqlite_error(sqlite3 *db, int rc, sl_error *err, const char *what);

int catalog_exec(sqlite3 *db, const char *sql, sl_error *err);
int catalog_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt, sl_error *err);

/* Step a statement that returns no row; finalizes it. */
int catalog_step_done(sqlite3 *db, sqlite3_stmt *stmt, const char *what, sl_error *err);

/* Run a query whose first column of its first row is an integer into
 * `out` (0 when there is no row). Parameters are bound from `texts`, NULL
 * entries as NULL. */
int catalog_query_int(sqlite3 *db, const char *sql, const char *const *texts, int ntexts,
                      int64_t *out, sl_error *err);

/* Bind `text` to a parameter; NULL and "" bind SQL NULL. */
int catalog_bind_text(sqlite3_stmt *stmt, int index, const char *text);

/* Bind to the parameter `name` (":limit") when the statement has it. Text
 * is bound without a copy, so it must outlive the statement. */
void catalog_bind_named_text(sqlite3_stmt *stmt, const char *name, const char *value);
void catalog_bind_named_int(sqlite3_stmt *stmt, const char *name, int64_t value);
void catalog_copy_text(sqlite3_stmt *stmt, int col, char *buf, size_t size);
char *catalog_dup_text(sqlite3_stmt *stmt, int col);

/* ---- input checks (catalog_check.c) ---- */

int catalog_check_limit(int limit, sl_error *err);
int catalog_check_abs_path(const char *field, const char *path, sl_error *err);

/* Check a label map: NULL, or a JSON object of at most SL_LABELS_MAX
 * string values under valid keys. Writes the minified JSON ("{}" for NULL)
 * into a new heap string `*out`. */
int catalog_normalize_labels(sqlite3 *db, const char *labels, char **out, sl_error *err);

/* Check a JSON object of any values (sandbox options, at most
 * SL_OPTIONS_MAX bytes) or of string values (cgroups). */
int catalog_normalize_object(sqlite3 *db, const char *field, const char *json,
                             bool strings_only, char **out, sl_error *err);

/* Split "key=value" into its parts; the key must be a valid label key. */
int catalog_parse_label_filter(const char *filter, char key[SL_LABEL_KEY_MAX + 1],
                               const char **value, sl_error *err);

/* ---- schema (catalog_schema.c) ---- */

/* Read PRAGMA user_version. */
int catalog_schema_version(sqlite3 *db, int *version, sl_error *err);

/* Bring the database to schema `target` in one transaction (migrations
 * run with foreign keys off, then foreign_key_check). Fails with ENOTSUP
 * when the database is newer than SL_CATALOG_SCHEMA_VERSION and EINVAL
 * for a target outside 1..SL_CATALOG_SCHEMA_VERSION. */
int catalog_migrate(sqlite3 *db, int target, int busy_timeout_ms, sl_error *err);

/* ---- cursors (catalog_cursor.c) ---- */

/* SipHash-2-4 of `data` with a 128-bit key. */
uint64_t catalog_siphash24(const unsigned char key[16], const void *data, size_t len);

/* Encode the position (created_at, id) of listing `listing` ('b'
 * sandboxes, 's' snapshots) with filter fingerprint `filter` (any string
 * that differs between different filter sets) into `out`. */
void catalog_cursor_encode(const sl_catalog *cat, char listing, const char *filter,
                           int64_t created_at, const char *id, char out[SL_CURSOR_SIZE]);

/* Decode a cursor made by catalog_cursor_encode for the same listing and
 * filter. Fails with EINVAL for anything else. */
int catalog_cursor_decode(const sl_catalog *cat, char listing, const char *filter,
                          const char *cursor, int64_t *created_at, char id[SL_ID_SIZE],
                          sl_error *err);

/* ---- rows (catalog_sandbox*.c) ---- */

/* Read sandbox `id` inside the caller's transaction; ENOENT when absent. */
int catalog_sandbox_load(sqlite3 *db, const char *id, sl_sandbox *out, sl_error *err);

/* Read the state of sandbox `id`; ENOENT when absent. */
int catalog_sandbox_state(sqlite3 *db, const char *id, sl_sandbox_state *state,
                          sl_error *err);

/* ---- snapshots (catalog_snapshot*.c) ---- */

#define CATALOG_SNAPSHOT_COLUMNS                                                       \
  "s.id, s.name, s.tag, s.labels, s.source_sandbox_id, s.parent_id, s.template_name, " \
  "s.kind, s.backend, s.layer_id, s.image_dir, s.size_bytes, s.created_at, s.expires_at"

/* Read a row selected with CATALOG_SNAPSHOT_COLUMNS. */
int catalog_snapshot_read(sqlite3_stmt *stmt, sl_snapshot *sn, sl_error *err);

/* A parsed snapshot reference: `id` set, or `name` and maybe `tag`. */
typedef struct {
  char id[SL_ID_SIZE];
  char name[SL_NAME_SIZE];
  char tag[SL_NAME_SIZE];
} catalog_snapshot_ref;

/* Parse "sn-...", "name" or "name:tag". A string that starts with any id
 * prefix is taken as an id. Fails with EINVAL. */
int catalog_snapshot_parse_ref(const char *ref, catalog_snapshot_ref *out, sl_error *err);

/* ---- layers (catalog_layer.c) ---- */

/* Insert a layer row inside the caller's write transaction. */
int catalog_layer_insert(sqlite3 *db, const char *id, const char *parent_id,
                         const char *path, int64_t size_bytes, sl_layer_owner owner,
                         const char *owner_id, sl_error *err);

/* Delete unused layers inside the caller's write transaction (see
 * sl_catalog_layer_collect), appending them to `removed` (may be NULL). */
int catalog_layer_collect_in_txn(sqlite3 *db, sl_layer_list *removed, sl_error *err);

/* Delete layer `id` if unused, then its parent if that became unused, and
 * so on, inside the caller's write transaction. */
int catalog_layer_collect_chain(sqlite3 *db, const char *id, sl_layer_list *removed,
                                sl_error *err);

/* Move every item of `src` to the end of `dst`; `src` is left empty. On
 * ENOMEM the items of `src` are released. */
int catalog_layer_list_append(sl_layer_list *dst, sl_layer_list *src, sl_error *err);

/* ---- listing SQL (catalog_snapshot_list.c, catalog_sandbox.c) ---- */

/* Write the SELECT of a snapshot page with the given filters into `buf`;
 * tests run EXPLAIN QUERY PLAN on it. */
int catalog_snapshot_list_sql(bool by_id, bool by_name, bool by_tag, bool by_sandbox,
                              bool by_label, bool after_cursor, char *buf, size_t size);
int catalog_sandbox_list_sql(bool by_state, bool after_cursor, char *buf, size_t size);

#endif
