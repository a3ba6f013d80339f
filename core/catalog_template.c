/* Template builds and the ready template of each name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

#define TEMPLATE_COLUMNS "id, name, spec_hash, status, created_at, built_at"

static int load_layer_ids(sqlite3 *db, sl_template *tpl, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "SELECT layer_id FROM template_layers WHERE template_id = ?1 "
                           "ORDER BY position",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, tpl->id, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    char(*grown)[SL_ID_SIZE] = realloc(tpl->layer_ids, (tpl->layer_count + 1) * sizeof *grown);
    if (grown == NULL) {
      rc = SQLITE_NOMEM;
      break;
    }
    tpl->layer_ids = grown;
    catalog_copy_text(stmt, 0, tpl->layer_ids[tpl->layer_count++], SL_ID_SIZE);
  }
  rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "read template layers");
  sqlite3_finalize(stmt);
  return rc;
}

static void read_template(sqlite3_stmt *stmt, sl_template *tpl) {
  memset(tpl, 0, sizeof *tpl);
  catalog_copy_text(stmt, 0, tpl->id, sizeof tpl->id);
  catalog_copy_text(stmt, 1, tpl->name, sizeof tpl->name);
  catalog_copy_text(stmt, 2, tpl->spec_hash, sizeof tpl->spec_hash);
  const char *status = (const char *)sqlite3_column_text(stmt, 3);
  tpl->status = status != NULL && strcmp(status, "ready") == 0 ? SL_TEMPLATE_READY
                                                               : SL_TEMPLATE_BUILDING;
  tpl->created_at = sqlite3_column_int64(stmt, 4);
  tpl->built_at = sqlite3_column_int64(stmt, 5);
}

/* Read the template that `sql` selects with `param` bound to ?1. */
static int load_template(sqlite3 *db, const char *sql, const char *param, const char *what,
                         sl_template *out, sl_error *err) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, sql, &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, param, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) read_template(stmt, out);
  rc = rc == SQLITE_ROW ? 0
       : rc == SQLITE_DONE ? sl_error_set(err, ENOENT, "%s not found: %s", what, param)
                           : catalog_sqlite_error(db, rc, err, "read template");
  sqlite3_finalize(stmt);
  if (rc == 0) rc = load_layer_ids(db, out, err);
  if (rc < 0) sl_template_clear(out);
  return rc;
}

/* Read build `id` and check that it is still building. */
static int load_building(sqlite3 *db, const char *id, sl_template *out, sl_error *err) {
  int rc = load_template(db, "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = ?1", id,
                         "template build", out, err);
  if (rc == 0 && out->status != SL_TEMPLATE_BUILDING) {
    sl_template_clear(out);
    return sl_error_set(err, ENOENT, "template build not in progress: %s", id);
  }
  return rc;
}

/* ---- begin ---- */

typedef struct {
  const char *id;
  const char *name;
  const char *spec_hash;
} begin_ctx;

static int check_hash(const char *hash, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  size_t len = hash != NULL ? strnlen(hash, SL_HASH_MAX + 1) : 0;
  bool ok = len >= 1 && len <= SL_HASH_MAX;
  for (size_t i = 0; ok && i < len; i++)
    ok = (hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f');
  if (!ok)
    return sl_error_set(err, EINVAL, "invalid template spec hash: %s (expected 1..%d hex digits "
                        "0-9a-f)", sl_quote(hash, quoted, sizeof quoted), SL_HASH_MAX);
  return 0;
}

static int begin_txn(sl_catalog *cat, void *arg, sl_error *err) {
  begin_ctx *ctx = arg;
  sl_template building;
  int rc = load_template(cat->db,
                         "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE name = ?1 AND "
                         "status = 'building'",
                         ctx->name, "template build", &building, err);
  if (rc == 0) {
    rc = sl_error_set(err, EBUSY,
                      "a build of template %s is in progress: %s (delete it if its process "
                      "died)",
                      ctx->name, building.id);
    sl_template_clear(&building);
    return rc;
  }
  if (rc != -ENOENT) return rc;
  sl_error_clear(err);

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "INSERT INTO templates (id, name, spec_hash, status, created_at) "
                       "VALUES (?1, ?2, ?3, 'building', ?4)",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, ctx->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, ctx->spec_hash, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, sl_catalog_now_ms());
  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    return sl_error_set(err, EEXIST, "template build exists: %s", ctx->id);
  return rc == SQLITE_DONE ? 0 : catalog_sqlite_error(cat->db, rc, err, "insert template");
}

