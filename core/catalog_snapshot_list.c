/* Keyset-paginated listing of ready snapshots.
 *
 * Each filter has an index that ends in (created_at, id) and covers only
 * ready rows (partial indexes on state = 'ready'), so a page is a range
 * scan of one index in order, stopped after limit + 1 rows: no sort and no
 * OFFSET, whatever the table size. The label filter walks
 * snapshot_labels(key, value, created_at, snapshot_id), whose created_at
 * is a copy of the snapshot's, and joins the snapshot rows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"

int catalog_snapshot_list_sql(bool by_id, bool by_name, bool by_tag, bool by_sandbox,
                              bool by_label, bool after_cursor, char *buf, size_t size) {
  /* CROSS JOIN makes SQLite drive the join from the label index. */
  const char *from = by_label ? "snapshot_labels l CROSS JOIN snapshots s ON s.id = "
                                "l.snapshot_id AND l.key = :label_key AND l.value = :label_value"
                              : "snapshots s";
  const char *position = by_label ? "(l.created_at, l.snapshot_id)" : "(s.created_at, s.id)";
  const char *order = by_label ? "l.created_at DESC, l.snapshot_id DESC"
                               : "s.created_at DESC, s.id DESC";
  char after[128] = "";
  if (after_cursor)
    snprintf(after, sizeof after, " AND %s < (:after_at, :after_id)", position);

  /* An id or a name:tag matches at most one row (unique indexes), so
   * ordering it would only add a sort step to the plan. */
  char order_by[128] = "";
  if (!by_id && !by_tag) snprintf(order_by, sizeof order_by, " ORDER BY %s", order);

  int n = snprintf(buf, size,
                   "SELECT " CATALOG_SNAPSHOT_COLUMNS " FROM %s WHERE s.state = 'ready'%s%s%s%s%s"
                   "%s LIMIT :limit",
                   from, by_id ? " AND s.id = :id" : "", by_name ? " AND s.name = :name" : "",
                   by_tag ? " AND s.tag = :tag" : "",
                   by_sandbox ? " AND s.source_sandbox_id = :sandbox" : "", after, order_by);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

typedef struct {
  const sl_snapshot_query *query;
  sl_snapshot_page *page;
  catalog_snapshot_ref ref;
  bool by_ref;
  char label_key[SL_LABEL_KEY_MAX + 1];
  const char *label_value;
  char filter[1024];
  bool after_cursor;
  int64_t after_at;
  char after_id[SL_ID_SIZE];
} list_ctx;

static int prepare_page(sl_catalog *cat, list_ctx *ctx, sqlite3_stmt **stmt, sl_error *err) {
  const sl_snapshot_query *q = ctx->query;
  char sql[2048];
  catalog_snapshot_list_sql(ctx->ref.id[0] != '\0', ctx->ref.name[0] != '\0',
                            ctx->ref.tag[0] != '\0', q->sandbox_id != NULL, q->label != NULL,
                            ctx->after_cursor, sql, sizeof sql);
  int rc = catalog_prepare(cat->db, sql, stmt, err);
  if (rc < 0) return rc;
  catalog_bind_named_text(*stmt, ":id", ctx->ref.id);
  catalog_bind_named_text(*stmt, ":name", ctx->ref.name);
  catalog_bind_named_text(*stmt, ":tag", ctx->ref.tag);
  catalog_bind_named_text(*stmt, ":sandbox", q->sandbox_id);
  catalog_bind_named_text(*stmt, ":label_key", ctx->label_key);
  catalog_bind_named_text(*stmt, ":label_value", ctx->label_value);
  catalog_bind_named_int(*stmt, ":after_at", ctx->after_at);
  catalog_bind_named_text(*stmt, ":after_id", ctx->after_id);
  catalog_bind_named_int(*stmt, ":limit", q->limit + 1);
  return 0;
}

/* Read up to limit + 1 rows: the extra row only shows that a next page
 * exists. */
static int list_txn(sl_catalog *cat, void *arg, sl_error *err) {
  list_ctx *ctx = arg;
  sl_snapshot_page *page = ctx->page;
  size_t limit = (size_t)ctx->query->limit;
  sqlite3_stmt *stmt;
  int rc = prepare_page(cat, ctx, &stmt, err);
  if (rc < 0) return rc;

  page->items = calloc(limit, sizeof *page->items);
  if (page->items == NULL) rc = sl_error_set(err, ENOMEM, "out of memory");
  while (rc == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    rc = 0;
    if (page->count == limit) {
      page->has_next = true;
      break;
    }
    rc = catalog_snapshot_read(stmt, &page->items[page->count], err);
    if (rc == 0) page->count++;
  }
  if (rc == SQLITE_DONE) rc = 0;
  else if (rc > 0) rc = catalog_sqlite_error(cat->db, rc, err, "list snapshots");
  sqlite3_finalize(stmt);

  if (rc == 0 && page->has_next) {
    const sl_snapshot *last = &page->items[page->count - 1];
    catalog_cursor_encode(cat, 's', ctx->filter, last->created_at, last->id,
                          page->next_cursor);
  }
  return rc;
}

static int check_query(const sl_snapshot_query *q, list_ctx *ctx, sl_error *err) {
  int rc = catalog_check_limit(q->limit, err);
  if (rc == 0 && q->ref != NULL) rc = catalog_snapshot_parse_ref(q->ref, &ctx->ref, err);
  if (rc == 0 && q->sandbox_id != NULL) rc = sl_id_validate(SL_ID_SANDBOX, q->sandbox_id, err);
  if (rc == 0 && q->label != NULL)
    rc = catalog_parse_label_filter(q->label, ctx->label_key, &ctx->label_value, err);
  if (rc < 0) return rc;

  /* The unit separator cannot occur in a valid reference or id, and the
   * label (whose value may contain anything) comes last, so different
   * filter sets give different fingerprints. */
  snprintf(ctx->filter, sizeof ctx->filter, "ref=%s\x1fsandbox=%s\x1flabel=%s",
           q->ref != NULL ? q->ref : "", q->sandbox_id != NULL ? q->sandbox_id : "",
           q->label != NULL ? q->label : "");
  return 0;
}

int sl_catalog_snapshot_list(sl_catalog *cat, const sl_snapshot_query *query,
                             sl_snapshot_page *page, sl_error *err) {
  if (page == NULL) return sl_error_set(err, EINVAL, "no output page given");
  memset(page, 0, sizeof *page);
  if (cat == NULL || query == NULL) return sl_error_set(err, EINVAL, "no catalog or query given");

  list_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  ctx->query = query;
  ctx->page = page;
  int rc = check_query(query, ctx, err);
  if (rc == 0 && query->cursor != NULL) {
    rc = catalog_cursor_decode(cat, 's', ctx->filter, query->cursor, &ctx->after_at,
                               ctx->after_id, err);
    ctx->after_cursor = rc == 0;
  }
  if (rc == 0) rc = catalog_run(cat, CATALOG_READ, list_txn, ctx, err);
  if (rc < 0) sl_snapshot_page_free(page);
  free(ctx);
  return rc;
}
