#include <errno.h>

#include "test.h"
#include "catalog_fixture.h"

static void insert_records_spec(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char layers[2][SL_ID_SIZE];
  CHECK_OK(fixture_template(&fx, "base", 2, layers, &err), &err);

  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id, .backend = SL_BACKEND_VM, .template_name = "base",
                          .timeout_ms = 60000, .on_timeout = SL_ON_TIMEOUT_PAUSE_FS,
                          .options = "{ \"memory\": 268435456, \"env\": {\"A\": \"1\"} }",
                          .labels = "{\"team\": \"ml\"}"};
  sl_sandbox row;
  int64_t before = sl_catalog_now_ms();
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &spec, &row, &err), &err);
  CHECK_STR(row.id, id);
  CHECK_INT(row.backend, ==, SL_BACKEND_VM);
  CHECK_INT(row.state, ==, SL_SANDBOX_CREATING);
  CHECK_STR(row.template_name, "base");
  CHECK_STR(row.base_layer_id, layers[1]);
  CHECK_STR(row.source_snapshot_id, "");
  CHECK_STR(row.options, "{\"memory\":268435456,\"env\":{\"A\":\"1\"}}");
  CHECK_STR(row.labels, "{\"team\":\"ml\"}");
  CHECK_INT(row.on_timeout, ==, SL_ON_TIMEOUT_PAUSE_FS);
  CHECK_INT(row.timeout_ms, ==, 60000);
  CHECK_INT(row.deadline_at, ==, row.created_at + 60000);
  CHECK_INT(row.created_at, >=, before);
  CHECK_INT(row.updated_at, ==, row.created_at);
  CHECK_INT(row.exit_status, ==, -1);
  CHECK_INT(row.exit_signal, ==, 0);
  CHECK_INT(row.init_pid, ==, 0);
  CHECK(row.cgroups == NULL);
  sl_sandbox_clear(&row);

  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -EEXIST);
  CHECK(strstr(err.msg, id) != NULL);
  fixture_close(&fx);
}

static void insert_without_template(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id};
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &spec, &row, &err), &err);
  CHECK_STR(row.base_layer_id, "");
  CHECK_STR(row.template_name, "");
  CHECK_STR(row.options, "{}");
  CHECK_INT(row.deadline_at, ==, 0);
  sl_sandbox_clear(&row);
  fixture_close(&fx);
}

static void insert_rejects_unknown_sources(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id, .template_name = "nope"};
  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "template not found: nope");
  spec.template_name = NULL;
  spec.source_snapshot_id = "sn-0123456789ab";
  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "snapshot not found: sn-0123456789ab");
  CHECK_INT(fixture_count(&fx, "sandboxes"), ==, 0);
  fixture_close(&fx);
}

static void fork_takes_snapshot_layer(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "base", 1, NULL, &err), &err);
  char parent[SL_ID_SIZE], snap[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, parent, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, parent, "s", NULL, NULL, snap, &err), &err);
  sl_snapshot sn;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, snap, &sn, &err), &err);

  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id, .source_snapshot_id = snap};
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &spec, &row, &err), &err);
  CHECK_STR(row.base_layer_id, sn.layer_id);
  CHECK_STR(row.template_name, "base");
  CHECK_STR(row.source_snapshot_id, snap);
  sl_sandbox_clear(&row);

  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  spec.backend = SL_BACKEND_VM;
  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "is a process snapshot") != NULL);
  spec.backend = SL_BACKEND_PROCESS;
  spec.template_name = "other";
  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "comes from template \"base\"") != NULL);
  sl_snapshot_clear(&sn);
  fixture_close(&fx);
}

