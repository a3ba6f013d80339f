/* `bench_core catalog ROWS RUNS DIR`: time one page of snapshots from a
 * large catalog, with and without filters.
 *
 * The catalog is a new folder under DIR, removed at the end. Rows are
 * written in one SQL transaction with the shape that
 * sl_catalog_snapshot_begin/commit give them (snapshot, layer and label
 * rows), because a transaction per row would make the fill, not the
 * listing, dominate the run. Each listing runs RUNS times through the
 * public API (sl_catalog_snapshot_list); the JSON has every sample in
 * microseconds. Row i belongs to sandbox i % 100, is named
 * snap-<i % 1000> with tag t<i / 1000>, and has the label tier=gold when
 * i % 10 == 0 (else tier=iron). */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_internal.h"
#include "core_driver.h"

#define SANDBOXES 100
#define NAMES 1000

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int exec_sql(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  fprintf(stderr, "bench_core: SQL failed: %s\n", msg);
  sqlite3_free(msg);
  return -1;
}

/* Sandbox i has id sb-<i in 12 hex digits>; the same scheme for the
 * snapshot and layer of row i. */
static void make_id(char out[SL_ID_SIZE], const char *prefix, long i) {
  char buf[32];
  snprintf(buf, sizeof buf, "%s%012lx", prefix, (unsigned long)i & 0xffffffffffffUL);
  memcpy(out, buf, SL_ID_SIZE);
}

