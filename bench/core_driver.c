/* bench_core: the benchmark's helpers that need the core C API
 * (core/sandbox.h, core/catalog.h, core/criu.h). Each command does one
 * thing and prints one JSON object on stdout:
 *
 *   bench_core snapshot HOME ID           full snapshot, for its CRIU command line
 *   bench_core snapshot-remove HOME REF   delete a snapshot and its folders
 *   bench_core quiesce HOME ID            close the agent's client connections
 *   bench_core gc HOME                    kill every sandbox, clean up
 *   bench_core criu-stats FILE            decode stats-dump or stats-restore
 *   bench_core size PATH...               allocated bytes under the paths
 *   bench_core criu-path                  the CRIU binary the core runs
 *
 * and for the catalog rows (bench/core_catalog.c):
 *
 *   bench_core catalog-fill HOME ROWS     a new store with ROWS snapshots
 *   bench_core catalog-list HOME RUNS [FILTER...]
 *                                         one page, RUNS times (sl_snapshots_list)
 *
 * Times are CLOCK_MONOTONIC milliseconds (microseconds for the catalog).
 * Failures go to stderr and exit 1; usage errors exit 2. The program
 * finds sandlot-monitor and sandlot-agent through SANDLOT_BUILD_DIR or
 * the parent of its own folder. It asserts nothing. */
#include "core_driver.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "catalog.h"
#include "criu.h"
#include "layer_copy.h"
#include "log.h"
#include "sandbox.h"
#include "snapshot.h"

double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void bench_json_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p < 0x20)
      fprintf(out, "\\u%04x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

void bench_json_key(FILE *out, const char *key, bool first) {
  if (!first) fputs(", ", out);
  bench_json_string(out, key);
  fputs(": ", out);
}

void bench_json_numbers(FILE *out, const char *key, const double *values, size_t count,
                        bool first) {
  bench_json_key(out, key, first);
  fputc('[', out);
  for (size_t i = 0; i < count; i++) fprintf(out, "%s%.3f", i ? ", " : "", values[i]);
  fputc(']', out);
}

static int fail(const char *operation, const sl_error *err) {
  fprintf(stderr, "bench_core: %s failed: %s: %s\n", operation, sl_errname(err->code), err->msg);
  return 1;
}

/* ---- sandboxes --------------------------------------------------------- */

/* Point the core at the build folder's binaries: SANDLOT_BUILD_DIR for
 * sandlot-monitor and sandlot-agent, SANDLOT_CRIU_ACTION for the action
 * CRIU runs (the core looks for it next to the running program, and this
 * one lives in build/bench). */
static void point_at_build_dir(void) {
  if (getenv("SANDLOT_BUILD_DIR") == NULL) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    setenv("SANDLOT_BUILD_DIR", dirname(dirname(self)), 1);
  }
  char action[PATH_MAX];
  snprintf(action, sizeof action, "%.4000s/sandlot-criu-action", getenv("SANDLOT_BUILD_DIR"));
  setenv("SANDLOT_CRIU_ACTION", action, 0);
}

/* Ask the sandbox's agent to close every client connection, as the
 * snapshot engine does before a dump. */
static int command_quiesce(sl_sandboxes *h, int argc, char **argv) {
  sl_sandbox_info info;
  sl_error err = {0};
  if (sl_sandbox_get(h, argv[0], &info, &err) < 0) return fail("get", &err);
  if (sl_agent_quiesce(info.agent_socket, 5000, &err) < 0) return fail("quiesce", &err);
  printf("{}\n");
  return 0;
}

/* Kill every sandbox of the store that is not dead, then clean up what a
 * crashed run left (sl_sandbox_gc). */
static int command_gc(sl_sandboxes *h, int argc, char **argv) {
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  sl_error err = {0};
  if (sl_sandbox_list(h, &list, &count, &err) < 0) return fail("list", &err);
  int killed = 0, rc = 0;
  for (size_t i = 0; i < count; i++) {
    if (list[i].state == SL_SANDBOX_DEAD) continue;
    if (sl_sandbox_kill(h, list[i].id, &err) < 0 && err.code != ESRCH) rc = fail("kill", &err);
    killed++;
  }
  free(list);
  sl_gc_counts cleaned = {0};
  if (sl_sandbox_gc(h, &cleaned, &err) < 0) rc = fail("gc", &err);
  if (rc == 0)
    printf("{\"killed\": %d, \"cleaned\": {\"sandboxes\": %d, \"mounts\": %d, "
           "\"snapshots\": %d, \"layers\": %d}}\n",
           killed, cleaned.sandboxes, cleaned.mounts, cleaned.snapshots, cleaned.layers);
  return rc;
}

/* ---- snapshots --------------------------------------------------------- */

/* The argv of the last `criu` the core started, from its debug log. */
static char criu_argv[8192];

static void capture_criu_argv(sl_log_level level, const char *line, void *data) {
  const char *key = strstr(line, "event=criu.start");
  const char *argv = key != NULL ? strstr(key, "argv=\"") : NULL;
  if (argv == NULL) return;
  snprintf(criu_argv, sizeof criu_argv, "%s", argv + 6);
  size_t n = strlen(criu_argv);
  if (n > 0 && criu_argv[n - 1] == '"') criu_argv[n - 1] = '\0';
}

