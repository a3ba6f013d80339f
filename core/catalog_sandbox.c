/* Sandbox rows: insert, get, delete and listing. State changes are in
 * catalog_sandbox_state.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

#define SANDBOX_COLUMNS                                                                \
  "id, backend, state, template_name, source_snapshot_id, base_layer_id, init_pid, " \
  "init_start_time, monitor_pid, cgroups, timeout_ms, deadline_at, on_timeout, "     \
  "exit_status, exit_signal, options, labels, created_at, updated_at, state_changed_at"

static int read_sandbox(sqlite3_stmt *stmt, sl_sandbox *sb, sl_error *err) {
  memset(sb, 0, sizeof *sb);
  catalog_copy_text(stmt, 0, sb->id, sizeof sb->id);
  sl_backend_parse((const char *)sqlite3_column_text(stmt, 1), &sb->backend, NULL);
  sl_sandbox_state_parse((const char *)sqlite3_column_text(stmt, 2), &sb->state, NULL);
  catalog_copy_text(stmt, 3, sb->template_name, sizeof sb->template_name);
  catalog_copy_text(stmt, 4, sb->source_snapshot_id, sizeof sb->source_snapshot_id);
  catalog_copy_text(stmt, 5, sb->base_layer_id, sizeof sb->base_layer_id);
  sb->init_pid = sqlite3_column_int64(stmt, 6);
  sb->init_start_time = sqlite3_column_int64(stmt, 7);
  sb->monitor_pid = sqlite3_column_int64(stmt, 8);
  sb->cgroups = catalog_dup_text(stmt, 9);
  sb->timeout_ms = sqlite3_column_int64(stmt, 10);
  sb->deadline_at = sqlite3_column_int64(stmt, 11);
  sl_on_timeout_parse((const char *)sqlite3_column_text(stmt, 12), &sb->on_timeout, NULL);
  sb->exit_status = sqlite3_column_type(stmt, 13) == SQLITE_NULL ? -1 : sqlite3_column_int(stmt, 13);
  sb->exit_signal = sqlite3_column_int(stmt, 14);
  sb->options = catalog_dup_text(stmt, 15);
  sb->labels = catalog_dup_text(stmt, 16);
  sb->created_at = sqlite3_column_int64(stmt, 17);
  sb->updated_at = sqlite3_column_int64(stmt, 18);
  sb->state_changed_at = sqlite3_column_int64(stmt, 19);
  if (sb->options == NULL || sb->labels == NULL) {
    sl_sandbox_clear(sb);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

int catalog_sandbox_load(sqlite3 *db, const char *id, sl_sandbox *out, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = ?1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) rc = read_sandbox(stmt, out, err);
  else if (rc == SQLITE_DONE) rc = sl_error_set(err, ENOENT, "sandbox not found: %s", id);
  else rc = catalog_sqlite_error(db, rc, err, "read sandbox");
  sqlite3_finalize(stmt);
  return rc;
}

/* ---- insert ---- */

typedef struct {
  const sl_sandbox_spec *spec;
  sl_sandbox *out;
  char *options;
  char *labels;
  char base_layer_id[SL_ID_SIZE];
  char template_name[SL_NAME_SIZE];
} insert_ctx;

static bool given(const char *s) { return s != NULL && s[0] != '\0'; }

static int check_spec(const sl_sandbox_spec *spec, sl_error *err) {
  if (spec == NULL) return sl_error_set(err, EINVAL, "no sandbox spec given");
  int rc = sl_id_validate(SL_ID_SANDBOX, spec->id, err);
  if (rc == 0 && (unsigned)spec->backend > SL_BACKEND_VM)
    rc = sl_error_set(err, EINVAL, "invalid backend: %d", (int)spec->backend);
  if (rc == 0 && (unsigned)spec->on_timeout > SL_ON_TIMEOUT_PAUSE_FS)
    rc = sl_error_set(err, EINVAL, "invalid timeout action: %d", (int)spec->on_timeout);
  if (rc == 0 && spec->timeout_ms < 0)
    rc = sl_error_set(err, EINVAL, "invalid timeout: %lld ms (must be >= 0)",
                      (long long)spec->timeout_ms);
  if (rc == 0 && spec->template_name != NULL)
    rc = sl_name_validate("template name", spec->template_name, err);
  if (rc == 0 && spec->source_snapshot_id != NULL)
    rc = sl_id_validate(SL_ID_SNAPSHOT, spec->source_snapshot_id, err);
  return rc;
}