static int fill(sqlite3 *db, long rows) {
  if (exec_sql(db, "PRAGMA cache_size = -262144") < 0) return -1;
  if (exec_sql(db, "BEGIN IMMEDIATE") < 0) return -1;
  sqlite3_stmt *sb, *layer, *snap, *label;
  sqlite3_prepare_v2(db,
                     "INSERT INTO sandboxes (id, backend, state, created_at, updated_at, "
                     "state_changed_at) VALUES (?1, 'process', 'running', ?2, ?2, ?2)",
                     -1, &sb, NULL);
  sqlite3_prepare_v2(db,
                     "INSERT INTO layers (id, path, size_bytes, created_at, owner_kind, "
                     "owner_id) VALUES (?1, '/bench/layer', 4096, ?2, 'snapshot', ?3)",
                     -1, &layer, NULL);
  sqlite3_prepare_v2(db,
                     "INSERT INTO snapshots (id, state, name, tag, labels, source_sandbox_id, "
                     "kind, backend, layer_id, image_dir, size_bytes, started_at, created_at) "
                     "VALUES (?1, 'ready', ?2, ?3, ?4, ?5, 'full', 'process', ?6, "
                     "'/bench/images', 65536, ?7, ?7)",
                     -1, &snap, NULL);
  sqlite3_prepare_v2(db,
                     "INSERT INTO snapshot_labels (snapshot_id, key, value, created_at) "
                     "VALUES (?1, 'tier', ?2, ?3)",
                     -1, &label, NULL);
  int64_t start = sl_catalog_now_ms() - rows;
  for (long i = 0; i < SANDBOXES; i++) {
    char id[SL_ID_SIZE];
    make_id(id, "sb-", i);
    sqlite3_bind_text(sb, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(sb, 2, start);
    sqlite3_step(sb);
    sqlite3_reset(sb);
  }
  for (long i = 0; i < rows; i++) {
    char id[SL_ID_SIZE], layer_id[SL_ID_SIZE], sandbox[SL_ID_SIZE], name[32], tag[32];
    make_id(id, "sn-", i);
    make_id(layer_id, "ly-", i);
    make_id(sandbox, "sb-", i % SANDBOXES);
    snprintf(name, sizeof name, "snap-%ld", i % NAMES);
    snprintf(tag, sizeof tag, "t%ld", i / NAMES);
    const char *tier = i % 10 == 0 ? "gold" : "iron";
    char labels[64];
    snprintf(labels, sizeof labels, "{\"tier\":\"%s\"}", tier);
    int64_t created = start + i;

    sqlite3_bind_text(layer, 1, layer_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(layer, 2, created);
    sqlite3_bind_text(layer, 3, id, -1, SQLITE_TRANSIENT);
    sqlite3_step(layer);
    sqlite3_reset(layer);
    const char *texts[] = {id, name, tag, labels, sandbox, layer_id};
    for (int k = 0; k < 6; k++) sqlite3_bind_text(snap, k + 1, texts[k], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(snap, 7, created);
    sqlite3_step(snap);
    sqlite3_reset(snap);
    sqlite3_bind_text(label, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(label, 2, tier, -1, SQLITE_STATIC);
    sqlite3_bind_int64(label, 3, created);
    sqlite3_step(label);
    sqlite3_reset(label);
  }
  sqlite3_finalize(sb);
  sqlite3_finalize(layer);
  sqlite3_finalize(snap);
  sqlite3_finalize(label);
  return exec_sql(db, "COMMIT");
}

/* Time `runs` listings of `q` and write one JSON member with the page's
 * row count and the samples in microseconds. */
static int time_query(FILE *out, sl_catalog *cat, const char *label, sl_snapshot_query q,
                      int runs, bool first) {
  double *samples = calloc((size_t)runs, sizeof *samples);
  if (samples == NULL) return -1;
  size_t count = 0;
  int rc = 0;
  for (int r = 0; r < runs && rc == 0; r++) {
    sl_error err = {0};
    sl_snapshot_page page;
    double t0 = now_us();
    rc = sl_catalog_snapshot_list(cat, &q, &page, &err);
    if (rc < 0) {
      fprintf(stderr, "bench_core: catalog listing %s failed: %s\n", label, err.msg);
      break;
    }
    samples[r] = now_us() - t0;
    count = page.count;
    sl_snapshot_page_free(&page);
  }
  if (rc == 0) {
    bench_json_key(out, label, first);
    fprintf(out, "{\"rows\": %zu, ", count);
    bench_json_numbers(out, "samples_us", samples, (size_t)runs, true);
    fputc('}', out);
  }
  free(samples);
  return rc;
}

/* A cursor deep in the unfiltered listing: after `pages` pages of 50. */
static int deep_cursor(sl_catalog *cat, int pages, char cursor[SL_CURSOR_SIZE]) {
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  cursor[0] = '\0';
  for (int i = 0; i < pages; i++) {
    sl_error err = {0};
    sl_snapshot_page page;
    q.cursor = cursor[0] ? cursor : NULL;
    if (sl_catalog_snapshot_list(cat, &q, &page, &err) < 0) return -1;
    memcpy(cursor, page.next_cursor, SL_CURSOR_SIZE);
    sl_snapshot_page_free(&page);
  }
  return cursor[0] ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* The listings timed, in output order. */
typedef struct listing {
  const char *label;
  const char *sandbox_id;
  const char *ref;
  const char *label_filter;
  bool deep; /* start after 100 pages of the unfiltered listing */
} listing;

static const listing listings[] = {
    {"unfiltered", NULL, NULL, NULL, false},
    {"unfiltered_page_101", NULL, NULL, NULL, true},
    {"by_sandbox", "sb-000000000007", NULL, NULL, false},
    {"by_name", NULL, "snap-42", NULL, false},
    {"by_name_tag", NULL, "snap-42:t7", NULL, false},
    {"by_label", NULL, NULL, "tier=gold", false},
    {"by_label_and_sandbox", "sb-00000000000a", NULL, "tier=gold", false},
    {"by_label_and_sandbox_no_match", "sb-00000000000b", NULL, "tier=gold", false},
};

static int run(const char *db_path, long rows, int runs) {
  sl_error err = {0};
  sl_catalog *cat;
  if (sl_catalog_open(db_path, &cat, &err) < 0) {
    fprintf(stderr, "bench_core: %s\n", err.msg);
    return 1;
  }
  double t0 = now_us();
  int rc = fill(catalog_db(cat), rows);
  double fill_ms = (now_us() - t0) / 1e3;
  char cursor[SL_CURSOR_SIZE];
  if (rc == 0 && deep_cursor(cat, 100, cursor) < 0) {
    fprintf(stderr, "bench_core: listing 100 pages of %ld snapshots failed\n", rows);
    rc = -1;
  }

  printf("{\"rows\": %ld, \"fill_ms\": %.1f, \"page_size\": %d, \"listings\": {", rows,
         fill_ms, SL_LIST_DEFAULT_LIMIT);
  size_t n = sizeof listings / sizeof listings[0];
  for (size_t i = 0; i < n && rc == 0; i++) {
    sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
    q.sandbox_id = listings[i].sandbox_id;
    q.ref = listings[i].ref;
    q.label = listings[i].label_filter;
    if (listings[i].deep) q.cursor = cursor;
    rc = time_query(stdout, cat, listings[i].label, q, runs, i == 0);
  }
  printf("}}\n");
  sl_catalog_close(cat);
  return rc == 0 ? 0 : 1;
}

int bench_catalog_command(int argc, char **argv) {
  long rows = argc > 0 ? strtol(argv[0], NULL, 10) : 0;
  int runs = argc > 1 ? atoi(argv[1]) : 0;
  if (argc != 3 || rows < 10000 || rows > 10000000 || runs < 1 || runs > 100000) {
    fprintf(stderr, "usage: bench_core catalog ROWS RUNS DIR  (ROWS 10000..10000000, RUNS >= 1)\n");
    return 2;
  }
  char dir[PATH_MAX];
  if (snprintf(dir, sizeof dir, "%s/catalog-XXXXXX", argv[2]) >= (int)sizeof dir ||
      mkdtemp(dir) == NULL) {
    fprintf(stderr, "bench_core: cannot create a folder in %s: %m\n", argv[2]);
    return 1;
  }
  char db_path[PATH_MAX + 16];
  snprintf(db_path, sizeof db_path, "%s/catalog.db", dir);
  int rc = run(db_path, rows, runs);
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
