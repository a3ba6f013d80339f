#include <errno.h>

#include "test.h"
#include "catalog_fixture.h"

/* A store with template "base" and one running sandbox made from it. */
static int open_with_sandbox(fixture *fx, char sandbox[SL_ID_SIZE]) {
  sl_error err = {0};
  if (fixture_open(fx) < 0) return -1;
  if (fixture_template(fx, "base", 2, NULL, &err) < 0 ||
      fixture_sandbox(fx, "base", NULL, sandbox, &err) < 0) {
    fprintf(stderr, "setup: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static void begin_hides_until_commit(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  sl_sandbox source;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, sb, &source, &err), &err);

  char id[SL_ID_SIZE], layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
  sl_snapshot_spec spec = {.id = id, .source_sandbox_id = sb, .name = "nightly", .tag = "v1",
                           .labels = "{\"env\": \"ci\"}", .kind = SL_SNAPSHOT_FS,
                           .layer_id = layer, .layer_path = "/s/layers/x",
                           .image_dir = "/s/snapshots/x", .expires_at = 99};
  CHECK_OK(sl_catalog_snapshot_begin(fx.cat, &spec, &err), &err);

  sl_snapshot sn;
  CHECK_INT(sl_catalog_snapshot_get(fx.cat, id, &sn, &err), ==, -ENOENT);
  CHECK_INT(sl_catalog_snapshot_resolve(fx.cat, "nightly:v1", &sn, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "snapshot not found: nightly:v1");
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  sl_snapshot_page page;
  CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 0);
  CHECK(!page.has_next);
  sl_snapshot_page_free(&page);

  /* The pending snapshot already reserves its id, layer id and name:tag. */
  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &spec, &err), ==, -EEXIST);
  char other[SL_ID_SIZE], other_layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, other, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, other_layer, &err), &err);
  sl_snapshot_spec clash = spec;
  clash.id = other;
  clash.tag = "v2";
  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &clash, &err), ==, -EEXIST);
  CHECK(strstr(err.msg, "layer exists") != NULL);
  clash.tag = "v1";
  clash.layer_id = other_layer;
  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &clash, &err), ==, -EEXIST);
  CHECK_STR(err.msg, "snapshot name is taken: nightly:v1");

  CHECK_OK(sl_catalog_snapshot_commit(fx.cat, id, 5000, 3000, &sn, &err), &err);
  CHECK_STR(sn.id, id);
  CHECK_STR(sn.name, "nightly");
  CHECK_STR(sn.tag, "v1");
  CHECK_STR(sn.labels, "{\"env\":\"ci\"}");
  CHECK_STR(sn.source_sandbox_id, sb);
  CHECK_STR(sn.parent_id, "");
  CHECK_STR(sn.template_name, "base");
  CHECK_INT(sn.kind, ==, SL_SNAPSHOT_FS);
  CHECK_INT(sn.backend, ==, SL_BACKEND_PROCESS);
  CHECK_STR(sn.layer_id, layer);
  CHECK_STR(sn.image_dir, "/s/snapshots/x");
  CHECK_INT(sn.size_bytes, ==, 5000);
  CHECK_INT(sn.expires_at, ==, 99);
  sl_snapshot_clear(&sn);

  sl_layer row;
  CHECK_OK(sl_catalog_layer_get(fx.cat, layer, &row, &err), &err);
  CHECK_STR(row.parent_id, source.base_layer_id);
  CHECK_INT(row.size_bytes, ==, 3000);
  CHECK_INT(row.owner, ==, SL_LAYER_OWNER_SNAPSHOT);
  CHECK_STR(row.owner_id, id);
  sl_layer_clear(&row);
  sl_sandbox_clear(&source);

  CHECK_OK(sl_catalog_snapshot_resolve(fx.cat, "nightly:v1", &sn, &err), &err);
  CHECK_STR(sn.id, id);
  sl_snapshot_clear(&sn);
  CHECK_INT(sl_catalog_snapshot_commit(fx.cat, id, 1, 1, NULL, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "pending snapshot not found") != NULL);
  fixture_close(&fx);
}