static void state_changes_follow_rules(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id};
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), &err);

  CHECK_INT(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_FROZEN, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "creating -> frozen") != NULL);
  CHECK_INT(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_PAUSED, &err), ==, -EINVAL);

  sl_sandbox_process proc = {.init_pid = 10, .init_start_time = 5, .monitor_pid = 9,
                             .cgroups = "{\"freezer\": \"/sys/fs/cgroup/freezer/sandlot/x\"}"};
  CHECK_OK(sl_catalog_sandbox_set_running(fx.cat, id, &proc, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, id, &row, &err), &err);
  CHECK_INT(row.state, ==, SL_SANDBOX_RUNNING);
  CHECK_INT(row.init_pid, ==, 10);
  CHECK_INT(row.init_start_time, ==, 5);
  CHECK_INT(row.monitor_pid, ==, 9);
  CHECK_STR(row.cgroups, "{\"freezer\":\"/sys/fs/cgroup/freezer/sandlot/x\"}");
  sl_sandbox_clear(&row);

  const sl_sandbox_state path[] = {SL_SANDBOX_FROZEN, SL_SANDBOX_RUNNING, SL_SANDBOX_PAUSED,
                                   SL_SANDBOX_PAUSED, SL_SANDBOX_RUNNING, SL_SANDBOX_FROZEN,
                                   SL_SANDBOX_PAUSED};
  for (size_t i = 0; i < sizeof path / sizeof path[0]; i++) {
    CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, id, path[i], &err), &err);
    CHECK_OK(sl_catalog_sandbox_get(fx.cat, id, &row, &err), &err);
    CHECK_INT(row.state, ==, path[i]);
    sl_sandbox_clear(&row);
  }
  CHECK_INT(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_FROZEN, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "paused -> frozen") != NULL);

  proc.init_pid = 11;
  CHECK_OK(sl_catalog_sandbox_set_running(fx.cat, id, &proc, &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_DEAD, &err), &err);
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, id, &row, &err), &err);
  CHECK_INT(row.init_pid, ==, 0);
  CHECK_INT(row.state_changed_at, >=, row.created_at);
  sl_sandbox_clear(&row);

  CHECK_INT(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_RUNNING, &err), ==, -ESRCH);
  CHECK(strstr(err.msg, "sandbox is dead: ") != NULL);
  fixture_close(&fx);
}

static void exit_is_recorded_once(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char a[SL_ID_SIZE], b[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, NULL, NULL, a, &err), &err);
  CHECK_OK(fixture_sandbox(&fx, NULL, NULL, b, &err), &err);

  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, a, 3, 0, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, a, &row, &err), &err);
  CHECK_INT(row.state, ==, SL_SANDBOX_DEAD);
  CHECK_INT(row.exit_status, ==, 3);
  CHECK_INT(row.exit_signal, ==, 0);
  CHECK_INT(row.init_pid, ==, 0);
  sl_sandbox_clear(&row);
  CHECK_INT(sl_catalog_sandbox_set_exited(fx.cat, a, 0, 0, &err), ==, -ESRCH);

  /* Marked dead first, the exit signal learned later. */
  CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, b, SL_SANDBOX_DEAD, &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, b, -1, 9, &err), &err);
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, b, &row, &err), &err);
  CHECK_INT(row.exit_status, ==, -1);
  CHECK_INT(row.exit_signal, ==, 9);
  sl_sandbox_clear(&row);
  CHECK_INT(sl_catalog_sandbox_set_exited(fx.cat, b, -1, 9, &err), ==, -ESRCH);
  fixture_close(&fx);
}

static void timeout_is_updated(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char id[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, NULL, NULL, id, &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_timeout(fx.cat, id, 5000, 123456, SL_ON_TIMEOUT_PAUSE, &err),
           &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, id, &row, &err), &err);
  CHECK_INT(row.timeout_ms, ==, 5000);
  CHECK_INT(row.deadline_at, ==, 123456);
  CHECK_INT(row.on_timeout, ==, SL_ON_TIMEOUT_PAUSE);
  sl_sandbox_clear(&row);
  CHECK_OK(sl_catalog_sandbox_set_timeout(fx.cat, id, 0, 0, SL_ON_TIMEOUT_KILL, &err), &err);
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, id, &row, &err), &err);
  CHECK_INT(row.deadline_at, ==, 0);
  sl_sandbox_clear(&row);
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, id, 0, 0, &err), &err);
  CHECK_INT(sl_catalog_sandbox_set_timeout(fx.cat, id, 1, 1, SL_ON_TIMEOUT_KILL, &err), ==,
            -ESRCH);
  fixture_close(&fx);
}

static void delete_keeps_snapshots(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "base", 1, NULL, &err), &err);
  char sb[SL_ID_SIZE], sn[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, sb, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, sb, "keep", NULL, "{\"k\": \"v\"}", sn, &err), &err);

  CHECK_INT(sl_catalog_sandbox_delete(fx.cat, sb, &err), ==, -EBUSY);
  CHECK(strstr(err.msg, "is running") != NULL);
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, sb, 0, 0, &err), &err);
  CHECK_OK(sl_catalog_sandbox_delete(fx.cat, sb, &err), &err);
  sl_sandbox row;
  CHECK_INT(sl_catalog_sandbox_get(fx.cat, sb, &row, &err), ==, -ENOENT);
  CHECK_INT(sl_catalog_sandbox_delete(fx.cat, sb, &err), ==, -ENOENT);

  sl_snapshot snap;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, sn, &snap, &err), &err);
  CHECK_STR(snap.source_sandbox_id, sb);
  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(fx.cat, snap.layer_id, &usage, &err), &err);
  CHECK_INT(usage.snapshots, ==, 1);
  sl_snapshot_clear(&snap);

  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  q.sandbox_id = sb;
  sl_snapshot_page page;
  CHECK_OK(sl_catalog_snapshot_list(fx.cat, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 1);
  CHECK_STR(page.items[0].id, sn);
  sl_snapshot_page_free(&page);

  /* A fork of the snapshot still starts after its source is gone. */
  char fork[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, NULL, sn, fork, &err), &err);
  fixture_close(&fx);
}