/* Base layer of a fork: the layer of its ready source snapshot. */
static int resolve_fork(sqlite3 *db, insert_ctx *ctx, sl_error *err) {
  const sl_sandbox_spec *spec = ctx->spec;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "SELECT layer_id, backend, template_name FROM snapshots "
                           "WHERE id = ?1 AND state = 'ready'",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, spec->source_snapshot_id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    sl_backend backend = SL_BACKEND_PROCESS;
    sl_backend_parse((const char *)sqlite3_column_text(stmt, 1), &backend, NULL);
    catalog_copy_text(stmt, 0, ctx->base_layer_id, sizeof ctx->base_layer_id);
    catalog_copy_text(stmt, 2, ctx->template_name, sizeof ctx->template_name);
    rc = 0;
    if (backend != spec->backend)
      rc = sl_error_set(err, EINVAL, "snapshot %s is a %s snapshot, the sandbox backend is %s",
                        spec->source_snapshot_id, sl_backend_name(backend),
                        sl_backend_name(spec->backend));
    else if (spec->template_name != NULL && strcmp(spec->template_name, ctx->template_name))
      rc = sl_error_set(err, EINVAL, "snapshot %s comes from template \"%s\", not \"%s\"",
                        spec->source_snapshot_id, ctx->template_name, spec->template_name);
  } else if (rc == SQLITE_DONE) {
    rc = sl_error_set(err, ENOENT, "snapshot not found: %s", spec->source_snapshot_id);
  } else {
    rc = catalog_sqlite_error(db, rc, err, "read snapshot");
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Base layer of a sandbox made from a template: the template's top layer. */
static int resolve_template(sqlite3 *db, insert_ctx *ctx, sl_error *err) {
  const char *name = ctx->spec->template_name;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "SELECT l.layer_id FROM templates t JOIN template_layers l "
                           "ON l.template_id = t.id WHERE t.name = ?1 AND t.status = 'ready' "
                           "ORDER BY l.position DESC LIMIT 1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    catalog_copy_text(stmt, 0, ctx->base_layer_id, sizeof ctx->base_layer_id);
    snprintf(ctx->template_name, sizeof ctx->template_name, "%s", name);
    rc = 0;
  } else if (rc == SQLITE_DONE) {
    char quoted[SL_SUBJECT_MAX];
    rc = sl_error_set(err, ENOENT, "template not found: %s", sl_subject(quoted, sizeof quoted, name));
  } else {
    rc = catalog_sqlite_error(db, rc, err, "read template");
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int insert_row(sqlite3 *db, insert_ctx *ctx, sl_error *err) {
  const sl_sandbox_spec *spec = ctx->spec;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(
      db,
      "INSERT INTO sandboxes (id, backend, state, template_name, source_snapshot_id, "
      "base_layer_id, timeout_ms, deadline_at, on_timeout, options, labels, created_at, "
      "updated_at, state_changed_at) "
      "VALUES (?1, ?2, 'creating', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11)",
      &stmt, err);
  if (rc < 0) return rc;
  int64_t now = sl_catalog_now_ms();
  sqlite3_bind_text(stmt, 1, spec->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, sl_backend_name(spec->backend), -1, SQLITE_STATIC);
  catalog_bind_text(stmt, 3, ctx->template_name);
  catalog_bind_text(stmt, 4, spec->source_snapshot_id);
  catalog_bind_text(stmt, 5, ctx->base_layer_id);
  sqlite3_bind_int64(stmt, 6, spec->timeout_ms);
  if (spec->timeout_ms > 0) sqlite3_bind_int64(stmt, 7, now + spec->timeout_ms);
  sqlite3_bind_text(stmt, 8, sl_on_timeout_name(spec->on_timeout), -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 9, ctx->options, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 10, ctx->labels, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 11, now);

  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sl_error_set(err, EEXIST, "sandbox exists: %s", spec->id);
  return rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "insert sandbox");
}

static int insert_txn(sl_catalog *cat, void *arg, sl_error *err) {
  insert_ctx *ctx = arg;
  const sl_sandbox_spec *spec = ctx->spec;
  int rc = catalog_normalize_object(cat->db, "sandbox options", spec->options, false,
                                    &ctx->options, err);
  if (rc == 0) rc = catalog_normalize_labels(cat->db, spec->labels, &ctx->labels, err);
  if (rc == 0 && given(spec->source_snapshot_id)) rc = resolve_fork(cat->db, ctx, err);
  else if (rc == 0 && given(spec->template_name)) rc = resolve_template(cat->db, ctx, err);
  if (rc == 0) rc = insert_row(cat->db, ctx, err);
  if (rc == 0 && ctx->out != NULL) rc = catalog_sandbox_load(cat->db, spec->id, ctx->out, err);
  return rc;
}

int sl_catalog_sandbox_insert(sl_catalog *cat, const sl_sandbox_spec *spec, sl_sandbox *out,
                              sl_error *err) {
  if (out != NULL) memset(out, 0, sizeof *out);
  int rc = check_spec(spec, err);
  if (rc < 0) return rc;
  insert_ctx ctx = {.spec = spec, .out = out};
  rc = catalog_run(cat, CATALOG_WRITE, insert_txn, &ctx, err);
  free(ctx.options);
  free(ctx.labels);
  return rc;
}

/* ---- rebase ---- */

typedef struct {
  const char *id;
  const char *snapshot_id;
} rebase_ctx;

/* Read the snapshot's layer, backend and template as resolve_fork does,
 * then point the sandbox at them. */
static int rebase_txn(sl_catalog *cat, void *arg, sl_error *err) {
  rebase_ctx *r = arg;
  sl_sandbox current;
  int rc = catalog_sandbox_load(cat->db, r->id, &current, err);
  if (rc < 0) return rc;
  sl_sandbox_spec spec = {.id = r->id, .backend = current.backend,
                          .source_snapshot_id = r->snapshot_id};
  insert_ctx ctx = {.spec = &spec};
  bool dead = current.state == SL_SANDBOX_DEAD;
  if (current.template_name[0] != '\0') spec.template_name = current.template_name;
  if (dead) rc = sl_error_set(err, ESRCH, "sandbox is dead: %s", r->id);
  if (rc == 0) rc = resolve_fork(cat->db, &ctx, err);
  sl_sandbox_clear(&current);
  if (rc < 0) return rc;

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "UPDATE sandboxes SET source_snapshot_id = ?2, base_layer_id = ?3, "
                       "updated_at = ?4 WHERE id = ?1",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, r->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, r->snapshot_id, -1, SQLITE_STATIC);
  catalog_bind_text(stmt, 3, ctx.base_layer_id);
  sqlite3_bind_int64(stmt, 4, sl_catalog_now_ms());
  return catalog_step_done(cat->db, stmt, "rebase sandbox", err);
}