static void begin_checks_source_state(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  char id[SL_ID_SIZE], layer[SL_ID_SIZE], fresh[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, fresh, &err), &err);
  sl_snapshot_spec spec = {.id = id, .source_sandbox_id = fresh, .layer_id = layer,
                           .layer_path = "/l", .image_dir = "/i"};
  long long layers = fixture_count(&fx, "layers");

  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &spec, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "sandbox not found") != NULL);
  sl_sandbox_spec sb_spec = {.id = fresh};
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &sb_spec, NULL, &err), &err);
  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &spec, &err), ==, -EBUSY);
  CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, fresh, SL_SANDBOX_DEAD, &err), &err);
  CHECK_INT(sl_catalog_snapshot_begin(fx.cat, &spec, &err), ==, -ESRCH);

  CHECK_INT(fixture_count(&fx, "snapshots"), ==, 0);
  CHECK_INT(fixture_count(&fx, "layers"), ==, layers);
  fixture_close(&fx);
}

static void fork_snapshot_has_lineage(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE], first[SL_ID_SIZE], fork[SL_ID_SIZE], second[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  CHECK_OK(fixture_snapshot(&fx, sb, NULL, NULL, NULL, first, &err), &err);
  CHECK_OK(fixture_sandbox(&fx, NULL, first, fork, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, fork, NULL, NULL, NULL, second, &err), &err);

  sl_snapshot a, b;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, first, &a, &err), &err);
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, second, &b, &err), &err);
  CHECK_STR(b.parent_id, first);
  CHECK_STR(b.template_name, "base");
  sl_layer row;
  CHECK_OK(sl_catalog_layer_get(fx.cat, b.layer_id, &row, &err), &err);
  CHECK_STR(row.parent_id, a.layer_id);
  sl_layer_clear(&row);

  sl_layer_list stack;
  CHECK_OK(sl_catalog_layer_stack(fx.cat, b.layer_id, &stack, &err), &err);
  CHECK_INT(stack.count, ==, 4);
  CHECK_STR(stack.items[0].id, b.layer_id);
  CHECK_STR(stack.items[1].id, a.layer_id);
  CHECK_INT(stack.items[3].owner, ==, SL_LAYER_OWNER_TEMPLATE);
  sl_layer_list_free(&stack);
  sl_snapshot_clear(&a);
  sl_snapshot_clear(&b);
  fixture_close(&fx);
}

static void resolve_by_id_name_and_tag(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE], old[SL_ID_SIZE], tagged[SL_ID_SIZE], newest[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  CHECK_OK(fixture_snapshot(&fx, sb, "nightly", NULL, NULL, old, &err), &err);
  fixture_next_ms();
  CHECK_OK(fixture_snapshot(&fx, sb, "nightly", "stable", NULL, tagged, &err), &err);
  fixture_next_ms();
  CHECK_OK(fixture_snapshot(&fx, sb, "nightly", NULL, NULL, newest, &err), &err);

  sl_snapshot sn;
  CHECK_OK(sl_catalog_snapshot_resolve(fx.cat, "nightly", &sn, &err), &err);
  CHECK_STR(sn.id, newest);
  sl_snapshot_clear(&sn);
  CHECK_OK(sl_catalog_snapshot_resolve(fx.cat, "nightly:stable", &sn, &err), &err);
  CHECK_STR(sn.id, tagged);
  sl_snapshot_clear(&sn);
  CHECK_OK(sl_catalog_snapshot_resolve(fx.cat, old, &sn, &err), &err);
  CHECK_STR(sn.id, old);
  sl_snapshot_clear(&sn);

  CHECK_INT(sl_catalog_snapshot_resolve(fx.cat, "weekly", &sn, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "snapshot not found: weekly");
  CHECK_INT(sl_catalog_snapshot_resolve(fx.cat, "nightly:nope", &sn, &err), ==, -ENOENT);
  CHECK_INT(sl_catalog_snapshot_resolve(fx.cat, "sn-0123456789ab", &sn, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "snapshot not found: sn-0123456789ab");

  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  sl_snapshot_page page;
  const char *refs[] = {"nightly", "nightly:stable", old, "weekly", "nightly:x",
                        "sn-0123456789ab"};
  const size_t counts[] = {3, 1, 1, 0, 0, 0};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    q.ref = refs[i];
    CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &page, &err), &err);
    CHECK_INT(page.count, ==, counts[i]);
    sl_snapshot_page_free(&page);
  }
  q.ref = "nightly";
  CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &page, &err), &err);
  CHECK_STR(page.items[0].id, newest);
  CHECK_STR(page.items[1].id, tagged);
  CHECK_STR(page.items[2].id, old);
  sl_snapshot_page_free(&page);
  fixture_close(&fx);
}