/* A VM sandbox stacks on the layer of its last snapshot: the layer stays
 * in use after the snapshot is deleted, until the sandbox is dead. */
static void base_layer_follows_snapshot(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "base", 1, NULL, &err), &err);
  char sb[SL_ID_SIZE], sn[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, sb, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, sb, "top", NULL, NULL, sn, &err), &err);
  sl_snapshot snap;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, sn, &snap, &err), &err);

  CHECK_OK(sl_catalog_sandbox_set_base_layer(fx.cat, sb, snap.layer_id, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, sb, &row, &err), &err);
  CHECK_STR(row.base_layer_id, snap.layer_id);
  CHECK_STR(row.source_snapshot_id, "");
  sl_sandbox_clear(&row);

  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_snapshot_delete(fx.cat, sn, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 0);
  sl_layer_list_free(&removed);
  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(fx.cat, snap.layer_id, &usage, &err), &err);
  CHECK_INT(usage.live_sandboxes, ==, 1);

  CHECK_INT(sl_catalog_sandbox_set_base_layer(fx.cat, sb, "ly-0123456789ab", &err), ==, -ENOENT);
  CHECK_STR(err.msg, "layer not found: ly-0123456789ab");
  CHECK_INT(sl_catalog_sandbox_set_base_layer(fx.cat, sb, "not-a-layer", &err), ==, -EINVAL);
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, sb, 0, 0, &err), &err);
  CHECK_INT(sl_catalog_sandbox_set_base_layer(fx.cat, sb, snap.layer_id, &err), ==, -ESRCH);
  CHECK_OK(sl_catalog_layer_collect(fx.cat, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 1);
  sl_layer_list_free(&removed);
  sl_snapshot_clear(&snap);
  fixture_close(&fx);
}

/* Walk every page of a sandbox listing; returns the number of rows seen
 * and checks order and has_next on the way. */
static long walk_sandboxes(sl_catalog *cat, const char *state, int limit) {
  sl_error err = {0};
  sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
  q.state = state;
  q.limit = limit;
  char cursor[SL_CURSOR_SIZE] = "";
  int64_t last_at = INT64_MAX;
  char last_id[SL_ID_SIZE] = "zz";
  long seen = 0;
  while (1) {
    q.cursor = cursor[0] ? cursor : NULL;
    sl_sandbox_page page;
    if (sl_catalog_sandbox_list(cat, &q, &page, &err) < 0) {
      fprintf(stderr, "list failed: %s\n", err.msg);
      return -1;
    }
    for (size_t i = 0; i < page.count; i++) {
      const sl_sandbox *sb = &page.items[i];
      bool older = sb->created_at < last_at ||
                   (sb->created_at == last_at && strcmp(sb->id, last_id) < 0);
      if (!older || (state != NULL && strcmp(sl_sandbox_state_name(sb->state), state) != 0)) {
        sl_sandbox_page_free(&page);
        return -2;
      }
      last_at = sb->created_at;
      memcpy(last_id, sb->id, SL_ID_SIZE);
    }
    seen += (long)page.count;
    bool more = page.has_next;
    if (more != (page.next_cursor[0] != '\0') || (more && page.count != (size_t)limit)) {
      sl_sandbox_page_free(&page);
      return -3;
    }
    memcpy(cursor, page.next_cursor, sizeof cursor);
    sl_sandbox_page_free(&page);
    if (!more) return seen;
  }
}