int sl_catalog_template_begin(sl_catalog *cat, const char *id, const char *name,
                              const char *spec_hash, sl_error *err) {
  int rc = sl_id_validate(SL_ID_TEMPLATE, id, err);
  if (rc == 0) rc = sl_name_validate("template name", name, err);
  if (rc == 0) rc = check_hash(spec_hash, err);
  if (rc < 0) return rc;
  begin_ctx ctx = {id, name, spec_hash};
  return catalog_run(cat, CATALOG_WRITE, begin_txn, &ctx, err);
}

/* ---- add layer ---- */

typedef struct {
  const char *template_id;
  const char *layer_id;
  const char *path;
  int64_t size_bytes;
} add_ctx;

static int add_layer_txn(sl_catalog *cat, void *arg, sl_error *err) {
  add_ctx *ctx = arg;
  sl_template build;
  int rc = load_building(cat->db, ctx->template_id, &build, err);
  if (rc < 0) return rc;
  const char *parent = build.layer_count > 0 ? build.layer_ids[build.layer_count - 1] : NULL;
  rc = catalog_layer_insert(cat->db, ctx->layer_id, parent, ctx->path, ctx->size_bytes,
                            SL_LAYER_OWNER_TEMPLATE, ctx->template_id, err);
  int64_t position = (int64_t)build.layer_count;
  sl_template_clear(&build);
  if (rc < 0) return rc;

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db,
                       "INSERT INTO template_layers (template_id, position, layer_id) "
                       "VALUES (?1, ?2, ?3)",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->template_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, position);
  sqlite3_bind_text(stmt, 3, ctx->layer_id, -1, SQLITE_STATIC);
  return catalog_step_done(cat->db, stmt, "add template layer", err);
}

int sl_catalog_template_add_layer(sl_catalog *cat, const char *template_id,
                                  const char *layer_id, const char *layer_path,
                                  int64_t size_bytes, sl_error *err) {
  int rc = sl_id_validate(SL_ID_TEMPLATE, template_id, err);
  if (rc == 0) rc = sl_id_validate(SL_ID_LAYER, layer_id, err);
  if (rc == 0) rc = catalog_check_abs_path("layer path", layer_path, err);
  if (rc == 0 && size_bytes < 0)
    rc = sl_error_set(err, EINVAL, "invalid layer size: %lld", (long long)size_bytes);
  if (rc < 0) return rc;
  add_ctx ctx = {template_id, layer_id, layer_path, size_bytes};
  return catalog_run(cat, CATALOG_WRITE, add_layer_txn, &ctx, err);
}

/* ---- finish and delete ---- */

typedef struct {
  const char *id;
  sl_template *out;
  sl_layer_list removed;
} finish_ctx;

static int finish_txn(sl_catalog *cat, void *arg, sl_error *err) {
  finish_ctx *ctx = arg;
  sl_template build;
  int rc = load_building(cat->db, ctx->id, &build, err);
  if (rc < 0) return rc;
  size_t layers = build.layer_count;
  char name[SL_NAME_SIZE];
  memcpy(name, build.name, sizeof name);
  sl_template_clear(&build);
  if (layers == 0)
    return sl_error_set(err, EINVAL, "template build %s has no layers", ctx->id);

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db, "DELETE FROM templates WHERE name = ?1 AND status = 'ready'",
                       &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  rc = catalog_step_done(cat->db, stmt, "replace template", err);
  if (rc == 0) rc = catalog_prepare(cat->db,
                                    "UPDATE templates SET status = 'ready', built_at = ?2 "
                                    "WHERE id = ?1",
                                    &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, sl_catalog_now_ms());
  rc = catalog_step_done(cat->db, stmt, "finish template", err);
  if (rc == 0 && ctx->out != NULL)
    rc = load_template(cat->db, "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = ?1",
                       ctx->id, "template build", ctx->out, err);
  return rc;
}

