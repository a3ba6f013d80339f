/* Snapshot rows: begin, commit, get, resolve, delete and expiry. Listing
 * is in catalog_snapshot_list.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

int catalog_snapshot_read(sqlite3_stmt *stmt, sl_snapshot *sn, sl_error *err) {
  memset(sn, 0, sizeof *sn);
  catalog_copy_text(stmt, 0, sn->id, sizeof sn->id);
  catalog_copy_text(stmt, 1, sn->name, sizeof sn->name);
  catalog_copy_text(stmt, 2, sn->tag, sizeof sn->tag);
  sn->labels = catalog_dup_text(stmt, 3);
  catalog_copy_text(stmt, 4, sn->source_sandbox_id, sizeof sn->source_sandbox_id);
  catalog_copy_text(stmt, 5, sn->parent_id, sizeof sn->parent_id);
  catalog_copy_text(stmt, 6, sn->template_name, sizeof sn->template_name);
  sl_snapshot_kind_parse((const char *)sqlite3_column_text(stmt, 7), &sn->kind, NULL);
  sl_backend_parse((const char *)sqlite3_column_text(stmt, 8), &sn->backend, NULL);
  catalog_copy_text(stmt, 9, sn->layer_id, sizeof sn->layer_id);
  sn->image_dir = catalog_dup_text(stmt, 10);
  sn->size_bytes = sqlite3_column_int64(stmt, 11);
  sn->created_at = sqlite3_column_int64(stmt, 12);
  sn->expires_at = sqlite3_column_int64(stmt, 13);
  if (sn->labels == NULL || sn->image_dir == NULL) {
    sl_snapshot_clear(sn);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  return 0;
}

/* Read the ready snapshot that `sql` (one row, parameters bound from
 * `params`) selects; `what` names it in the ENOENT message. */
static int load_one(sqlite3 *db, const char *sql, const char *const *params, int nparams,
                    const char *what, sl_snapshot *out, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, sql, &stmt, err);
  if (rc < 0) return rc;
  for (int i = 0; i < nparams; i++) catalog_bind_text(stmt, i + 1, params[i]);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) rc = catalog_snapshot_read(stmt, out, err);
  else if (rc == SQLITE_DONE) rc = sl_error_set(err, ENOENT, "snapshot not found: %s", what);
  else rc = catalog_sqlite_error(db, rc, err, "read snapshot");
  sqlite3_finalize(stmt);
  return rc;
}

static int load_by_id(sqlite3 *db, const char *id, sl_snapshot *out, sl_error *err) {
  const char *params[] = {id};
  return load_one(db,
                  "SELECT " CATALOG_SNAPSHOT_COLUMNS
                  " FROM snapshots s WHERE s.id = ?1 AND s.state = 'ready'",
                  params, 1, id, out, err);
}

/* ---- begin ---- */

typedef struct {
  const sl_snapshot_spec *spec;
  char *labels;
} begin_ctx;

static int check_spec(const sl_snapshot_spec *spec, sl_error *err) {
  if (spec == NULL) return sl_error_set(err, EINVAL, "no snapshot spec given");
  int rc = sl_id_validate(SL_ID_SNAPSHOT, spec->id, err);
  if (rc == 0) rc = sl_id_validate(SL_ID_SANDBOX, spec->source_sandbox_id, err);
  if (rc == 0) rc = sl_id_validate(SL_ID_LAYER, spec->layer_id, err);
  if (rc == 0 && spec->name != NULL) rc = sl_name_validate("snapshot name", spec->name, err);
  if (rc == 0 && spec->tag != NULL) rc = sl_name_validate("snapshot tag", spec->tag, err);
  if (rc == 0 && spec->tag != NULL && spec->name == NULL)
    rc = sl_error_set(err, EINVAL, "invalid snapshot tag \"%s\": a tag needs a name",
                      spec->tag);
  if (rc == 0 && (unsigned)spec->kind > SL_SNAPSHOT_FS)
    rc = sl_error_set(err, EINVAL, "invalid snapshot kind: %d", (int)spec->kind);
  if (rc == 0) rc = catalog_check_abs_path("layer path", spec->layer_path, err);
  if (rc == 0) rc = catalog_check_abs_path("image directory", spec->image_dir, err);
  if (rc == 0 && spec->expires_at < 0)
    rc = sl_error_set(err, EINVAL, "invalid expiry time: %lld", (long long)spec->expires_at);
  return rc;
}

/* What the snapshot takes over from its source sandbox. */
typedef struct {
  sl_sandbox_state state;
  char backend[16];
  char template_name[SL_NAME_SIZE];
  char source_snapshot_id[SL_ID_SIZE];
  char base_layer_id[SL_ID_SIZE];
} source_info;