/* ---- pagination ---- */

#define MANY 1000

typedef struct {
  char ids[2 * MANY][SL_ID_SIZE];
  int count;
} id_set;

static int find_id(const id_set *set, const char *id) {
  for (int i = 0; i < set->count; i++)
    if (strcmp(set->ids[i], id) == 0) return i;
  return -1;
}

/* Walk every page of `query` with page size `limit`, checking order and
 * has_next, and mark each row in `seen` (a row seen twice fails). When
 * `insert_from` is set, a new snapshot of it is committed between pages.
 * Returns the rows seen or a negative step that failed. */
static long walk_snapshots(fixture *fx, sl_snapshot_query query, int limit,
                           const id_set *expected, const char *insert_from) {
  sl_error err = {0};
  char cursor[SL_CURSOR_SIZE] = "";
  int64_t last_at = INT64_MAX;
  char last_id[SL_ID_SIZE] = "zz";
  unsigned char *seen = calloc(2 * MANY, 1);
  long total = 0;
  query.limit = limit;
  while (1) {
    query.cursor = cursor[0] ? cursor : NULL;
    sl_snapshot_page page;
    if (sl_catalog_snapshot_list(fx->cat, &query, &page, &err) < 0) {
      fprintf(stderr, "list failed: %s\n", err.msg);
      free(seen);
      return -1;
    }
    for (size_t i = 0; i < page.count; i++) {
      const sl_snapshot *sn = &page.items[i];
      bool older = sn->created_at < last_at ||
                   (sn->created_at == last_at && strcmp(sn->id, last_id) < 0);
      int index = find_id(expected, sn->id);
      if (!older || index < 0 || seen[index]++) {
        fprintf(stderr, "row %s: older %d index %d\n", sn->id, older, index);
        sl_snapshot_page_free(&page);
        free(seen);
        return -2;
      }
      last_at = sn->created_at;
      memcpy(last_id, sn->id, SL_ID_SIZE);
    }
    total += (long)page.count;
    bool more = page.has_next;
    bool consistent = more == (page.next_cursor[0] != '\0') &&
                      (!more || page.count == (size_t)limit);
    memcpy(cursor, page.next_cursor, sizeof cursor);
    sl_snapshot_page_free(&page);
    if (!consistent) {
      free(seen);
      return -3;
    }
    if (!more) break;
    char extra[SL_ID_SIZE];
    if (insert_from != NULL &&
        fixture_snapshot(fx, insert_from, "even", NULL, "{\"batch\": \"late\"}", extra, &err) < 0) {
      free(seen);
      return -4;
    }
  }
  free(seen);
  return total;
}

typedef struct {
  fixture fx;
  char sandboxes[2][SL_ID_SIZE];
  id_set all, by_sandbox[2], by_name[2], by_label;
} many_fixture;

/* 1000 snapshots over two sandboxes, named "even" and "odd"; every tenth
 * has the label tier=gold. */
