#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "test.h"
#include "catalog_fixture.h"

static const char *pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size) {
  sqlite3_stmt *stmt;
  buf[0] = '\0';
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) return buf;
  if (sqlite3_step(stmt) == SQLITE_ROW)
    snprintf(buf, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return buf;
}

static bool index_exists(sqlite3 *db, const char *name) {
  sqlite3_stmt *stmt;
  bool found = false;
  sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1", -1,
                     &stmt, NULL);
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
  found = sqlite3_step(stmt) == SQLITE_ROW;
  sqlite3_finalize(stmt);
  return found;
}

static void open_creates_current_schema(void) {
  fixture fx;
  CHECK(fixture_open(&fx) == 0);
  sqlite3 *db = catalog_db(fx.cat);
  char buf[64];
  CHECK_STR(pragma_text(db, "PRAGMA user_version", buf, sizeof buf), "2");
  CHECK_STR(pragma_text(db, "PRAGMA journal_mode", buf, sizeof buf), "wal");
  CHECK_STR(pragma_text(db, "PRAGMA foreign_keys", buf, sizeof buf), "1");
  CHECK_STR(pragma_text(db, "SELECT length(value) FROM meta WHERE key = 'cursor_key'", buf,
                        sizeof buf), "16");
  CHECK(index_exists(db, "snapshots_ready"));
  CHECK(index_exists(db, "sandboxes_state"));

  struct stat st;
  CHECK_INT(stat(fx.db_path, &st), ==, 0);
  CHECK_INT(st.st_mode & 0777, ==, 0600);
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", fx.db_path);
  CHECK_INT(stat(wal, &st), ==, 0);
  CHECK_INT(st.st_mode & 0777, ==, 0600);
  fixture_close(&fx);
}

static void reopen_keeps_rows(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char sb[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, NULL, NULL, sb, &err), &err);
  sl_catalog *second;
  CHECK_OK(sl_catalog_open(fx.db_path, &second, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(second, sb, &row, &err), &err);
  CHECK_INT(row.state, ==, SL_SANDBOX_RUNNING);
  sl_sandbox_clear(&row);
  sl_catalog_close(second);
  fixture_close(&fx);
}

/* Run `sql` on a raw connection; returns the SQLite result. */
static int raw_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fprintf(stderr, "sql failed: %s\n", msg);
  sqlite3_free(msg);
  return rc;
}

/* Rows in version 1: template tp (layers A, B), sandbox S1 on B, its
 * snapshot N1 (layer C over B), fork S2 of N1 on C, and S2's snapshot N2
 * (layer D over C). */
static const char v1_rows[] =
    "INSERT INTO layers VALUES ('ly-00000000000a', '/s/layers/ly-00000000000a', 10, 1, "
    "  'template', 'tp-000000000001');"
    "INSERT INTO layers VALUES ('ly-00000000000b', '/s/layers/ly-00000000000b', 20, 2, "
    "  'template', 'tp-000000000001');"
    "INSERT INTO templates VALUES ('tp-000000000001', 'base', 'abcd', 'ready', 1, 2);"
    "INSERT INTO template_layers VALUES ('tp-000000000001', 0, 'ly-00000000000a');"
    "INSERT INTO template_layers VALUES ('tp-000000000001', 1, 'ly-00000000000b');"
    "INSERT INTO sandboxes (id, backend, state, template_name, base_layer_id, init_pid, "
    "  created_at, updated_at, state_changed_at) VALUES ('sb-000000000001', 'process', "
    "  'running', 'base', 'ly-00000000000b', 100, 10, 10, 10);"
    "INSERT INTO layers VALUES ('ly-00000000000c', '/s/layers/ly-00000000000c', 30, 20, "
    "  'snapshot', 'sn-000000000001');"
    "INSERT INTO snapshots VALUES ('sn-000000000001', 'nightly', 'sb-000000000001', 'base', "
    "  'full', 'process', 'ly-00000000000c', '/s/snapshots/sn-000000000001', 4096, 20);"
    "INSERT INTO sandboxes (id, backend, state, template_name, source_snapshot_id, "
    "  base_layer_id, created_at, updated_at, state_changed_at) VALUES ('sb-000000000002', "
    "  'process', 'running', 'base', 'sn-000000000001', 'ly-00000000000c', 30, 30, 30);"
    "INSERT INTO layers VALUES ('ly-00000000000d', '/s/layers/ly-00000000000d', 40, 40, "
    "  'snapshot', 'sn-000000000002');"
    "INSERT INTO snapshots VALUES ('sn-000000000002', NULL, 'sb-000000000002', 'base', "
    "  'fs', 'process', 'ly-00000000000d', '/s/snapshots/sn-000000000002', 8192, 40);";