static int read_source(sqlite3 *db, const char *sandbox_id, source_info *src, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "SELECT state, backend, template_name, source_snapshot_id, "
                           "base_layer_id FROM sandboxes WHERE id = ?1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, sandbox_id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    src->state = SL_SANDBOX_DEAD;
    sl_sandbox_state_parse((const char *)sqlite3_column_text(stmt, 0), &src->state, NULL);
    catalog_copy_text(stmt, 1, src->backend, sizeof src->backend);
    catalog_copy_text(stmt, 2, src->template_name, sizeof src->template_name);
    catalog_copy_text(stmt, 3, src->source_snapshot_id, sizeof src->source_snapshot_id);
    catalog_copy_text(stmt, 4, src->base_layer_id, sizeof src->base_layer_id);
    rc = 0;
    if (src->state == SL_SANDBOX_DEAD)
      rc = sl_error_set(err, ESRCH, "sandbox is dead: %s", sandbox_id);
    else if (src->state == SL_SANDBOX_CREATING)
      rc = sl_error_set(err, EBUSY, "sandbox is still being created: %s", sandbox_id);
  } else if (rc == SQLITE_DONE) {
    rc = sl_error_set(err, ENOENT, "sandbox not found: %s", sandbox_id);
  } else {
    rc = catalog_sqlite_error(db, rc, err, "read sandbox");
  }
  sqlite3_finalize(stmt);
  return rc;
}

static int check_name_tag_free(sqlite3 *db, const sl_snapshot_spec *spec, sl_error *err) {
  if (spec->tag == NULL) return 0;
  int64_t existing = 0;
  const char *params[] = {spec->name, spec->tag};
  int rc = catalog_query_int(db, "SELECT count(*) FROM snapshots WHERE name = ?1 AND tag = ?2",
                             params, 2, &existing, err);
  if (rc == 0 && existing > 0)
    rc = sl_error_set(err, EEXIST, "snapshot name is taken: %s:%s", spec->name, spec->tag);
  return rc;
}

static int insert_pending(sqlite3 *db, const begin_ctx *ctx, const source_info *src,
                          sl_error *err) {
  const sl_snapshot_spec *spec = ctx->spec;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(
      db,
      "INSERT INTO snapshots (id, state, name, tag, labels, source_sandbox_id, parent_id, "
      "template_name, kind, backend, layer_id, image_dir, started_at, created_at, expires_at) "
      "VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)",
      &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, spec->id, -1, SQLITE_STATIC);
  catalog_bind_text(stmt, 2, spec->name);
  catalog_bind_text(stmt, 3, spec->tag);
  sqlite3_bind_text(stmt, 4, ctx->labels, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 5, spec->source_sandbox_id, -1, SQLITE_STATIC);
  catalog_bind_text(stmt, 6, src->source_snapshot_id);
  catalog_bind_text(stmt, 7, src->template_name);
  sqlite3_bind_text(stmt, 8, sl_snapshot_kind_name(spec->kind), -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 9, src->backend, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 10, spec->layer_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 11, spec->image_dir, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 12, sl_catalog_now_ms());
  if (spec->expires_at > 0) sqlite3_bind_int64(stmt, 13, spec->expires_at);
  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sl_error_set(err, EEXIST, "snapshot exists: %s", spec->id);
  return rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "insert snapshot");
}

static int begin_txn(sl_catalog *cat, void *arg, sl_error *err) {
  begin_ctx *ctx = arg;
  const sl_snapshot_spec *spec = ctx->spec;
  source_info src;
  int rc = catalog_normalize_labels(cat->db, spec->labels, &ctx->labels, err);
  if (rc == 0) rc = read_source(cat->db, spec->source_sandbox_id, &src, err);
  if (rc == 0) rc = check_name_tag_free(cat->db, spec, err);
  if (rc == 0)
    rc = catalog_layer_insert(cat->db, spec->layer_id, src.base_layer_id, spec->layer_path, 0,
                              SL_LAYER_OWNER_SNAPSHOT, spec->id, err);
  if (rc == 0) rc = insert_pending(cat->db, ctx, &src, err);
  return rc;
}

int sl_catalog_snapshot_begin(sl_catalog *cat, const sl_snapshot_spec *spec, sl_error *err) {
  int rc = check_spec(spec, err);
  if (rc < 0) return rc;
  begin_ctx ctx = {spec, NULL};
  rc = catalog_run(cat, CATALOG_WRITE, begin_txn, &ctx, err);
  free(ctx.labels);
  return rc;
}

/* ---- commit ---- */

typedef struct {
  const char *id;
  int64_t size_bytes;
  int64_t layer_size_bytes;
  sl_snapshot *out;
} commit_ctx;