static int fill_many(many_fixture *m) {
  sl_error err = {0};
  if (open_with_sandbox(&m->fx, m->sandboxes[0]) < 0) return -1;
  if (fixture_sandbox(&m->fx, "base", NULL, m->sandboxes[1], &err) < 0) return -1;
  for (int i = 0; i < MANY; i++) {
    char id[SL_ID_SIZE];
    const char *labels = i % 10 == 0 ? "{\"tier\": \"gold\"}" : "{\"tier\": \"iron\"}";
    if (fixture_snapshot(&m->fx, m->sandboxes[i % 2], i % 2 ? "odd" : "even", NULL, labels, id,
                         &err) < 0) {
      fprintf(stderr, "fill: %s\n", err.msg);
      return -1;
    }
    memcpy(m->all.ids[m->all.count++], id, SL_ID_SIZE);
    id_set *sandbox = &m->by_sandbox[i % 2], *name = &m->by_name[i % 2];
    memcpy(sandbox->ids[sandbox->count++], id, SL_ID_SIZE);
    memcpy(name->ids[name->count++], id, SL_ID_SIZE);
    if (i % 10 == 0) memcpy(m->by_label.ids[m->by_label.count++], id, SL_ID_SIZE);
  }
  return 0;
}

static void pages_cover_every_row(void) {
  many_fixture *m = calloc(1, sizeof *m);
  CHECK(fill_many(m) == 0);
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  const int limits[] = {1, 7, 50, 999, 1000};
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
    CHECK_INT(walk_snapshots(&m->fx, q, limits[i], &m->all, NULL), ==, MANY);

  q.sandbox_id = m->sandboxes[1];
  CHECK_INT(walk_snapshots(&m->fx, q, 50, &m->by_sandbox[1], NULL), ==, MANY / 2);
  q.sandbox_id = NULL;
  q.ref = "even";
  CHECK_INT(walk_snapshots(&m->fx, q, 33, &m->by_name[0], NULL), ==, MANY / 2);
  q.ref = NULL;
  q.label = "tier=gold";
  CHECK_INT(walk_snapshots(&m->fx, q, 9, &m->by_label, NULL), ==, MANY / 10);
  q.label = NULL;

  /* Both filters at once: "even" rows all come from the first sandbox. */
  q.ref = "even";
  q.sandbox_id = m->sandboxes[0];
  CHECK_INT(walk_snapshots(&m->fx, q, 50, &m->by_name[0], NULL), ==, MANY / 2);
  q.sandbox_id = m->sandboxes[1];
  CHECK_INT(walk_snapshots(&m->fx, q, 50, &m->by_name[0], NULL), ==, 0);
  fixture_close(&m->fx);
  free(m);
}

/* Fill `set` with the ready snapshots that match `where` right now. */
static int select_ids(fixture *fx, const char *where, const char *param, id_set *set) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT id FROM snapshots WHERE state = 'ready' AND %s", where);
  sqlite3_stmt *stmt;
  if (sqlite3_prepare_v2(catalog_db(fx->cat), sql, -1, &stmt, NULL) != SQLITE_OK) return -1;
  if (param != NULL) sqlite3_bind_text(stmt, 1, param, -1, SQLITE_STATIC);
  set->count = 0;
  while (sqlite3_step(stmt) == SQLITE_ROW && set->count < 2 * MANY)
    snprintf(set->ids[set->count++], SL_ID_SIZE, "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return set->count;
}

/* Snapshots that match the filter and are committed between pages are
 * newer than the cursor, so the walk returns exactly the rows that existed
 * when it started. */
