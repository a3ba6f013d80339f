/* Layers: rows, stacks, usage and collection of unused layers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

#define LAYER_COLUMNS "l.id, l.parent_id, l.path, l.size_bytes, l.created_at, l.owner_kind, l.owner_id"

/* A layer is unused when nothing in sl_layer_usage refers to it. */
#define LAYER_UNUSED                                                          \
  "NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.layer_id = l.id) "           \
  "AND NOT EXISTS (SELECT 1 FROM template_layers t WHERE t.layer_id = l.id) " \
  "AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent_id = l.id) "         \
  "AND NOT EXISTS (SELECT 1 FROM sandboxes b WHERE b.base_layer_id = l.id "   \
  "AND b.state <> 'dead')"

static int read_layer(sqlite3_stmt *stmt, sl_layer *layer, sl_error *err) {
  memset(layer, 0, sizeof *layer);
  catalog_copy_text(stmt, 0, layer->id, sizeof layer->id);
  catalog_copy_text(stmt, 1, layer->parent_id, sizeof layer->parent_id);
  layer->path = catalog_dup_text(stmt, 2);
  layer->size_bytes = sqlite3_column_int64(stmt, 3);
  layer->created_at = sqlite3_column_int64(stmt, 4);
  const char *owner = (const char *)sqlite3_column_text(stmt, 5);
  layer->owner = owner != NULL && strcmp(owner, "snapshot") == 0 ? SL_LAYER_OWNER_SNAPSHOT
                                                                 : SL_LAYER_OWNER_TEMPLATE;
  catalog_copy_text(stmt, 6, layer->owner_id, sizeof layer->owner_id);
  if (layer->path == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  return 0;
}

/* Append the current row of `stmt` to `list`. */
static int append_layer(sl_layer_list *list, sqlite3_stmt *stmt, sl_error *err) {
  sl_layer *items = realloc(list->items, (list->count + 1) * sizeof *items);
  if (items == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  list->items = items;
  int rc = read_layer(stmt, &list->items[list->count], err);
  if (rc == 0) list->count++;
  return rc;
}

int catalog_layer_insert(sqlite3 *db, const char *id, const char *parent_id,
                         const char *path, int64_t size_bytes, sl_layer_owner owner,
                         const char *owner_id, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "INSERT INTO layers (id, parent_id, path, size_bytes, created_at, "
                           "owner_kind, owner_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  catalog_bind_text(stmt, 2, parent_id);
  sqlite3_bind_text(stmt, 3, path, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 4, size_bytes);
  sqlite3_bind_int64(stmt, 5, sl_catalog_now_ms());
  sqlite3_bind_text(stmt, 6, sl_layer_owner_name(owner), -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 7, owner_id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) return sl_error_set(err, EEXIST, "layer exists: %s", id);
  return rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "insert layer");
}

/* Read layer `id` into `removed` (when not NULL) and delete its row. */
static int delete_layer(sqlite3 *db, const char *id, sl_layer_list *removed, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "SELECT " LAYER_COLUMNS " FROM layers l WHERE l.id = ?1", &stmt,
                           err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) rc = removed != NULL ? append_layer(removed, stmt, err) : 0;
  else rc = catalog_sqlite_error(db, rc, err, "read layer");
  sqlite3_finalize(stmt);
  if (rc < 0) return rc;

  rc = catalog_prepare(db, "DELETE FROM layers WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  return catalog_step_done(db, stmt, "delete layer", err);
}

/* Fill `ids` with the unused layers, or with `only` when it is unused. */
static int find_unused(sqlite3 *db, const char *only, sl_id_list *ids, sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db,
                           "SELECT l.id FROM layers l WHERE (?1 IS NULL OR l.id = ?1) AND "
                           LAYER_UNUSED,
                           &stmt, err);
  if (rc < 0) return rc;
  catalog_bind_text(stmt, 1, only);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    char(*grown)[SL_ID_SIZE] = realloc(ids->ids, (ids->count + 1) * sizeof *grown);
    if (grown == NULL) {
      rc = SQLITE_NOMEM;
      break;
    }
    ids->ids = grown;
    catalog_copy_text(stmt, 0, ids->ids[ids->count++], SL_ID_SIZE);
  }
  rc = rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "find unused layers");
  sqlite3_finalize(stmt);
  return rc;
}

