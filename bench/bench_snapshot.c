/* Timing of snapshots, forks and pauses of real process sandboxes
 * through the sandbox API (root only).
 *
 *   bench_snapshot [--runs N]
 *
 * Run it from the build directory's bench folder or with
 * SANDLOT_BUILD_DIR set: it copies tests/fixture-bin/test_workload into
 * each sandbox, a static program that ticks every 0.5 ms, logs to the
 * overlay and keeps the given RSS of pseudo-random memory. It reports
 * medians over N runs:
 *   - snapshot of a sandbox with 10 and 100 MB: the pause the workload
 *     saw (its longest gap between two ticks, which includes its 0.5 ms
 *     sleep), CRIU's frozen time, and the whole sl_sandbox_snapshot call;
 *   - fork of a 10 MB snapshot until its first exec result (create, then
 *     one command through the agent), and four forks created together
 *     until all four have answered;
 *   - pause and resume calls of a 10 MB sandbox.
 * Nothing is asserted; docs/BENCHMARKS.md records the numbers. */
/* The test helpers bring checks and helpers the benchmark does not use. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "test.h"
#include "proc_helpers.h"
#include "snapshot_helpers.h"

static int runs = 11;
static sl_sandboxes *h;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_row(const char *what, double *values, int n) {
  if (n == 0) return;
  qsort(values, (size_t)n, sizeof *values, compare_doubles);
  double median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  printf("  %-52s median %7.1f ms  min %7.1f  max %7.1f  (n=%d)\n", what, median, values[0],
         values[n - 1], n);
}

/* A sandbox running the workload with `megabytes` of memory. */
static int boot_workload(int megabytes, sl_sandbox_info *sb, sl_error *err) {
  sl_create_spec spec = {0};
  spec.auto_kill = 1;
  if (sl_sandbox_create(h, &spec, sb, err) < 0) return -1;
  char mb[16];
  snprintf(mb, sizeof mb, "%d", megabytes);
  const char *args[] = {mb, NULL};
  if (start_workload(sb, args, err) < 0) return -1;
  if (wait_counter(sb, 50, 60000) < 0) return sl_error_set(err, ETIMEDOUT, "workload idle");
  return 0;
}

/* The maximum gap the workload logged since /tmp/gaps was emptied. */
static double max_gap(const sl_sandbox_info *sb) {
  char buf[4096];
  sl_error err = {0};
  if (agent_read(sb, "/tmp/gaps", buf, sizeof buf, &err) < 0) return -1;
  double max = 0, gap;
  for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
    if (sscanf(line, "%lf", &gap) == 1 && gap > max) max = gap;
  return max;
}

static void bench_snapshot(int megabytes) {
  sl_sandbox_info sb;
  sl_error err = {0};
  if (boot_workload(megabytes, &sb, &err) < 0) {
    fprintf(stderr, "boot failed: %s\n", err.msg);
    return;
  }
  double seen[64], frozen[64], call[64];
  int n = 0;
  for (int i = 0; i < runs; i++) {
    agent_write_text(&sb, "/tmp/gaps", "", &err);
    sleep_ms(100);
    sl_snapshot sn = {0};
    sl_snapshot_timing timing;
    double start = now_ms();
    if (sl_sandbox_snapshot(h, sb.id, NULL, &sn, &timing, &err) < 0) {
      fprintf(stderr, "snapshot failed: %s\n", err.msg);
      break;
    }
    call[n] = now_ms() - start;
    sleep_ms(50);
    seen[n] = max_gap(&sb);
    frozen[n] = timing.frozen_ms;
    n++;
    sl_snapshots_delete(h, sn.id, &err);
    sl_snapshot_clear(&sn);
  }
  printf("snapshot of a sandbox with %d MB RSS:\n", megabytes);
  print_row("pause seen by the workload", seen, n);
  print_row("CRIU frozen time (stats-dump)", frozen, n);
  print_row("sl_sandbox_snapshot call", call, n);
  sl_sandbox_kill(h, sb.id, &err);
}

