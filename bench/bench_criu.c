/* Timing of CRIU snapshots and forks on test sandboxes (root only).
 *
 *   bench_criu [--runs N] [--lazy-mb MB]
 *
 * For sandboxes of 10 and 100 MB RSS it reports medians over N runs of
 * three things. The pause the workload saw is its longest gap between two
 * ticks, which includes its 0.5 ms sleep. CRIU's frozen and freezing time
 * come from stats-dump. The snapshot call is the whole quiesce, dump,
 * capture, thaw and sync. For 10 MB it reports the time from the start of
 * a fork's restore until its first exec result (the agent's post-restore
 * hooks and one command), and the same for four forks started together.
 * With --lazy-mb it compares a full and a lazy restore. Nothing here is asserted; the numbers go to docs/BENCHMARKS.md. */
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
static int runs = 11;
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

/* The maximum gap the workload logged since /tmp/gaps was emptied. */
static double max_gap(const fx_sandbox *sb) {
  char buf[4096];
  if (fx_read(sb, "/tmp/gaps", buf, sizeof buf) < 0) return -1;
  double max = 0, gap;
  for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
    if (sscanf(line, "%lf", &gap) == 1 && gap > max) max = gap;
  return max;
}

static void bench_pause(int megabytes) {
  fx_sandbox sb;
  sl_error err = {0};
  char name[32], mb[16];
  snprintf(name, sizeof name, "pause-%d", megabytes);
  snprintf(mb, sizeof mb, "%d", megabytes);
  const char *args[] = {mb, NULL};
  if (fx_boot(&env, &sb, name, NULL, args, &err) < 0 || fx_wait_counter(&sb, 50, 30000) < 0) {
    fprintf(stderr, "boot failed: %s\n", err.msg);
    fx_destroy(&sb);
    return;
  }
  double seen[64], frozen[64], freezing[64], total[64];
  int n = 0;
  for (int i = 0; i < runs; i++) {
    fx_write(&sb, "/tmp/gaps", "");
    usleep(100000);
    snapshot_dirs s;
    sl_criu_dump_result res;
    double start = fx_now_ms();
    if (snapshot(&sb, &s, &res, &err) < 0) {
      fprintf(stderr, "snapshot failed: %s\n", err.msg);
      break;
    }
    total[n] = fx_now_ms() - start;
    usleep(50000);
    seen[n] = max_gap(&sb);
    frozen[n] = res.stats.frozen_time_us / 1000.0;
    freezing[n] = res.stats.freezing_time_us / 1000.0;
    n++;
    sl_layer_remove(s.dir, &err);
  }
  printf("snapshot of a sandbox with %d MB RSS:\n", megabytes);
  if (n > 0) {
    print_row("pause seen by the workload", seen, n);
    print_row("CRIU frozen time (stats-dump)", frozen, n);
    print_row("CRIU freezing time (stats-dump)", freezing, n);
    print_row("snapshot call (quiesce, dump, capture, sync)", total, n);
  }
  fx_destroy(&sb);
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

static void bench_forks(void) {
  fx_sandbox source;
  sl_error err = {0};
  const char *args[] = {"10", NULL};
  snapshot_dirs s;
  if (fx_boot(&env, &source, "fork-source", NULL, args, &err) < 0 ||
      fx_wait_counter(&source, 50, 30000) < 0 || snapshot(&source, &s, NULL, &err) < 0) {
    fprintf(stderr, "fork setup failed: %s\n", err.msg);
    fx_destroy(&source);
    return;
  }
  double one[64], criu_ms[64], four[64];
  int n = 0;
  for (int i = 0; i < runs; i++) {
    fx_sandbox sb;
    char work[400];
    if (prepare_fork(&sb, &s, &err) < 0) break;
    sl_criu_restore_result res;
    double start = fx_now_ms();
    int rc = fx_restore(&sb, s.images, work_dir(&sb, work, sizeof work), false, &res, &err);
    if (rc == 0 && first_exec(&sb) == 0) {
      one[n] = fx_now_ms() - start;
      criu_ms[n++] = res.elapsed_ms;
    } else {
      fprintf(stderr, "fork failed: %s\n", err.msg);
    }
    fx_destroy(&sb);
  }
  int m = 0;
  for (int i = 0; i < runs; i++) {
    fx_sandbox sbs[4];
    int fds[4], ok = 1;
    char work[400];
    for (int j = 0; j < 4; j++) ok &= prepare_fork(&sbs[j], &s, &err) == 0;
    double start = fx_now_ms();
    for (int j = 0; j < 4 && ok; j++)
      ok &= fx_restore_start(&sbs[j], s.images, work_dir(&sbs[j], work, sizeof work), false,
                             &fds[j], &err) == 0;
    for (int j = 0; j < 4 && ok; j++) ok &= fx_restore_wait(&sbs[j], fds[j], NULL, &err) == 0;
    for (int j = 0; j < 4 && ok; j++) ok &= first_exec(&sbs[j]) == 0;
    if (ok)
      four[m++] = fx_now_ms() - start;
    else
      fprintf(stderr, "four forks failed: %s\n", err.msg);
    for (int j = 0; j < 4; j++) fx_destroy(&sbs[j]);
  }
  printf("forks of a sandbox with 10 MB RSS:\n");
  if (n > 0) {
    print_row("one fork: restore start to first exec result", one, n);
    print_row("one fork: criu restore -d alone", criu_ms, n);
  }
  if (m > 0) print_row("four forks together, until all exec results", four, m);
  fx_destroy(&source);
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
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--runs") == 0) runs = atoi(argv[i + 1]);
    if (strcmp(argv[i], "--lazy-mb") == 0) lazy_mb = atoi(argv[i + 1]);
  }
  if (runs < 1 || runs > 64) {
    fprintf(stderr, "invalid --runs %d: expected 1 to 64\n", runs);
    return 2;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "bench_criu needs root\n");
    return 2;
  }
  if (fx_setup(&env) < 0) return 1;
  bench_pause(10);
  bench_pause(100);
  bench_forks();
  if (lazy_mb > 0) bench_lazy(lazy_mb);
  fx_teardown(&env);
  return 0;
}