static void check_migrated_layers(sl_catalog *cat) {
  sl_error err = {0};
  sl_layer_list stack = {0};
  CHECK_OK(sl_catalog_layer_stack(cat, "ly-00000000000d", &stack, &err), &err);
  CHECK_INT(stack.count, ==, 4);
  CHECK_STR(stack.items[0].id, "ly-00000000000d");
  CHECK_STR(stack.items[1].id, "ly-00000000000c");
  CHECK_STR(stack.items[2].id, "ly-00000000000b");
  CHECK_STR(stack.items[3].id, "ly-00000000000a");
  CHECK_STR(stack.items[3].parent_id, "");
  CHECK_STR(stack.items[3].path, "/s/layers/ly-00000000000a");
  sl_layer_list_free(&stack);

  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(cat, "ly-00000000000c", &usage, &err), &err);
  CHECK_INT(usage.snapshots, ==, 1);
  CHECK_INT(usage.child_layers, ==, 1);
  CHECK_INT(usage.live_sandboxes, ==, 1);
}

static void migrates_v1_rows(void) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  sl_error err = {0};
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(path, sizeof path, "%s/catalog.db", dir);

  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), ==, SQLITE_OK);
  CHECK_OK(catalog_migrate(db, 1, 1000, &err), &err);
  char buf[64];
  CHECK_STR(pragma_text(db, "PRAGMA user_version", buf, sizeof buf), "1");
  CHECK_INT(raw_exec(db, v1_rows), ==, SQLITE_OK);
  sqlite3_close(db);

  sl_catalog *cat;
  CHECK_OK(sl_catalog_open(path, &cat, &err), &err);
  db = catalog_db(cat);
  CHECK_STR(pragma_text(db, "PRAGMA user_version", buf, sizeof buf), "2");
  CHECK(index_exists(db, "snapshots_ready_name"));
  CHECK(index_exists(db, "snapshots_ready_sandbox"));
  CHECK(index_exists(db, "snapshot_labels_match"));
  CHECK(index_exists(db, "sandboxes_state"));
  CHECK(!index_exists(db, "snapshots_created"));

  sl_snapshot sn;
  CHECK_OK(sl_catalog_snapshot_resolve(cat, "nightly", &sn, &err), &err);
  CHECK_STR(sn.id, "sn-000000000001");
  CHECK_STR(sn.tag, "");
  CHECK_STR(sn.labels, "{}");
  CHECK_STR(sn.parent_id, "");
  CHECK_INT(sn.created_at, ==, 20);
  CHECK_INT(sn.size_bytes, ==, 4096);
  sl_snapshot_clear(&sn);
  CHECK_OK(sl_catalog_snapshot_get(cat, "sn-000000000002", &sn, &err), &err);
  CHECK_STR(sn.parent_id, "sn-000000000001");
  CHECK_INT(sn.kind, ==, SL_SNAPSHOT_FS);
  sl_snapshot_clear(&sn);

  sl_sandbox sb;
  CHECK_OK(sl_catalog_sandbox_get(cat, "sb-000000000001", &sb, &err), &err);
  CHECK_STR(sb.labels, "{}");
  CHECK_INT(sb.init_pid, ==, 100);
  sl_sandbox_clear(&sb);

  check_migrated_layers(cat);

  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  q.sandbox_id = "sb-000000000002";
  sl_snapshot_page page;
  CHECK_OK(sl_catalog_snapshot_list(cat, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 1);
  CHECK_STR(page.items[0].id, "sn-000000000002");
  sl_snapshot_page_free(&page);
  sl_catalog_close(cat);
  fixture_remove_dir(dir);
}