static void cursors_survive_inserts(void) {
  many_fixture *m = calloc(1, sizeof *m);
  CHECK(fill_many(m) == 0);
  id_set *expected = calloc(1, sizeof *expected);
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  CHECK_INT(select_ids(&m->fx, "1", NULL, expected), ==, MANY);
  CHECK_INT(walk_snapshots(&m->fx, q, 100, expected, m->sandboxes[0]), ==, MANY);

  q.ref = "even";
  int even = select_ids(&m->fx, "name = ?1", "even", expected);
  CHECK_INT(even, >, MANY / 2);
  CHECK_INT(walk_snapshots(&m->fx, q, 60, expected, m->sandboxes[0]), ==, even);

  q.ref = NULL;
  q.sandbox_id = m->sandboxes[0];
  int mine = select_ids(&m->fx, "source_sandbox_id = ?1", m->sandboxes[0], expected);
  CHECK_INT(walk_snapshots(&m->fx, q, 45, expected, m->sandboxes[0]), ==, mine);

  q.sandbox_id = NULL;
  q.label = "batch=late";
  int late = select_ids(&m->fx, "labels = '{\"batch\":\"late\"}'", NULL, expected);
  CHECK_INT(late, >, 20);
  CHECK_INT(walk_snapshots(&m->fx, q, 4, expected, m->sandboxes[0]), ==, late);
  free(expected);
  fixture_close(&m->fx);
  free(m);
}