static int commit_txn(sl_catalog *cat, void *arg, sl_error *err) {
  commit_ctx *ctx = arg;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db,
                           "UPDATE snapshots SET state = 'ready', size_bytes = ?2, "
                           "created_at = ?3 WHERE id = ?1 AND state = 'pending'",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, ctx->size_bytes);
  sqlite3_bind_int64(stmt, 3, sl_catalog_now_ms());
  rc = catalog_step_done(cat->db, stmt, "commit snapshot", err);
  if (rc == 0 && sqlite3_changes(cat->db) == 0)
    return sl_error_set(err, ENOENT, "pending snapshot not found: %s", ctx->id);

  if (rc == 0) rc = catalog_prepare(cat->db,
                                    "UPDATE layers SET size_bytes = ?2 WHERE id = "
                                    "(SELECT layer_id FROM snapshots WHERE id = ?1)",
                                    &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, ctx->layer_size_bytes);
  rc = catalog_step_done(cat->db, stmt, "record layer size", err);

  /* The label index rows take the commit time, the listing order. */
  if (rc == 0) rc = catalog_prepare(cat->db,
                                    "INSERT INTO snapshot_labels (snapshot_id, key, value, "
                                    "created_at) SELECT s.id, j.key, j.value, s.created_at "
                                    "FROM snapshots s, json_each(s.labels) j WHERE s.id = ?1",
                                    &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  rc = catalog_step_done(cat->db, stmt, "index snapshot labels", err);
  if (rc == 0 && ctx->out != NULL) rc = load_by_id(cat->db, ctx->id, ctx->out, err);
  return rc;
}

int sl_catalog_snapshot_commit(sl_catalog *cat, const char *id, int64_t size_bytes,
                               int64_t layer_size_bytes, sl_snapshot *out, sl_error *err) {
  if (out != NULL) memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_SNAPSHOT, id, err);
  if (rc < 0) return rc;
  if (size_bytes < 0 || layer_size_bytes < 0)
    return sl_error_set(err, EINVAL, "invalid sizes for snapshot %s: %lld, layer %lld", id,
                        (long long)size_bytes, (long long)layer_size_bytes);
  commit_ctx ctx = {id, size_bytes, layer_size_bytes, out};
  return catalog_run(cat, CATALOG_WRITE, commit_txn, &ctx, err);
}

/* ---- get and resolve ---- */

typedef struct {
  const char *id;
  const catalog_snapshot_ref *ref;
  sl_snapshot *out;
} get_ctx;

static int get_txn(sl_catalog *cat, void *arg, sl_error *err) {
  get_ctx *ctx = arg;
  return load_by_id(cat->db, ctx->id, ctx->out, err);
}

int sl_catalog_snapshot_get(sl_catalog *cat, const char *id, sl_snapshot *out,
                            sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output snapshot given");
  memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_SNAPSHOT, id, err);
  if (rc < 0) return rc;
  get_ctx ctx = {id, NULL, out};
  return catalog_run(cat, CATALOG_READ, get_txn, &ctx, err);
}