int sl_catalog_sandbox_rebase(sl_catalog *cat, const char *id, const char *snapshot_id,
                              sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc == 0) rc = sl_id_validate(SL_ID_SNAPSHOT, snapshot_id, err);
  if (rc < 0) return rc;
  rebase_ctx ctx = {id, snapshot_id};
  return catalog_run(cat, CATALOG_WRITE, rebase_txn, &ctx, err);
}

/* ---- get and delete ---- */

typedef struct {
  const char *id;
  sl_sandbox *out;
} get_ctx;

static int get_txn(sl_catalog *cat, void *arg, sl_error *err) {
  get_ctx *ctx = arg;
  return catalog_sandbox_load(cat->db, ctx->id, ctx->out, err);
}

int sl_catalog_sandbox_get(sl_catalog *cat, const char *id, sl_sandbox *out, sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output sandbox given");
  memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  get_ctx ctx = {id, out};
  return catalog_run(cat, CATALOG_READ, get_txn, &ctx, err);
}

static int delete_txn(sl_catalog *cat, void *arg, sl_error *err) {
  const char *id = arg;
  sl_sandbox_state state;
  int rc = catalog_sandbox_state(cat->db, id, &state, err);
  if (rc < 0) return rc;
  if (state != SL_SANDBOX_DEAD)
    return sl_error_set(err, EBUSY, "sandbox %s is %s; kill it before deleting it", id,
                        sl_sandbox_state_name(state));
  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db, "DELETE FROM sandboxes WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  return catalog_step_done(cat->db, stmt, "delete sandbox", err);
}