static void print_snapshot(const sl_snapshot *sn, const sl_snapshot_timing *t,
                           const char *home) {
  printf("{\"id\": ");
  bench_json_string(stdout, sn->id);
  printf(", \"total_ms\": %.3f, \"dump_ms\": %.3f, \"frozen_ms\": %.3f, \"size_bytes\": %lld",
         t->total_ms, t->dump_ms, t->frozen_ms, (long long)sn->size_bytes);
  char work[PATH_MAX];
  snprintf(work, sizeof work, "%.2000s/sandboxes/%s/log/%s", home, sn->source_sandbox_id,
           sn->id);
  bench_json_key(stdout, "image_dir", false);
  bench_json_string(stdout, sn->image_dir);
  bench_json_key(stdout, "work_dir", false);
  bench_json_string(stdout, work);
  bench_json_key(stdout, "criu_argv", false);
  bench_json_string(stdout, criu_argv);
  printf("}\n");
}

/* A full snapshot through the sandbox API, for its CRIU command line:
 * the harness times snapshots through the Lua API. */
static int command_snapshot(sl_sandboxes *h, int argc, char **argv) {
  sl_error err = {0};
  sl_log_set_sink(capture_criu_argv, NULL);
  sl_log_set_level(SL_LOG_DEBUG);
  sl_snapshot_opts opts = {.wait_ms = 10000};
  sl_snapshot sn = {0};
  sl_snapshot_timing timing;
  int rc = sl_sandbox_snapshot(h, argv[0], &opts, &sn, &timing, &err);
  if (rc == 0) print_snapshot(&sn, &timing, sl_sandboxes_home(h));
  sl_snapshot_clear(&sn);
  return rc == 0 ? 0 : fail("snapshot", &err);
}

static int command_snapshot_remove(sl_sandboxes *h, int argc, char **argv) {
  sl_error err = {0};
  if (sl_snapshots_delete(h, argv[0], &err) < 0) return fail("snapshot remove", &err);
  printf("{}\n");
  return 0;
}

/* ---- files ------------------------------------------------------------- */

static int command_criu_stats(int argc, char **argv) {
  sl_criu_stats st;
  sl_error err = {0};
  if (sl_criu_read_stats(argv[0], &st, &err) < 0) return fail("stats", &err);
  printf("{\"freezing_ms\": %.3f, \"frozen_ms\": %.3f, \"memdump_ms\": %.3f, "
         "\"memwrite_ms\": %.3f, \"pages_written\": %llu, \"forking_ms\": %.3f, "
         "\"restore_ms\": %.3f, \"pages_restored\": %llu}\n",
         st.freezing_time_us / 1e3, st.frozen_time_us / 1e3, st.memdump_time_us / 1e3,
         st.memwrite_time_us / 1e3, (unsigned long long)st.pages_written,
         st.forking_time_us / 1e3, st.restore_time_us / 1e3,
         (unsigned long long)st.pages_restored);
  return 0;
}

static int command_size(int argc, char **argv) {
  uint64_t total = 0;
  for (int i = 0; i < argc; i++) {
    uint64_t bytes = 0;
    sl_error err = {0};
    if (sl_layer_size(argv[i], &bytes, &err) < 0) return fail("size", &err);
    total += bytes;
  }
  printf("{\"bytes\": %llu}\n", (unsigned long long)total);
  return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

typedef int (*sandbox_command)(sl_sandboxes *h, int argc, char **argv);

static int with_sandboxes(const char *home, sandbox_command fn, int argc, char **argv) {
  sl_sandboxes *h;
  sl_error err = {0};
  point_at_build_dir();
  if (sl_sandboxes_open(home, &h, &err) < 0) return fail("open store", &err);
  int rc = fn(h, argc, argv);
  sl_sandboxes_close(h);
  return rc;
}

static int usage(void) {
  fprintf(stderr,
          "usage: bench_core snapshot HOME ID | snapshot-remove HOME REF |\n"
          "       quiesce HOME ID | gc HOME |\n"
          "       criu-stats FILE | size PATH... | criu-path |\n"
          "       catalog-fill HOME ROWS | catalog-list HOME RUNS [FILTER...]\n"
          "       (see bench/core_driver.c)\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "criu-path") == 0) {
    printf("{\"path\": ");
    bench_json_string(stdout, sl_criu_path());
    printf("}\n");
    return 0;
  }
  if (argc < 3) return usage();
  const char *cmd = argv[1];
  int rest = argc - 3;
  char **args = argv + 3;
  int rc = -1;
  point_at_build_dir();
  if (strcmp(cmd, "quiesce") == 0 && rest == 1)
    rc = with_sandboxes(argv[2], command_quiesce, rest, args);
  if (strcmp(cmd, "gc") == 0 && rest == 0) rc = with_sandboxes(argv[2], command_gc, rest, args);
  if (strcmp(cmd, "snapshot") == 0 && rest == 1)
    rc = with_sandboxes(argv[2], command_snapshot, rest, args);
  if (strcmp(cmd, "snapshot-remove") == 0 && rest == 1)
    rc = with_sandboxes(argv[2], command_snapshot_remove, rest, args);
  if (strcmp(cmd, "criu-stats") == 0 && argc == 3) rc = command_criu_stats(1, argv + 2);
  if (strcmp(cmd, "size") == 0) rc = command_size(argc - 2, argv + 2);
  if (strncmp(cmd, "catalog-", 8) == 0) rc = bench_catalog_command(cmd, argv[2], rest, args);
  return rc == -1 || rc == 2 ? usage() : rc;
}