/* One command through the fork's agent: its first exec result. */
static int first_exec(const sl_sandbox_info *sb) {
  sl_error err = {0};
  char out[64];
  int code = agent_run(sb, "cat /tmp/counter", out, sizeof out, &err);
  if (code != 0) fprintf(stderr, "exec in %s failed: %s\n", sb->id, err.msg);
  return code == 0 ? 0 : -1;
}

static void end_sandbox(const char *id) {
  sl_error err = {0};
  sl_sandbox_kill(h, id, &err);
  sl_sandbox_remove(h, id, &err);
}

static void bench_forks(void) {
  sl_sandbox_info source;
  sl_error err = {0};
  sl_snapshot sn = {0};
  if (boot_workload(10, &source, &err) < 0 ||
      sl_sandbox_snapshot(h, source.id, NULL, &sn, NULL, &err) < 0) {
    fprintf(stderr, "fork setup failed: %s\n", err.msg);
    return;
  }
  sl_create_spec spec = {0};
  spec.auto_kill = 1;
  spec.snapshot = sn.id;
  double one[64], four[64];
  int n = 0, m = 0;
  for (int i = 0; i < runs; i++) {
    sl_sandbox_info fork;
    double start = now_ms();
    if (sl_sandbox_create(h, &spec, &fork, &err) < 0) {
      fprintf(stderr, "fork failed: %s\n", err.msg);
      break;
    }
    if (first_exec(&fork) == 0) one[n++] = now_ms() - start;
    end_sandbox(fork.id);
  }
  for (int i = 0; i < runs; i++) {
    sl_sandbox_info forks[4];
    double start = now_ms();
    if (sl_sandbox_create_many(h, &spec, 4, forks, &err) < 0) {
      fprintf(stderr, "four forks failed: %s\n", err.msg);
      break;
    }
    int ok = 1;
    for (int j = 0; j < 4; j++) ok &= first_exec(&forks[j]) == 0;
    if (ok) four[m++] = now_ms() - start;
    for (int j = 0; j < 4; j++) end_sandbox(forks[j].id);
  }
  printf("forks of a sandbox with 10 MB RSS:\n");
  print_row("one fork: create until its first exec result", one, n);
  print_row("four forks (create_many) until all exec results", four, m);
  end_sandbox(source.id);
  sl_snapshots_delete(h, sn.id, &err);
  sl_snapshot_clear(&sn);
}

static void bench_pause(void) {
  sl_sandbox_info sb;
  sl_error err = {0};
  if (boot_workload(10, &sb, &err) < 0) {
    fprintf(stderr, "boot failed: %s\n", err.msg);
    return;
  }
  double pause_ms[64], resume_ms[64];
  int n = 0;
  for (int i = 0; i < runs; i++) {
    double start = now_ms();
    if (sl_sandbox_pause(h, sb.id, NULL, &err) < 0) break;
    pause_ms[n] = now_ms() - start;
    start = now_ms();
    if (sl_sandbox_resume(h, sb.id, &sb, &err) < 0) break;
    if (first_exec(&sb) < 0) break;
    resume_ms[n++] = now_ms() - start;
  }
  if (err.code != 0) fprintf(stderr, "pause or resume failed: %s\n", err.msg);
  printf("pause and resume of a sandbox with 10 MB RSS:\n");
  print_row("pause call (dump to disk, release)", pause_ms, n);
  print_row("resume until the first exec result", resume_ms, n);
  end_sandbox(sb.id);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--runs") == 0) runs = atoi(argv[i + 1]);
  if (runs < 1 || runs > 64) {
    fprintf(stderr, "invalid --runs %d: expected 1 to 64\n", runs);
    return 2;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "bench_snapshot needs root\n");
    return 2;
  }
  if (getenv("SANDLOT_BUILD_DIR") == NULL) {
    fprintf(stderr, "set SANDLOT_BUILD_DIR to the build directory (the workload is there)\n");
    return 2;
  }
  char home[64];
  h = open_store(home, sizeof home);
  if (h == NULL) return 1;
  bench_snapshot(10);
  bench_snapshot(100);
  bench_forks();
  bench_pause();
  close_store(h, home);
  return 0;
}