static void tampered_cursor_is_rejected(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE], id[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  for (int i = 0; i < 5; i++) CHECK_OK(fixture_snapshot(&fx, sb, "n", NULL, NULL, id, &err), &err);

  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  q.limit = 2;
  sl_snapshot_page page, next;
  CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &page, &err), &err);
  CHECK(page.has_next);
  char cursor[SL_CURSOR_SIZE];
  memcpy(cursor, page.next_cursor, sizeof cursor);
  sl_snapshot_page_free(&page);
  CHECK_INT(strlen(cursor), ==, 32);

  q.cursor = cursor;
  CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &next, &err), &err);
  CHECK_INT(next.count, ==, 2);
  sl_snapshot_page_free(&next);

  for (size_t i = 0; i < strlen(cursor); i++) {
    char changed[SL_CURSOR_SIZE];
    memcpy(changed, cursor, sizeof changed);
    changed[i] = changed[i] == 'A' ? 'B' : 'A';
    q.cursor = changed;
    sl_error_clear(&err);
    CHECK_INT(sl_catalog_snapshot_list(fx.cat, &q, &next, &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid cursor") != NULL);
    CHECK_INT(next.count, ==, 0);
  }
  const char *bad[] = {"", "x", "not a cursor at all, really not!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    q.cursor = bad[i];
    CHECK_INT(sl_catalog_snapshot_list(fx.cat, &q, &next, &err), ==, -EINVAL);
  }

  /* The same cursor with other filters, or in another catalog. */
  q.cursor = cursor;
  q.ref = "n";
  CHECK_INT(sl_catalog_snapshot_list(fx.cat, &q, &next, &err), ==, -EINVAL);
  q.ref = NULL;
  sl_sandbox_query sq = SL_SANDBOX_QUERY_INIT;
  sq.cursor = cursor;
  sl_sandbox_page sandboxes;
  CHECK_INT(sl_catalog_sandbox_list(fx.cat, &sq, &sandboxes, &err), ==, -EINVAL);
  fixture other;
  CHECK(fixture_open(&other) == 0);
  CHECK_INT(sl_catalog_snapshot_list(other.cat, &q, &next, &err), ==, -EINVAL);
  fixture_close(&other);
  fixture_close(&fx);
}

static void siphash_matches_reference(void) {
  /* Test vectors from the SipHash paper's reference code: key 00..0f and
   * messages 00, 00 01, ..., of length 0, 1, 7, 8 and 15. */
  unsigned char key[16], msg[64];
  for (int i = 0; i < 16; i++) key[i] = (unsigned char)i;
  for (int i = 0; i < 64; i++) msg[i] = (unsigned char)i;
  CHECK(catalog_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
  CHECK(catalog_siphash24(key, msg, 1) == 0x74f839c593dc67fdULL);
  CHECK(catalog_siphash24(key, msg, 7) == 0xab0200f58b01d137ULL);
  CHECK(catalog_siphash24(key, msg, 8) == 0x93f5f5799a932462ULL);
  CHECK(catalog_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

static void list_plans_use_indexes(void) {
  fixture fx;
  CHECK(fixture_open(&fx) == 0);
  /* Filter sets: id, name, name:tag, sandbox, label, and name + sandbox. */
  const bool sets[][5] = {{0, 0, 0, 0, 0}, {1, 0, 0, 0, 0}, {0, 1, 0, 0, 0}, {0, 1, 1, 0, 0},
                          {0, 0, 0, 1, 0}, {0, 0, 0, 0, 1}, {0, 1, 0, 1, 0}, {0, 0, 0, 1, 1}};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
    for (int after = 0; after < 2; after++) {
      const bool *f = sets[i];
      char sql[2048], plan_sql[2100];
      CHECK_INT(catalog_snapshot_list_sql(f[0], f[1], f[2], f[3], f[4], after, sql, sizeof sql),
                ==, 0);
      snprintf(plan_sql, sizeof plan_sql, "EXPLAIN QUERY PLAN %s", sql);
      sqlite3_stmt *stmt;
      CHECK_INT(sqlite3_prepare_v2(catalog_db(fx.cat), plan_sql, -1, &stmt, NULL), ==,
                SQLITE_OK);
      int steps = 0;
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(stmt, 3);
        steps++;
        if (strstr(detail, "TEMP B-TREE") != NULL || strstr(detail, "INDEX") == NULL)
          fprintf(stderr, "filter set %zu after %d: %s\n", i, after, detail);
        CHECK(strstr(detail, "TEMP B-TREE") == NULL);
        CHECK(strstr(detail, "INDEX") != NULL);
      }
      sqlite3_finalize(stmt);
      CHECK_INT(steps, >=, 1);
    }
  }
  fixture_close(&fx);
}

static void delete_keeps_layers_in_use(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE], snap[SL_ID_SIZE], fork[SL_ID_SIZE], child[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  CHECK_OK(fixture_snapshot(&fx, sb, "base-snap", NULL, "{\"a\": \"b\"}", snap, &err), &err);
  sl_snapshot sn;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, snap, &sn, &err), &err);
  char layer[SL_ID_SIZE];
  memcpy(layer, sn.layer_id, sizeof layer);
  sl_snapshot_clear(&sn);
  CHECK_OK(fixture_sandbox(&fx, NULL, snap, fork, &err), &err);

  /* A running fork mounts the layer: deleting the snapshot keeps it. */
  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_snapshot_delete(fx.cat, snap, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 0);
  CHECK_INT(sl_catalog_snapshot_get(fx.cat, snap, &sn, &err), ==, -ENOENT);
  CHECK_INT(fixture_count(&fx, "snapshot_labels"), ==, 0);
  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(fx.cat, layer, &usage, &err), &err);
  CHECK_INT(usage.snapshots, ==, 0);
  CHECK_INT(usage.live_sandboxes, ==, 1);
  CHECK(sl_layer_usage_in_use(&usage));

  /* A snapshot of the fork stacks on the layer, so it stays after the
   * fork dies too. */
  CHECK_OK(fixture_snapshot(&fx, fork, NULL, NULL, NULL, child, &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, fork, 0, 0, &err), &err);
  CHECK_OK(sl_catalog_layer_collect(fx.cat, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 0);
  CHECK_OK(sl_catalog_layer_usage(fx.cat, layer, &usage, &err), &err);
  CHECK_INT(usage.live_sandboxes, ==, 0);
  CHECK_INT(usage.child_layers, ==, 1);

  /* Deleting the last snapshot frees its layer and then the parent. */
  long long template_layers = 2;
  CHECK_OK(sl_catalog_snapshot_delete(fx.cat, child, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 2);
  CHECK_STR(removed.items[1].id, layer);
  CHECK(strstr(removed.items[1].path, layer) != NULL);
  CHECK_INT(fixture_count(&fx, "layers"), ==, template_layers);
  sl_layer_list_free(&removed);

  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, fork, &row, &err), &err);
  CHECK_STR(row.base_layer_id, "");
  sl_sandbox_clear(&row);
  CHECK_INT(sl_catalog_snapshot_delete(fx.cat, child, NULL, &err), ==, -ENOENT);
  fixture_close(&fx);
}

