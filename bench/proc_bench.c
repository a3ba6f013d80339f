/* Time process sandboxes and print the results as JSON on stdout.
 *
 *     proc_bench [SANDBOXES] [EXECS]      (defaults 20 and 200)
 *
 * create_to_first_exec_ms: from sl_sandbox_create() to the exit status of
 * `true` run through the agent client, for each of SANDBOXES sandboxes
 * created one after another from the built base template. One warm-up
 * create, which imports the template into the fresh store, is not
 * counted. exec_true_ms: round trips of `true` on one sandbox, EXECS
 * times, over one client connection. kill_ms: sl_sandbox_kill() until
 * everything is released. Each figure has its median, p90 and max. The
 * store is a new folder under /tmp, removed at the end. Needs root and
 * the built sandlot-monitor and sandlot-agent (found through
 * SANDLOT_BUILD_DIR or next to this program's parent folder). This
 * program asserts nothing. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "agent_client.h"
#include "run.h"
#include "sandbox.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct exec_wait {
  int done;
  int ok;
} exec_wait;

static void on_exit_cb(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err,
                       void *data) {
  (void)x;
  exec_wait *w = data;
  w->done = 1;
  w->ok = err == NULL && st != NULL && st->exited && st->exit_code == 0;
  if (err) fprintf(stderr, "proc_bench: exec failed: %s\n", err->msg);
}

/* Run `true` and wait for its exit status; 0 when it exited 0. */
static int run_true(uv_loop_t *loop, sl_agent *agent) {
  static const char *const argv[] = {"/bin/true", NULL};
  sl_exec_spec spec = {0};
  spec.argv = argv;
  sl_exec_callbacks cbs = {NULL, NULL, on_exit_cb};
  exec_wait w = {0, 0};
  sl_error err = {0};
  if (sl_agent_exec_start(agent, &spec, &cbs, &w, NULL, &err) < 0) {
    fprintf(stderr, "proc_bench: %s\n", err.msg);
    return -1;
  }
  while (!w.done) uv_run(loop, UV_RUN_ONCE);
  return w.ok ? 0 : -1;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void print_stats(const char *name, double *values, int n, int last) {
  qsort(values, (size_t)n, sizeof *values, by_value);
  printf("  \"%s\": {\"n\": %d, \"median\": %.2f, \"p90\": %.2f, \"max\": %.2f}%s\n", name, n,
         values[n / 2], values[(n * 9) / 10], values[n - 1], last ? "" : ",");
}

/* Create a sandbox and time it until `true` has run in it once. */
static int create_and_exec(sl_sandboxes *h, uv_loop_t *loop, sl_sandbox_info *info,
                           sl_agent **agent, double *ms) {
  sl_create_spec spec = {0};
  sl_error err = {0};
  double start = now_ms();
  if (sl_sandbox_create(h, &spec, info, &err) < 0) {
    fprintf(stderr, "proc_bench: create: %s\n", err.msg);
    return -1;
  }
  *agent = sl_agent_new(loop, info->agent_socket, NULL);
  if (*agent == NULL || run_true(loop, *agent) < 0) return -1;
  *ms = now_ms() - start;
  return 0;
}

static void point_at_build_dir(const char *argv0) {
  if (getenv("SANDLOT_BUILD_DIR")) return;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return;
  self[n] = '\0';
  setenv("SANDLOT_BUILD_DIR", dirname(dirname(self)), 1);
  (void)argv0;
}

int main(int argc, char **argv) {
  int sandboxes = argc > 1 ? atoi(argv[1]) : 20, execs = argc > 2 ? atoi(argv[2]) : 200;
  if (sandboxes < 1 || execs < 1) {
    fprintf(stderr, "usage: proc_bench [SANDBOXES] [EXECS]\n");
    return 2;
  }
  point_at_build_dir(argv[0]);
  char home[] = "/tmp/sandlot-bench-XXXXXX";
  if (mkdtemp(home) == NULL) return 1;
  sl_sandboxes *h;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &h, &err) < 0) {
    fprintf(stderr, "proc_bench: %s\n", err.msg);
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  double *create_ms = calloc((size_t)sandboxes, sizeof *create_ms);
  double *kill_ms = calloc((size_t)sandboxes, sizeof *kill_ms);
  double *exec_ms = calloc((size_t)execs, sizeof *exec_ms);
  int rc = 0;

  for (int i = -1; i < sandboxes && rc == 0; i++) {
    sl_sandbox_info info;
    sl_agent *agent = NULL;
    double ms = 0;
    rc = create_and_exec(h, &loop, &info, &agent, &ms);
    if (rc == 0 && i >= 0) create_ms[i] = ms;
    for (int j = 0; rc == 0 && i == 0 && j < execs; j++) {
      double start = now_ms();
      rc = run_true(&loop, agent);
      exec_ms[j] = now_ms() - start;
    }
    if (agent) sl_agent_close(agent);
    uv_run(&loop, UV_RUN_DEFAULT);
    double start = now_ms();
    if (info.id[0] && sl_sandbox_kill(h, info.id, &err) < 0) {
      fprintf(stderr, "proc_bench: kill: %s\n", err.msg);
      rc = -1;
    }
    if (i >= 0) kill_ms[i] = now_ms() - start;
  }

  if (rc == 0) {
    printf("{\n");
    print_stats("create_to_first_exec_ms", create_ms, sandboxes, 0);
    print_stats("exec_true_ms", exec_ms, execs, 0);
    print_stats("kill_ms", kill_ms, sandboxes, 1);
    printf("}\n");
  }
  uv_loop_close(&loop);
  sl_sandboxes_close(h);
  sl_remove_tree(home, &err);
  free(create_ms);
  free(kill_ms);
  free(exec_ms);
  return rc == 0 ? 0 : 1;
}
