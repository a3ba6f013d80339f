/* Input checks shared by the catalog calls. JSON is checked with SQLite's
 * own JSON functions, so what is accepted is what the queries can read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

int catalog_check_limit(int limit, sl_error *err) {
  if (limit < 1 || limit > SL_LIST_MAX_LIMIT)
    return sl_error_set(err, EINVAL, "invalid limit: %d (expected a whole number from 1 to %d)",
                        limit, SL_LIST_MAX_LIMIT);
  return 0;
}

int catalog_check_abs_path(const char *field, const char *path, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  if (path == NULL || path[0] != '/' || strnlen(path, PATH_MAX) >= PATH_MAX)
    return sl_error_set(err, EINVAL, "invalid %s: %s (expected an absolute path)", field,
                        sl_quote(path, quoted, sizeof quoted));
  for (const char *p = path; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20)
      return sl_error_set(err, EINVAL, "invalid %s: %s (control character)", field,
                          sl_quote(path, quoted, sizeof quoted));
  return 0;
}

static bool valid_label_key(const char *key, size_t len) {
  if (len < 1 || len > SL_LABEL_KEY_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = key[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/';
    if (!ok) return false;
  }
  return true;
}

/* Check that `json` is a JSON object; its minified text goes to `*out`. */
static int normalize_json_object(sqlite3 *db, const char *field, const char *json, char **out,
                                 sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(
      db, "SELECT json_valid(?1), CASE WHEN json_valid(?1) THEN json_type(?1) END, "
          "CASE WHEN json_valid(?1) THEN json(?1) END",
      &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);

  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    rc = catalog_sqlite_error(db, rc, err, "check JSON");
  } else if (!sqlite3_column_int(stmt, 0)) {
    rc = sl_error_set(err, EINVAL, "invalid %s: %s (not JSON)", field,
                      sl_quote(json, quoted, sizeof quoted));
  } else if (strcmp((const char *)sqlite3_column_text(stmt, 1), "object") != 0) {
    rc = sl_error_set(err, EINVAL, "invalid %s: %s (expected a JSON object)", field,
                      sl_quote(json, quoted, sizeof quoted));
  } else {
    *out = catalog_dup_text(stmt, 2);
    rc = *out != NULL ? 0 : sl_error_set(err, ENOMEM, "out of memory");
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Check each member of an object: string values only when asked, and for
 * labels also the key syntax, the value length and the member count. */
static int check_members(sqlite3 *db, const char *field, const char *json, bool labels,
                         bool strings_only, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "SELECT key, type, length(value) FROM json_each(?1)", &stmt,
                           err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);

  int count = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *key = (const char *)sqlite3_column_text(stmt, 0);
    const char *type = (const char *)sqlite3_column_text(stmt, 1);
    size_t key_len = (size_t)sqlite3_column_bytes(stmt, 0);
    sl_quote(key, quoted, sizeof quoted);
    rc = 0;
    if (strings_only && strcmp(type, "text") != 0)
      rc = sl_error_set(err, EINVAL, "invalid %s: value of %s is %s, expected a string", field,
                        quoted, type);
    else if (labels && !valid_label_key(key, key_len))
      rc = sl_error_set(err, EINVAL,
                        "invalid %s: key %s (expected 1..%d characters from A-Z a-z 0-9 . _ "
                        "/ -)",
                        field, quoted, SL_LABEL_KEY_MAX);
    else if (labels && sqlite3_column_int(stmt, 2) > SL_LABEL_VALUE_MAX)
      rc = sl_error_set(err, EINVAL, "invalid %s: value of %s longer than %d characters",
                        field, quoted, SL_LABEL_VALUE_MAX);
    else if (labels && ++count > SL_LABELS_MAX)
      rc = sl_error_set(err, EINVAL, "invalid %s: more than %d labels", field, SL_LABELS_MAX);
    if (rc < 0) break;
  }
  if (rc == SQLITE_DONE) rc = 0;
  else if (rc > 0) rc = catalog_sqlite_error(db, rc, err, "check JSON members");
  sqlite3_finalize(stmt);
  return rc;
}

static int check_duplicate_keys(sqlite3 *db, const char *field, const char *json,
                                sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(
      db, "SELECT key FROM json_each(?1) GROUP BY key HAVING count(*) > 1 LIMIT 1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, json, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    rc = sl_error_set(err, EINVAL, "invalid %s: duplicate key %s", field,
                      sl_quote((const char *)sqlite3_column_text(stmt, 0), quoted,
                               sizeof quoted));
  else
    rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "check JSON keys");
  sqlite3_finalize(stmt);
  return rc;
}

static int normalize(sqlite3 *db, const char *field, const char *json, bool labels,
                     bool strings_only, char **out, sl_error *err) {
  *out = NULL;
  char *normalized = NULL;
  int rc = normalize_json_object(db, field, json, &normalized, err);
  if (rc == 0 && (labels || strings_only))
    rc = check_members(db, field, normalized, labels, strings_only, err);
  if (rc == 0) rc = check_duplicate_keys(db, field, normalized, err);
  if (rc < 0) {
    free(normalized);
    return rc;
  }
  *out = normalized;
  return 0;
}

int catalog_normalize_labels(sqlite3 *db, const char *labels, char **out, sl_error *err) {
  return normalize(db, "labels", labels != NULL ? labels : "{}", true, true, out, err);
}

int catalog_normalize_object(sqlite3 *db, const char *field, const char *json,
                             bool strings_only, char **out, sl_error *err) {
  if (json != NULL && strnlen(json, SL_OPTIONS_MAX + 1) > SL_OPTIONS_MAX)
    return sl_error_set(err, EINVAL, "invalid %s: longer than %d bytes", field, SL_OPTIONS_MAX);
  return normalize(db, field, json != NULL ? json : "{}", false, strings_only, out, err);
}

int catalog_parse_label_filter(const char *filter, char key[SL_LABEL_KEY_MAX + 1],
                               const char **value, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  const char *eq = filter != NULL ? strchr(filter, '=') : NULL;
  if (eq == NULL || !valid_label_key(filter, (size_t)(eq - filter)))
    return sl_error_set(err, EINVAL, "invalid label filter: %s (expected key=value)",
                        sl_quote(filter, quoted, sizeof quoted));
  if (strlen(eq + 1) > SL_LABEL_VALUE_MAX)
    return sl_error_set(err, EINVAL, "invalid label filter: %s (value longer than %d)",
                        sl_quote(filter, quoted, sizeof quoted), SL_LABEL_VALUE_MAX);
  memcpy(key, filter, (size_t)(eq - filter));
  key[eq - filter] = '\0';
  *value = eq + 1;
  return 0;
}
