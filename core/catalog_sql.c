/* Thin helpers over the SQLite C API with the core's error contract. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

static int errno_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return EBUSY;
    case SQLITE_NOMEM: return ENOMEM;
    case SQLITE_FULL: return ENOSPC;
    case SQLITE_READONLY: return EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH: return EACCES;
    case SQLITE_CANTOPEN: return ENOENT;
    case SQLITE_TOOBIG: return EINVAL;
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) return EEXIST;
      return EINVAL;
    default: return EIO;
  }
}

int catalog_sqlite_error(sqlite3 *db, int rc, sl_error *err, const char *what) {
  const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
    return sl_error_set(err, EIO, "%s: not an SQLite database or corrupt: %s", what, msg);
  return sl_error_set(err, errno_of(rc), "%s: %s", what, msg);
}

int catalog_exec(sqlite3 *db, const char *sql, sl_error *err) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : catalog_sqlite_error(db, rc, err, "execute SQL");
}

int catalog_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt, sl_error *err) {
  int rc = sqlite3_prepare_v2(db, sql, -1, stmt, NULL);
  return rc == SQLITE_OK ? 0 : catalog_sqlite_error(db, rc, err, "prepare SQL");
}

int catalog_step_done(sqlite3 *db, sqlite3_stmt *stmt, const char *what, sl_error *err) {
  int rc = sqlite3_step(stmt);
  int result = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, what);
  sqlite3_finalize(stmt);
  return result;
}

int catalog_query_int(sqlite3 *db, const char *sql, const char *const *texts, int ntexts,
                      int64_t *out, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, sql, &stmt, err);
  if (rc < 0) return rc;
  for (int i = 0; i < ntexts; i++) catalog_bind_text(stmt, i + 1, texts[i]);

  rc = sqlite3_step(stmt);
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "query");
  sqlite3_finalize(stmt);
  return rc;
}

int catalog_bind_text(sqlite3_stmt *stmt, int index, const char *text) {
  if (text == NULL || text[0] == '\0') return sqlite3_bind_null(stmt, index);
  return sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
}

void catalog_copy_text(sqlite3_stmt *stmt, int col, char *buf, size_t size) {
  const unsigned char *text = sqlite3_column_text(stmt, col);
  size_t len = text != NULL ? (size_t)sqlite3_column_bytes(stmt, col) : 0;
  if (len >= size) len = size - 1;
  if (len > 0) memcpy(buf, text, len);
  buf[len] = '\0';
}

char *catalog_dup_text(sqlite3_stmt *stmt, int col) {
  const unsigned char *text = sqlite3_column_text(stmt, col);
  if (text == NULL) return NULL;
  size_t len = (size_t)sqlite3_column_bytes(stmt, col);
  char *copy = malloc(len + 1);
  if (copy == NULL) return NULL;
  memcpy(copy, text, len);
  copy[len] = '\0';
  return copy;
}

void catalog_bind_named_text(sqlite3_stmt *stmt, const char *name, const char *value) {
  int index = sqlite3_bind_parameter_index(stmt, name);
  if (index > 0) sqlite3_bind_text(stmt, index, value, -1, SQLITE_STATIC);
}

void catalog_bind_named_int(sqlite3_stmt *stmt, const char *name, int64_t value) {
  int index = sqlite3_bind_parameter_index(stmt, name);
  if (index > 0) sqlite3_bind_int64(stmt, index, value);
}
