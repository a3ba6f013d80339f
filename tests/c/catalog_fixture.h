/* Shared setup for the store and catalog tests: a fresh temporary store
 * per test, and helpers that build a template, sandboxes and snapshots
 * through the public API. Include after test.h. */
#ifndef SANDLOT_CATALOG_FIXTURE_H
#define SANDLOT_CATALOG_FIXTURE_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_internal.h"
#include "store.h"

typedef struct {
  char dir[PATH_MAX];
  sl_store store;
  sl_catalog *cat;
  char db_path[PATH_MAX];
} fixture;

static __attribute__((unused)) int fixture_remove_entry(const char *path, const struct stat *st, int flag,
                                struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Remove a folder tree made by fixture_make_dir(). */
static __attribute__((unused)) void fixture_remove_dir(const char *dir) {
  nftw(dir, fixture_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make an empty folder under /tmp; returns 0 or -1. */
static __attribute__((unused)) int fixture_make_dir(char dir[PATH_MAX]) {
  snprintf(dir, PATH_MAX, "/tmp/sandlot-test-XXXXXX");
  return mkdtemp(dir) != NULL ? 0 : -1;
}

/* A new store with an open catalog; returns 0 or prints why and -1. */
static __attribute__((unused)) int fixture_open(fixture *fx) {
  memset(fx, 0, sizeof *fx);
  sl_error err = {0};
  if (fixture_make_dir(fx->dir) < 0) {
    perror("mkdtemp");
    return -1;
  }
  char root[PATH_MAX + 16];
  snprintf(root, sizeof root, "%s/store", fx->dir);
  if (sl_store_open(&fx->store, root, &err) < 0 ||
      sl_store_catalog_path(&fx->store, fx->db_path, sizeof fx->db_path, &err) < 0 ||
      sl_catalog_open(fx->db_path, &fx->cat, &err) < 0) {
    fprintf(stderr, "fixture: %s: %s\n", sl_errname(err.code), err.msg);
    return -1;
  }
  return 0;
}

static __attribute__((unused)) void fixture_close(fixture *fx) {
  sl_catalog_close(fx->cat);
  fx->cat = NULL;
  fixture_remove_dir(fx->dir);
}

/* Wait until the catalog clock has moved to the next millisecond, so the
 * next row gets a later created_at than every row before it. */
static __attribute__((unused)) void fixture_next_ms(void) {
  int64_t start = sl_catalog_now_ms();
  while (sl_catalog_now_ms() == start) {
  }
}

/* Count the rows of `table` (a fixed name from the test). */
static __attribute__((unused)) long long fixture_count(fixture *fx, const char *table) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
  sqlite3_stmt *stmt;
  long long n = -1;
  if (sqlite3_prepare_v2(catalog_db(fx->cat), sql, -1, &stmt, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return n;
}

/* Build template `name` with `layers` layers; the new layer ids go to
 * `layer_ids` when not NULL. Returns 0 or the failing call's result. */
static __attribute__((unused)) int fixture_template(fixture *fx, const char *name, int layers,
                            char layer_ids[][SL_ID_SIZE], sl_error *err) {
  char id[SL_ID_SIZE];
  int rc = sl_id_new(SL_ID_TEMPLATE, id, err);
  if (rc == 0) rc = sl_catalog_template_begin(fx->cat, id, name, "0123abcd", err);
  for (int i = 0; rc == 0 && i < layers; i++) {
    char layer[SL_ID_SIZE], path[PATH_MAX];
    rc = sl_id_new(SL_ID_LAYER, layer, err);
    if (rc == 0) rc = sl_store_layer_path(&fx->store, layer, NULL, path, sizeof path, err);
    if (rc == 0) rc = sl_catalog_template_add_layer(fx->cat, id, layer, path, 1000 + i, err);
    if (rc == 0 && layer_ids != NULL) memcpy(layer_ids[i], layer, SL_ID_SIZE);
  }
  if (rc == 0) rc = sl_catalog_template_finish(fx->cat, id, NULL, err);
  return rc;
}

/* Insert a sandbox (from `template_name` or forked from `snapshot_id`)
 * and mark it running; its id goes to `id`. */
static __attribute__((unused)) int fixture_sandbox(fixture *fx, const char *template_name, const char *snapshot_id,
                           char id[SL_ID_SIZE], sl_error *err) {
  int rc = sl_id_new(SL_ID_SANDBOX, id, err);
  sl_sandbox_spec spec = {.id = id, .backend = SL_BACKEND_PROCESS,
                          .template_name = template_name, .source_snapshot_id = snapshot_id};
  if (rc == 0) rc = sl_catalog_sandbox_insert(fx->cat, &spec, NULL, err);
  sl_sandbox_process proc = {.init_pid = 4242, .init_start_time = 777, .monitor_pid = 4241};
  if (rc == 0) rc = sl_catalog_sandbox_set_running(fx->cat, id, &proc, err);
  return rc;
}

/* Take a committed snapshot of `sandbox_id` named `name` (may be NULL)
 * with `tag` and `labels` (may be NULL); its id goes to `id`. */
static __attribute__((unused)) int fixture_snapshot(fixture *fx, const char *sandbox_id, const char *name,
                            const char *tag, const char *labels, char id[SL_ID_SIZE],
                            sl_error *err) {
  char layer[SL_ID_SIZE], layer_path[PATH_MAX], image_dir[PATH_MAX];
  int rc = sl_id_new(SL_ID_SNAPSHOT, id, err);
  if (rc == 0) rc = sl_id_new(SL_ID_LAYER, layer, err);
  if (rc == 0) rc = sl_store_layer_path(&fx->store, layer, NULL, layer_path, sizeof layer_path, err);
  if (rc == 0) rc = sl_store_snapshot_path(&fx->store, id, "images", image_dir, sizeof image_dir, err);
  sl_snapshot_spec spec = {.id = id, .source_sandbox_id = sandbox_id, .name = name,
                           .tag = tag, .labels = labels, .kind = SL_SNAPSHOT_FULL,
                           .layer_id = layer, .layer_path = layer_path, .image_dir = image_dir};
  if (rc == 0) rc = sl_catalog_snapshot_begin(fx->cat, &spec, err);
  if (rc == 0) rc = sl_catalog_snapshot_commit(fx->cat, id, 4096, 1024, NULL, err);
  return rc;
}

#endif