int sl_catalog_template_finish(sl_catalog *cat, const char *template_id, sl_template *out,
                               sl_error *err) {
  if (out != NULL) memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_TEMPLATE, template_id, err);
  if (rc < 0) return rc;
  finish_ctx ctx = {template_id, out, {0}};
  return catalog_run(cat, CATALOG_WRITE, finish_txn, &ctx, err);
}

static int delete_txn(sl_catalog *cat, void *arg, sl_error *err) {
  finish_ctx *ctx = arg;
  sl_template build;
  int rc = load_template(cat->db, "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = ?1",
                         ctx->id, "template build", &build, err);
  if (rc < 0) return rc;
  char top[SL_ID_SIZE] = "";
  if (build.layer_count > 0) memcpy(top, build.layer_ids[build.layer_count - 1], sizeof top);
  sl_template_clear(&build);

  sqlite3_stmt *stmt;
  rc = catalog_prepare(cat->db, "DELETE FROM templates WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  rc = catalog_step_done(cat->db, stmt, "delete template", err);
  if (rc == 0 && top[0] != '\0')
    rc = catalog_layer_collect_chain(cat->db, top, &ctx->removed, err);
  return rc;
}

int sl_catalog_template_delete(sl_catalog *cat, const char *template_id,
                               sl_layer_list *removed, sl_error *err) {
  int rc = sl_id_validate(SL_ID_TEMPLATE, template_id, err);
  if (rc < 0) return rc;
  finish_ctx ctx = {template_id, NULL, {0}};
  rc = catalog_run(cat, CATALOG_WRITE, delete_txn, &ctx, err);
  if (rc < 0 || removed == NULL) {
    sl_layer_list_free(&ctx.removed);
    return rc;
  }
  return catalog_layer_list_append(removed, &ctx.removed, err);
}

/* ---- get and list ---- */

typedef struct {
  const char *name;
  void *out;
} get_ctx;

static int get_txn(sl_catalog *cat, void *arg, sl_error *err) {
  get_ctx *ctx = arg;
  return load_template(cat->db,
                       "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE name = ?1 AND "
                       "status = 'ready'",
                       ctx->name, "template", ctx->out, err);
}

int sl_catalog_template_get(sl_catalog *cat, const char *name, sl_template *out,
                            sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output template given");
  memset(out, 0, sizeof *out);
  int rc = sl_name_validate("template name", name, err);
  if (rc < 0) return rc;
  get_ctx ctx = {name, out};
  return catalog_run(cat, CATALOG_READ, get_txn, &ctx, err);
}

static int list_txn(sl_catalog *cat, void *arg, sl_error *err) {
  sl_template_list *list = ((get_ctx *)arg)->out;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db,
                           "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE status = 'ready' "
                           "ORDER BY name",
                           &stmt, err);
  if (rc < 0) return rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    sl_template *items = realloc(list->items, (list->count + 1) * sizeof *items);
    if (items == NULL) {
      rc = SQLITE_NOMEM;
      break;
    }
    list->items = items;
    read_template(stmt, &list->items[list->count++]);
  }
  rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(cat->db, rc, err, "list templates");
  sqlite3_finalize(stmt);
  for (size_t i = 0; rc == 0 && i < list->count; i++)
    rc = load_layer_ids(cat->db, &list->items[i], err);
  return rc;
}

int sl_catalog_template_list(sl_catalog *cat, sl_template_list *out, sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output list given");
  memset(out, 0, sizeof *out);
  get_ctx ctx = {NULL, out};
  int rc = catalog_run(cat, CATALOG_READ, list_txn, &ctx, err);
  if (rc < 0) sl_template_list_free(out);
  return rc;
}