static void rejects_newer_schema(void) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  sl_error err = {0};
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(path, sizeof path, "%s/catalog.db", dir);
  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), ==, SQLITE_OK);
  CHECK_INT(raw_exec(db, "CREATE TABLE future (x); PRAGMA user_version = 3;"), ==, SQLITE_OK);
  sqlite3_close(db);

  sl_catalog *cat = (sl_catalog *)1;
  CHECK_INT(sl_catalog_open(path, &cat, &err), ==, -ENOTSUP);
  CHECK(cat == NULL);
  CHECK(strstr(err.msg, "schema version 3 is newer than this sandlot supports (2)") != NULL);
  CHECK(strstr(err.msg, path) != NULL);

  /* Nothing was written: same version, still in rollback-journal mode. */
  CHECK_INT(sqlite3_open(path, &db), ==, SQLITE_OK);
  char buf[64];
  CHECK_STR(pragma_text(db, "PRAGMA user_version", buf, sizeof buf), "3");
  CHECK_STR(pragma_text(db, "PRAGMA journal_mode", buf, sizeof buf), "delete");
  CHECK_STR(pragma_text(db, "SELECT count(*) FROM sqlite_master", buf, sizeof buf), "1");
  sqlite3_close(db);
  fixture_remove_dir(dir);
}

static void rejects_bad_files(void) {
  char dir[PATH_MAX], path[PATH_MAX + 32], link[PATH_MAX + 16];
  sl_error err = {0};
  sl_catalog *cat;
  CHECK(fixture_make_dir(dir) == 0);

  snprintf(path, sizeof path, "%s/garbage.db", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  for (int i = 0; i < 512; i++) fputs("not a database ", f);
  fclose(f);
  CHECK_INT(sl_catalog_open(path, &cat, &err), ==, -EIO);
  CHECK(strstr(err.msg, "not an SQLite database") != NULL);

  snprintf(link, sizeof link, "%s/link.db", dir);
  CHECK_INT(symlink(path, link), ==, 0);
  CHECK_INT(sl_catalog_open(link, &cat, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "symlink") != NULL);

  snprintf(path, sizeof path, "%s/missing/catalog.db", dir);
  CHECK_INT(sl_catalog_open(path, &cat, &err), ==, -ENOENT);

  CHECK_INT(sl_catalog_open(NULL, &cat, &err), ==, -EINVAL);
  CHECK_INT(sl_catalog_open("", &cat, &err), ==, -EINVAL);
  CHECK_INT(sl_catalog_open(path, NULL, &err), ==, -EINVAL);
  sqlite3 *db;
  CHECK_INT(sqlite3_open(":memory:", &db), ==, SQLITE_OK);
  CHECK_INT(catalog_migrate(db, 0, 0, &err), ==, -EINVAL);
  CHECK_INT(catalog_migrate(db, SL_CATALOG_SCHEMA_VERSION + 1, 0, &err), ==, -EINVAL);
  sqlite3_close(db);
  sl_catalog_close(NULL);
  fixture_remove_dir(dir);
}

int main(void) {
  RUN(open_creates_current_schema);
  RUN(reopen_keeps_rows);
  RUN(migrates_v1_rows);
  RUN(rejects_newer_schema);
  RUN(rejects_bad_files);
  TEST_EXIT();
}