static void pending_delete_aborts(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE], id[SL_ID_SIZE], layer[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
  sl_snapshot_spec spec = {.id = id, .source_sandbox_id = sb, .layer_id = layer,
                           .layer_path = "/l", .image_dir = "/i"};
  CHECK_OK(sl_catalog_snapshot_begin(fx.cat, &spec, &err), &err);
  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_snapshot_delete(fx.cat, id, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 1);
  CHECK_STR(removed.items[0].id, layer);
  CHECK_STR(removed.items[0].path, "/l");
  sl_layer_list_free(&removed);
  CHECK_INT(sl_catalog_snapshot_commit(fx.cat, id, 1, 1, NULL, &err), ==, -ENOENT);
  CHECK_INT(fixture_count(&fx, "snapshots"), ==, 0);
  fixture_close(&fx);
}

static void expired_and_pending_listed(void) {
  fixture fx;
  sl_error err = {0};
  char sb[SL_ID_SIZE];
  CHECK(open_with_sandbox(&fx, sb) == 0);
  const int64_t expiries[] = {300, 0, 100, 200, 5000};
  char ids[5][SL_ID_SIZE];
  for (int i = 0; i < 5; i++) {
    char layer[SL_ID_SIZE];
    CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, ids[i], &err), &err);
    CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
    sl_snapshot_spec spec = {.id = ids[i], .source_sandbox_id = sb, .layer_id = layer,
                             .layer_path = "/l", .image_dir = "/i", .expires_at = expiries[i]};
    CHECK_OK(sl_catalog_snapshot_begin(fx.cat, &spec, &err), &err);
    if (i != 4) CHECK_OK(sl_catalog_snapshot_commit(fx.cat, ids[i], 0, 0, NULL, &err), &err);
  }
  sl_id_list expired;
  CHECK_OK(sl_catalog_snapshot_expired(fx.cat, 1000, 10, &expired, &err), &err);
  CHECK_INT(expired.count, ==, 3);
  CHECK_STR(expired.ids[0], ids[2]);
  CHECK_STR(expired.ids[1], ids[3]);
  CHECK_STR(expired.ids[2], ids[0]);
  sl_id_list_free(&expired);
  CHECK_OK(sl_catalog_snapshot_expired(fx.cat, 150, 10, &expired, &err), &err);
  CHECK_INT(expired.count, ==, 1);
  sl_id_list_free(&expired);
  CHECK_OK(sl_catalog_snapshot_expired(fx.cat, 1000, 2, &expired, &err), &err);
  CHECK_INT(expired.count, ==, 2);
  sl_id_list_free(&expired);

  /* The uncommitted one is pending, whatever its expiry. */
  sl_id_list pending;
  CHECK_OK(sl_catalog_snapshot_pending(fx.cat, sl_catalog_now_ms() + 1, 10, &pending, &err),
           &err);
  CHECK_INT(pending.count, ==, 1);
  CHECK_STR(pending.ids[0], ids[4]);
  sl_id_list_free(&pending);
  CHECK_OK(sl_catalog_snapshot_pending(fx.cat, 1, 10, &pending, &err), &err);
  CHECK_INT(pending.count, ==, 0);
  sl_id_list_free(&pending);
  fixture_close(&fx);
}

int main(void) {
  RUN(begin_hides_until_commit);
  RUN(begin_checks_source_state);
  RUN(fork_snapshot_has_lineage);
  RUN(resolve_by_id_name_and_tag);
  RUN(pages_cover_every_row);
  RUN(cursors_survive_inserts);
  RUN(tampered_cursor_is_rejected);
  RUN(siphash_matches_reference);
  RUN(list_plans_use_indexes);
  RUN(delete_keeps_layers_in_use);
  RUN(pending_delete_aborts);
  RUN(expired_and_pending_listed);
  TEST_EXIT();
}