int catalog_snapshot_parse_ref(const char *ref, catalog_snapshot_ref *out, sl_error *err) {
  memset(out, 0, sizeof *out);
  if (ref == NULL || ref[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid snapshot reference: empty");
  if (sl_id_kind_of(ref) >= 0) {
    int rc = sl_id_validate(SL_ID_SNAPSHOT, ref, err);
    if (rc == 0) memcpy(out->id, ref, SL_ID_SIZE);
    return rc;
  }

  const char *colon = strchr(ref, ':');
  size_t name_len = colon != NULL ? (size_t)(colon - ref) : strlen(ref);
  if (name_len > SL_NAME_MAX) name_len = SL_NAME_MAX + 1; /* long enough to be rejected */
  char name[SL_NAME_MAX + 2];
  memcpy(name, ref, name_len);
  name[name_len] = '\0';
  int rc = sl_name_validate("snapshot name", name, err);
  if (rc == 0 && colon != NULL) rc = sl_name_validate("snapshot tag", colon + 1, err);
  if (rc < 0) return rc;
  memcpy(out->name, name, name_len + 1);
  if (colon != NULL) snprintf(out->tag, sizeof out->tag, "%s", colon + 1);
  return 0;
}

static int resolve_txn(sl_catalog *cat, void *arg, sl_error *err) {
  get_ctx *ctx = arg;
  const catalog_snapshot_ref *ref = ctx->ref;
  if (ref->id[0] != '\0') return load_by_id(cat->db, ref->id, ctx->out, err);

  char what[2 * SL_NAME_SIZE];
  snprintf(what, sizeof what, "%s%s%s", ref->name, ref->tag[0] ? ":" : "", ref->tag);
  const char *params[] = {ref->name, ref->tag};
  if (ref->tag[0] != '\0')
    return load_one(cat->db,
                    "SELECT " CATALOG_SNAPSHOT_COLUMNS " FROM snapshots s "
                    "WHERE s.name = ?1 AND s.tag = ?2 AND s.state = 'ready'",
                    params, 2, what, ctx->out, err);
  return load_one(cat->db,
                  "SELECT " CATALOG_SNAPSHOT_COLUMNS " FROM snapshots s "
                  "WHERE s.name = ?1 AND s.state = 'ready' "
                  "ORDER BY s.created_at DESC, s.id DESC LIMIT 1",
                  params, 1, what, ctx->out, err);
}

int sl_catalog_snapshot_resolve(sl_catalog *cat, const char *ref, sl_snapshot *out,
                                sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output snapshot given");
  memset(out, 0, sizeof *out);
  catalog_snapshot_ref parsed;
  int rc = catalog_snapshot_parse_ref(ref, &parsed, err);
  if (rc < 0) return rc;
  get_ctx ctx = {NULL, &parsed, out};
  return catalog_run(cat, CATALOG_READ, resolve_txn, &ctx, err);
}

/* ---- delete and expiry ---- */

typedef struct {
  const char *id;
  sl_layer_list removed;
} delete_ctx;

static int delete_txn(sl_catalog *cat, void *arg, sl_error *err) {
  delete_ctx *ctx = arg;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db, "SELECT layer_id FROM snapshots WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  char layer_id[SL_ID_SIZE] = "";
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) catalog_copy_text(stmt, 0, layer_id, sizeof layer_id);
  rc = rc == SQLITE_ROW ? 0
       : rc == SQLITE_DONE ? sl_error_set(err, ENOENT, "snapshot not found: %s", ctx->id)
                           : catalog_sqlite_error(cat->db, rc, err, "read snapshot");
  sqlite3_finalize(stmt);
  if (rc < 0) return rc;

  rc = catalog_prepare(cat->db, "DELETE FROM snapshots WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  rc = catalog_step_done(cat->db, stmt, "delete snapshot", err);
  if (rc == 0) rc = catalog_layer_collect_chain(cat->db, layer_id, &ctx->removed, err);
  return rc;
}

int sl_catalog_snapshot_delete(sl_catalog *cat, const char *id, sl_layer_list *removed,
                               sl_error *err) {
  int rc = sl_id_validate(SL_ID_SNAPSHOT, id, err);
  if (rc < 0) return rc;
  delete_ctx ctx = {id, {0}};
  rc = catalog_run(cat, CATALOG_WRITE, delete_txn, &ctx, err);
  if (rc < 0 || removed == NULL) {
    sl_layer_list_free(&ctx.removed);
    return rc;
  }
  return catalog_layer_list_append(removed, &ctx.removed, err);
}

typedef struct {
  const char *sql;
  int64_t time_ms;
  int limit;
  sl_id_list *out;
} id_query_ctx;

static int id_query_txn(sl_catalog *cat, void *arg, sl_error *err) {
  id_query_ctx *ctx = arg;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db, ctx->sql, &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_int64(stmt, 1, ctx->time_ms);
  sqlite3_bind_int(stmt, 2, ctx->limit);
  ctx->out->ids = calloc((size_t)ctx->limit, SL_ID_SIZE);
  if (ctx->out->ids == NULL) rc = SQLITE_NOMEM;
  while (rc == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    catalog_copy_text(stmt, 0, ctx->out->ids[ctx->out->count++], SL_ID_SIZE);
    rc = 0;
  }
  rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(cat->db, rc, err, "list snapshots");
  sqlite3_finalize(stmt);
  return rc;
}

/* Fill `out` with the ids that `sql` selects, given ?1 = time_ms and
 * ?2 = limit. */
static int list_ids(sl_catalog *cat, const char *sql, int64_t time_ms, int limit,
                    sl_id_list *out, sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output list given");
  memset(out, 0, sizeof *out);
  int rc = catalog_check_limit(limit, err);
  if (rc < 0) return rc;
  id_query_ctx ctx = {sql, time_ms, limit, out};
  rc = catalog_run(cat, CATALOG_READ, id_query_txn, &ctx, err);
  if (rc < 0) sl_id_list_free(out);
  return rc;
}

int sl_catalog_snapshot_expired(sl_catalog *cat, int64_t now_ms, int limit, sl_id_list *out,
                                sl_error *err) {
  return list_ids(cat,
                  "SELECT id FROM snapshots WHERE state = 'ready' AND expires_at IS NOT NULL "
                  "AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
                  now_ms, limit, out, err);
}

int sl_catalog_snapshot_pending(sl_catalog *cat, int64_t started_before_ms, int limit,
                                sl_id_list *out, sl_error *err) {
  return list_ids(cat,
                  "SELECT id FROM snapshots WHERE state = 'pending' AND started_at < ?1 "
                  "ORDER BY started_at LIMIT ?2",
                  started_before_ms, limit, out, err);
}
