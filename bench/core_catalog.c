/* The catalog commands of bench_core: a store with a large catalog, and
 * one page of snapshots from it through the core C API.
 *
 *   catalog-fill HOME ROWS             a new store at HOME with ROWS snapshots
 *   catalog-list HOME RUNS [FILTER...] time sl_snapshots_list RUNS times
 *
 * catalog-fill writes the rows in one SQL transaction with the shape that
 * sl_catalog_snapshot_begin/commit give them (snapshot, layer and label
 * rows), because a transaction per row would make the fill, not the
 * listing, dominate the run. Row i belongs to sandbox i % 100, is named
 * snap-<i % 1000> with tag t<i / 1000>, and has the label tier=gold when
 * i % 10 == 0 (else tier=iron). It prints the cursor after 100 pages of
 * the unfiltered listing, for the listings that start deep in it.
 *
 * catalog-list takes the filters of bench/catalog_list.lua, which times
 * the same listing through the Lua API: sandbox=ID, name=REF,
 * label=KEY=VALUE, cursor=CURSOR. One untimed listing comes first. The
 * JSON has the page's row count and every sample in microseconds. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_internal.h"
#include "core_driver.h"
#include "error.h"
#include "sandbox.h"

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

/* Create the store at `home` (tree and catalog schema) as sandlot does. */
static int create_store(const char *home) {
  sl_error err = {0};
  sl_sandboxes *h;
  if (sl_sandboxes_open(home, &h, &err) < 0) {
    fprintf(stderr, "bench_core: cannot create the store: %s: %s\n", sl_errname(err.code),
            err.msg);
    return -1;
  }
  sl_sandboxes_close(h);
  return 0;
}

static int command_fill(const char *home, long rows) {
  char db_path[PATH_MAX];
  if (snprintf(db_path, sizeof db_path, "%s/catalog.db", home) >= (int)sizeof db_path) {
    fprintf(stderr, "bench_core: store path too long: %s\n", home);
    return 1;
  }
  if (create_store(home) < 0) return 1;
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
  if (rc == 0) {
    printf("{\"rows\": %ld, \"fill_ms\": %.1f, \"page_size\": %d, \"deep_cursor\": ", rows,
           fill_ms, SL_LIST_DEFAULT_LIMIT);
    bench_json_string(stdout, cursor);
    printf("}\n");
  }
  sl_catalog_close(cat);
  return rc == 0 ? 0 : 1;
}

/* Fill `q` from KEY=VALUE arguments; -1 on an unknown key. */
static int parse_filters(int argc, char **argv, sl_snapshot_query *q) {
  for (int i = 0; i < argc; i++) {
    const char *eq = strchr(argv[i], '=');
    if (eq == NULL) return -1;
    size_t n = (size_t)(eq - argv[i]);
    const char *value = eq + 1;
    if (n == 7 && strncmp(argv[i], "sandbox", n) == 0) q->sandbox_id = value;
    else if (n == 4 && strncmp(argv[i], "name", n) == 0) q->ref = value;
    else if (n == 5 && strncmp(argv[i], "label", n) == 0) q->label = value;
    else if (n == 6 && strncmp(argv[i], "cursor", n) == 0) q->cursor = value;
    else return -1;
  }
  return 0;
}

/* One untimed listing, then `runs` timed ones. */
static int time_listing(sl_sandboxes *h, const sl_snapshot_query *q, double *samples, int runs,
                        size_t *count) {
  for (int r = -1; r < runs; r++) {
    sl_error err = {0};
    sl_snapshot_page page;
    double t0 = now_us();
    if (sl_snapshots_list(h, q, &page, &err) < 0) {
      fprintf(stderr, "bench_core: listing failed: %s: %s\n", sl_errname(err.code), err.msg);
      return -1;
    }
    if (r >= 0) samples[r] = now_us() - t0;
    *count = page.count;
    sl_snapshot_page_free(&page);
  }
  return 0;
}

static int command_list(const char *home, int runs, const sl_snapshot_query *q) {
  sl_error err = {0};
  sl_sandboxes *h;
  if (sl_sandboxes_open(home, &h, &err) < 0) {
    fprintf(stderr, "bench_core: %s: %s\n", sl_errname(err.code), err.msg);
    return 1;
  }
  double *samples = calloc((size_t)runs, sizeof *samples);
  size_t count = 0;
  int rc = samples == NULL ? -1 : time_listing(h, q, samples, runs, &count);
  if (rc == 0) {
    printf("{\"rows\": %zu, ", count);
    bench_json_numbers(stdout, "samples_us", samples, (size_t)runs, true);
    printf("}\n");
  }
  free(samples);
  sl_sandboxes_close(h);
  return rc == 0 ? 0 : 1;
}

int bench_catalog_command(const char *name, const char *home, int argc, char **argv) {
  if (strcmp(name, "catalog-fill") == 0) {
    long rows = argc == 1 ? strtol(argv[0], NULL, 10) : 0;
    if (rows < 10000 || rows > 10000000) {
      fprintf(stderr, "bench_core: invalid ROWS: expected 10000 to 10000000\n");
      return 2;
    }
    return command_fill(home, rows);
  }
  if (strcmp(name, "catalog-list") == 0) {
    int runs = argc >= 1 ? atoi(argv[0]) : 0;
    sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
    if (runs < 1 || runs > 100000 || parse_filters(argc - 1, argv + 1, &q) < 0) {
      fprintf(stderr, "bench_core: catalog-list HOME RUNS (1 to 100000) "
                      "[sandbox=ID] [name=REF] [label=KEY=VALUE] [cursor=CURSOR]\n");
      return 2;
    }
    return command_list(home, runs, &q);
  }
  return -1;
}