static int parent_of(sqlite3 *db, const char *id, char parent[SL_ID_SIZE], sl_error *err) {
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(db, "SELECT parent_id FROM layers WHERE id = ?1", &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  parent[0] = '\0';
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) catalog_copy_text(stmt, 0, parent, SL_ID_SIZE);
  rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : catalog_sqlite_error(db, rc, err, "read layer");
  sqlite3_finalize(stmt);
  return rc;
}

/* Delete layer `id` when unused, then its parent when that became unused,
 * and so on down the chain. */
int catalog_layer_collect_chain(sqlite3 *db, const char *id, sl_layer_list *removed,
                                sl_error *err) {
  char current[SL_ID_SIZE];
  snprintf(current, sizeof current, "%s", id);
  while (current[0] != '\0') {
    sl_id_list unused = {0};
    char parent[SL_ID_SIZE];
    int rc = find_unused(db, current, &unused, err);
    bool is_unused = rc == 0 && unused.count == 1;
    sl_id_list_free(&unused);
    if (rc == 0 && is_unused) rc = parent_of(db, current, parent, err);
    if (rc == 0 && is_unused) rc = delete_layer(db, current, removed, err);
    if (rc < 0) return rc;
    if (!is_unused) return 0;
    memcpy(current, parent, sizeof current);
  }
  return 0;
}

int catalog_layer_collect_in_txn(sqlite3 *db, sl_layer_list *removed, sl_error *err) {
  while (1) {
    sl_id_list unused = {0};
    int rc = find_unused(db, NULL, &unused, err);
    for (size_t i = 0; rc == 0 && i < unused.count; i++)
      rc = delete_layer(db, unused.ids[i], removed, err);
    size_t found = unused.count;
    sl_id_list_free(&unused);
    if (rc < 0 || found == 0) return rc;
  }
}

int catalog_layer_list_append(sl_layer_list *dst, sl_layer_list *src, sl_error *err) {
  if (src->count == 0) return 0;
  sl_layer *items = realloc(dst->items, (dst->count + src->count) * sizeof *items);
  if (items == NULL) {
    sl_layer_list_free(src);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  memcpy(items + dst->count, src->items, src->count * sizeof *items);
  dst->items = items;
  dst->count += src->count;
  free(src->items);
  memset(src, 0, sizeof *src);
  return 0;
}

/* ---- public calls ---- */

typedef struct {
  const char *id;
  void *out;
} layer_ctx;

static int get_txn(sl_catalog *cat, void *arg, sl_error *err) {
  layer_ctx *ctx = arg;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db, "SELECT " LAYER_COLUMNS " FROM layers l WHERE l.id = ?1",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) rc = read_layer(stmt, ctx->out, err);
  else if (rc == SQLITE_DONE) rc = sl_error_set(err, ENOENT, "layer not found: %s", ctx->id);
  else rc = catalog_sqlite_error(cat->db, rc, err, "read layer");
  sqlite3_finalize(stmt);
  return rc;
}

int sl_catalog_layer_get(sl_catalog *cat, const char *id, sl_layer *out, sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output layer given");
  memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_LAYER, id, err);
  if (rc < 0) return rc;
  layer_ctx ctx = {id, out};
  rc = catalog_run(cat, CATALOG_READ, get_txn, &ctx, err);
  if (rc < 0) sl_layer_clear(out);
  return rc;
}

/* The depth bound stops the walk on a parent cycle, which the catalog
 * never writes but a damaged database could contain. */