int sl_catalog_sandbox_delete(sl_catalog *cat, const char *id, sl_error *err) {
  int rc = sl_id_validate(SL_ID_SANDBOX, id, err);
  if (rc < 0) return rc;
  return catalog_run(cat, CATALOG_WRITE, delete_txn, (void *)id, err);
}

/* ---- listing ---- */

int catalog_sandbox_list_sql(bool by_state, bool after_cursor, char *buf, size_t size) {
  int n = snprintf(buf, size,
                   "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE 1%s%s "
                   "ORDER BY created_at DESC, id DESC LIMIT :limit",
                   by_state ? " AND state = :state" : "",
                   after_cursor ? " AND (created_at, id) < (:after_at, :after_id)" : "");
  return n > 0 && (size_t)n < size ? 0 : -1;
}

typedef struct {
  const sl_sandbox_query *query;
  sl_sandbox_page *page;
  const char *filter;
  bool after_cursor;
  int64_t after_at;
  char after_id[SL_ID_SIZE];
} list_ctx;

/* Read up to limit + 1 rows: the extra row only shows that a next page
 * exists. */
static int list_txn(sl_catalog *cat, void *arg, sl_error *err) {
  list_ctx *ctx = arg;
  const sl_sandbox_query *q = ctx->query;
  sl_sandbox_page *page = ctx->page;
  char sql[1024];
  catalog_sandbox_list_sql(q->state != NULL, ctx->after_cursor, sql, sizeof sql);
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db, sql, &stmt, err);
  if (rc < 0) return rc;
  catalog_bind_named_text(stmt, ":state", q->state);
  catalog_bind_named_int(stmt, ":after_at", ctx->after_at);
  catalog_bind_named_text(stmt, ":after_id", ctx->after_id);
  catalog_bind_named_int(stmt, ":limit", q->limit + 1);

  page->items = calloc((size_t)q->limit, sizeof *page->items);
  if (page->items == NULL) rc = sl_error_set(err, ENOMEM, "out of memory");
  while (rc == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    rc = 0;
    if (page->count == (size_t)q->limit) {
      page->has_next = true;
      break;
    }
    rc = read_sandbox(stmt, &page->items[page->count], err);
    if (rc == 0) page->count++;
  }
  if (rc == SQLITE_DONE) rc = 0;
  else if (rc > 0) rc = catalog_sqlite_error(cat->db, rc, err, "list sandboxes");
  sqlite3_finalize(stmt);

  if (rc == 0 && page->has_next) {
    const sl_sandbox *last = &page->items[page->count - 1];
    catalog_cursor_encode(cat, 'b', ctx->filter, last->created_at, last->id,
                          page->next_cursor);
  }
  return rc;
}

int sl_catalog_sandbox_list(sl_catalog *cat, const sl_sandbox_query *query,
                            sl_sandbox_page *page, sl_error *err) {
  if (page == NULL) return sl_error_set(err, EINVAL, "no output page given");
  memset(page, 0, sizeof *page);
  if (cat == NULL || query == NULL) return sl_error_set(err, EINVAL, "no catalog or query given");
  sl_sandbox_state state;
  int rc = catalog_check_limit(query->limit, err);
  if (rc == 0 && query->state != NULL) rc = sl_sandbox_state_parse(query->state, &state, err);
  if (rc < 0) return rc;

  char filter[64];
  snprintf(filter, sizeof filter, "state=%s", query->state != NULL ? query->state : "");
  list_ctx ctx = {.query = query, .page = page, .filter = filter};
  if (query->cursor != NULL) {
    rc = catalog_cursor_decode(cat, 'b', filter, query->cursor, &ctx.after_at, ctx.after_id,
                               err);
    if (rc < 0) return rc;
    ctx.after_cursor = true;
  }
  rc = catalog_run(cat, CATALOG_READ, list_txn, &ctx, err);
  if (rc < 0) sl_sandbox_page_free(page);
  return rc;
}