static void list_pages_by_state(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  for (int i = 0; i < 300; i++) {
    char id[SL_ID_SIZE];
    CHECK_OK(fixture_sandbox(&fx, NULL, NULL, id, &err), &err);
    if (i % 3 == 0) CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, id, SL_SANDBOX_FROZEN, &err), &err);
  }
  CHECK_INT(walk_sandboxes(fx.cat, NULL, 7), ==, 300);
  CHECK_INT(walk_sandboxes(fx.cat, NULL, 300), ==, 300);
  CHECK_INT(walk_sandboxes(fx.cat, "frozen", 13), ==, 100);
  CHECK_INT(walk_sandboxes(fx.cat, "running", 1000), ==, 200);
  CHECK_INT(walk_sandboxes(fx.cat, "dead", 50), ==, 0);

  /* A cursor of the unfiltered listing does not continue a filtered one. */
  sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
  sl_sandbox_page page;
  CHECK_OK(sl_catalog_sandbox_list(fx.cat, &q, &page, &err), &err);
  CHECK(page.has_next);
  q.state = "running";
  q.cursor = page.next_cursor;
  sl_sandbox_page other;
  CHECK_INT(sl_catalog_sandbox_list(fx.cat, &q, &other, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid cursor") != NULL);
  CHECK_INT(other.count, ==, 0);
  sl_sandbox_page_free(&page);
  fixture_close(&fx);
}

static void list_plan_uses_index(void) {
  fixture fx;
  CHECK(fixture_open(&fx) == 0);
  for (int by_state = 0; by_state < 2; by_state++) {
    for (int after = 0; after < 2; after++) {
      char sql[1024], plan_sql[1100];
      CHECK_INT(catalog_sandbox_list_sql(by_state, after, sql, sizeof sql), ==, 0);
      snprintf(plan_sql, sizeof plan_sql, "EXPLAIN QUERY PLAN %s", sql);
      sqlite3_stmt *stmt;
      CHECK_INT(sqlite3_prepare_v2(catalog_db(fx.cat), plan_sql, -1, &stmt, NULL), ==, SQLITE_OK);
      bool uses_index = false, sorts = false;
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(stmt, 3);
        uses_index |= strstr(detail, by_state ? "sandboxes_state" : "sandboxes_created") != NULL;
        sorts |= strstr(detail, "TEMP B-TREE") != NULL;
      }
      sqlite3_finalize(stmt);
      CHECK(uses_index);
      CHECK(!sorts);
    }
  }
  fixture_close(&fx);
}

static void rebase_moves_base_layer(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "base", 1, NULL, &err), &err);
  CHECK_OK(fixture_template(&fx, "other", 1, NULL, &err), &err);
  char sandbox[SL_ID_SIZE], stranger[SL_ID_SIZE], snap[SL_ID_SIZE], foreign[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, sandbox, &err), &err);
  CHECK_OK(fixture_sandbox(&fx, "other", NULL, stranger, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, sandbox, "s", NULL, NULL, snap, &err), &err);
  CHECK_OK(fixture_snapshot(&fx, stranger, "t", NULL, NULL, foreign, &err), &err);
  sl_snapshot sn;
  CHECK_OK(sl_catalog_snapshot_get(fx.cat, snap, &sn, &err), &err);
  sl_sandbox before;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, sandbox, &before, &err), &err);

  CHECK_OK(sl_catalog_sandbox_rebase(fx.cat, sandbox, snap, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, sandbox, &row, &err), &err);
  CHECK_STR(row.base_layer_id, sn.layer_id);
  CHECK_STR(row.source_snapshot_id, snap);
  CHECK_STR(row.template_name, "base");
  CHECK_INT(row.state, ==, SL_SANDBOX_RUNNING);
  sl_sandbox_clear(&row);
  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(fx.cat, sn.layer_id, &usage, &err), &err);
  CHECK_INT(usage.live_sandboxes, ==, 1);

  CHECK_INT(sl_catalog_sandbox_rebase(fx.cat, sandbox, foreign, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "comes from template \"other\"") != NULL);
  char missing[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, missing, &err), &err);
  CHECK_INT(sl_catalog_sandbox_rebase(fx.cat, sandbox, missing, &err), ==, -ENOENT);
  CHECK_INT(sl_catalog_sandbox_rebase(fx.cat, sandbox, "../x", &err), ==, -EINVAL);
  CHECK_OK(sl_catalog_sandbox_set_state(fx.cat, sandbox, SL_SANDBOX_DEAD, &err), &err);
  CHECK_INT(sl_catalog_sandbox_rebase(fx.cat, sandbox, snap, &err), ==, -ESRCH);
  sl_sandbox_clear(&before);
  sl_snapshot_clear(&sn);
  fixture_close(&fx);
}

int main(void) {
  RUN(insert_records_spec);
  RUN(insert_without_template);
  RUN(insert_rejects_unknown_sources);
  RUN(fork_takes_snapshot_layer);
  RUN(rebase_moves_base_layer);
  RUN(state_changes_follow_rules);
  RUN(exit_is_recorded_once);
  RUN(timeout_is_updated);
  RUN(delete_keeps_snapshots);
  RUN(base_layer_follows_snapshot);
  RUN(list_pages_by_state);
  RUN(list_plan_uses_index);
  TEST_EXIT();
}