static int stack_txn(sl_catalog *cat, void *arg, sl_error *err) {
  layer_ctx *ctx = arg;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(cat->db,
                           "WITH RECURSIVE chain(id, depth) AS ("
                           "  SELECT ?1, 0"
                           "  UNION ALL SELECT p.parent_id, chain.depth + 1 FROM layers p"
                           "  JOIN chain ON p.id = chain.id"
                           "  WHERE p.parent_id IS NOT NULL AND chain.depth < 4096)"
                           "SELECT " LAYER_COLUMNS " FROM chain JOIN layers l ON l.id = chain.id "
                           "ORDER BY chain.depth",
                           &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    rc = append_layer(ctx->out, stmt, err);
    if (rc < 0) break;
  }
  if (rc == SQLITE_DONE) rc = 0;
  else if (rc > 0) rc = catalog_sqlite_error(cat->db, rc, err, "read layer stack");
  sqlite3_finalize(stmt);
  if (rc == 0 && ((sl_layer_list *)ctx->out)->count == 0)
    rc = sl_error_set(err, ENOENT, "layer not found: %s", ctx->id);
  return rc;
}

int sl_catalog_layer_stack(sl_catalog *cat, const char *id, sl_layer_list *out,
                           sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output list given");
  memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_LAYER, id, err);
  if (rc < 0) return rc;
  layer_ctx ctx = {id, out};
  rc = catalog_run(cat, CATALOG_READ, stack_txn, &ctx, err);
  if (rc < 0) sl_layer_list_free(out);
  return rc;
}

static int usage_txn(sl_catalog *cat, void *arg, sl_error *err) {
  layer_ctx *ctx = arg;
  sl_layer_usage *usage = ctx->out;
  sqlite3_stmt *stmt;
  int rc = catalog_prepare(
      cat->db,
      "SELECT (SELECT count(*) FROM snapshots WHERE layer_id = ?1),"
      " (SELECT count(*) FROM template_layers WHERE layer_id = ?1),"
      " (SELECT count(*) FROM layers WHERE parent_id = ?1),"
      " (SELECT count(*) FROM sandboxes WHERE base_layer_id = ?1 AND state <> 'dead')"
      " FROM layers WHERE id = ?1",
      &stmt, err);
  if (rc < 0) return rc;
  sqlite3_bind_text(stmt, 1, ctx->id, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    usage->snapshots = sqlite3_column_int64(stmt, 0);
    usage->templates = sqlite3_column_int64(stmt, 1);
    usage->child_layers = sqlite3_column_int64(stmt, 2);
    usage->live_sandboxes = sqlite3_column_int64(stmt, 3);
    rc = 0;
  } else if (rc == SQLITE_DONE) {
    rc = sl_error_set(err, ENOENT, "layer not found: %s", ctx->id);
  } else {
    rc = catalog_sqlite_error(cat->db, rc, err, "read layer usage");
  }
  sqlite3_finalize(stmt);
  return rc;
}

int sl_catalog_layer_usage(sl_catalog *cat, const char *id, sl_layer_usage *out,
                           sl_error *err) {
  if (out == NULL) return sl_error_set(err, EINVAL, "no output usage given");
  memset(out, 0, sizeof *out);
  int rc = sl_id_validate(SL_ID_LAYER, id, err);
  if (rc < 0) return rc;
  layer_ctx ctx = {id, out};
  return catalog_run(cat, CATALOG_READ, usage_txn, &ctx, err);
}

static int collect_txn(sl_catalog *cat, void *arg, sl_error *err) {
  return catalog_layer_collect_in_txn(cat->db, arg, err);
}

int sl_catalog_layer_collect(sl_catalog *cat, sl_layer_list *removed, sl_error *err) {
  sl_layer_list found = {0};
  int rc = catalog_run(cat, CATALOG_WRITE, collect_txn, &found, err);
  if (rc < 0 || removed == NULL) {
    sl_layer_list_free(&found);
    return rc;
  }
  return catalog_layer_list_append(removed, &found, err);
}
