/* Full against lazy restore of one CRIU snapshot (root only).
 *
 *   bench_criu [--lazy-mb MB]
 *
 * Restores a sandbox of MB megabytes of RSS (300 by default) three times
 * with a full restore and three times with lazy pages (`criu lazy-pages`
 * serving pages on demand), and reports the time until the first exec
 * result: the agent's post-restore hooks and one command. Lazy restore is
 * not part of the sandbox API, so this runs the tree-level calls on the
 * test fixture's sandboxes (tests/c/fixture). `make bench` measures
 * what the API does. Nothing is asserted; docs/BENCHMARKS.md records the
 * numbers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu_tree.h"
#include "layer_copy.h"
#include "sandbox_fixture.h"

static fx_env env;
static int snapshot_counter;

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *values, int n) {
  qsort(values, (size_t)n, sizeof *values, compare_doubles);
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static void print_row(const char *what, double *values, int n) {
  double med = median(values, n);
  printf("  %-44s median %7.1f ms  min %7.1f  max %7.1f  (n=%d)\n", what, med, values[0],
         values[n - 1], n);
}

typedef struct {
  char dir[300], images[340], layer[340], work[340];
} snapshot_dirs;

static void new_snapshot(snapshot_dirs *s) {
  snprintf(s->dir, sizeof s->dir, "%s/bench-snap-%d", env.base, ++snapshot_counter);
  snprintf(s->images, sizeof s->images, "%s/images", s->dir);
  snprintf(s->layer, sizeof s->layer, "%s/layer", s->dir);
  snprintf(s->work, sizeof s->work, "%s/work", s->dir);
  mkdir(s->dir, 0755);
}

/* Quiesce the agent and dump with capture, as the snapshot engine does. */
static int snapshot(fx_sandbox *sb, snapshot_dirs *s, sl_criu_dump_result *res, sl_error *err) {
  new_snapshot(s);
  int rc = fx_quiesce(sb, err);
  if (rc < 0) return rc;
  sl_criu_dump_request req = {
      .init_pid = sb->init_pid,
      .freezer_cgroup = sb->cgroups[0],
      .images_dir = s->images,
      .work_dir = s->work,
      .upper_dir = sb->upper,
      .layer_dir = s->layer,
      .leave_running = true,
      .timeout_ms = 120000,
  };
  return sl_criu_dump_tree(&req, res, err);
}

/* The fork's first exec result: the agent's post-restore hooks (hostname,
 * entropy) and one command run through the agent. */
static int first_exec(const fx_sandbox *sb) {
  sl_error err = {0};
  int exit_code = -1;
  int rc = fx_post_restore(sb, sb->name, "cat /tmp/counter > /dev/null", &exit_code, &err);
  if (rc < 0) fprintf(stderr, "post-restore of %s failed: %s\n", sb->name, err.msg);
  return rc == 0 && exit_code == 0 ? 0 : -1;
}

static int fork_count;

static int prepare_fork(fx_sandbox *sb, const snapshot_dirs *s, sl_error *err) {
  char name[32];
  snprintf(name, sizeof name, "fork-%d", ++fork_count);
  return fx_prepare(&env, sb, name, s->layer, err);
}

/* One work directory per restore: parallel restores must not share one. */
static const char *work_dir(const fx_sandbox *sb, char *buf, size_t size) {
  snprintf(buf, size, "%.200s/bench-restore-%.60s", env.base, sb->name);
  return buf;
}

static void bench_lazy(int megabytes) {
  fx_sandbox source;
  sl_error err = {0};
  char mb[16];
  snprintf(mb, sizeof mb, "%d", megabytes);
  const char *args[] = {mb, NULL};
  snapshot_dirs s;
  if (fx_boot(&env, &source, "lazy-source", NULL, args, &err) < 0 ||
      fx_wait_counter(&source, 20, 60000) < 0 || snapshot(&source, &s, NULL, &err) < 0) {
    fprintf(stderr, "lazy setup failed: %s\n", err.msg);
    fx_destroy(&source);
    return;
  }
  fx_destroy(&source);
  printf("restore of a sandbox with %d MB RSS:\n", megabytes);
  for (int lazy = 0; lazy <= 1; lazy++) {
    double answer[16];
    int n = 0;
    for (int i = 0; i < 3; i++) {
      fx_sandbox sb;
      char work[400];
      if (prepare_fork(&sb, &s, &err) < 0) break;
      double start = fx_now_ms();
      if (fx_restore(&sb, s.images, work_dir(&sb, work, sizeof work), lazy, NULL, &err) == 0 &&
          first_exec(&sb) == 0)
        answer[n++] = fx_now_ms() - start;
      else
        fprintf(stderr, "restore failed: %s\n", err.msg);
      fx_destroy(&sb);
    }
    if (n > 0) print_row(lazy ? "lazy restore until first exec result" : "full restore until first exec result",
                         answer, n);
  }
}

int main(int argc, char **argv) {
  int lazy_mb = 300;
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--lazy-mb") == 0) lazy_mb = atoi(argv[i + 1]);
  if (lazy_mb < 1 || lazy_mb > 4096) {
    fprintf(stderr, "invalid --lazy-mb %d: expected 1 to 4096\n", lazy_mb);
    return 2;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "bench_criu needs root\n");
    return 2;
  }
  if (fx_setup(&env) < 0) return 1;
  bench_lazy(lazy_mb);
  fx_teardown(&env);
  return 0;
}
