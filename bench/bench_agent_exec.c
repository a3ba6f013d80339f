/* Round trip of `exec true` through the agent on one connection: the time
 * from sending the exec request to receiving its exit, with the blocking
 * client. Starts its own agent in a temporary folder.
 *
 *     build/bench/bench_agent_exec [ITERATIONS]
 *
 * Prints the median, 90th percentile and maximum in milliseconds. */
#include "agent_harness.h"

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 500;
  if (n <= 0) n = 500;
  /* The agent is in the build folder, the parent of this program's. */
  char self[512];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len > 0 && getenv("SANDLOT_BUILD_DIR") == NULL) {
    self[len] = '\0';
    for (int i = 0; i < 2; i++) {
      char *slash = strrchr(self, '/');
      if (slash != NULL) *slash = '\0';
    }
    setenv("SANDLOT_BUILD_DIR", self, 0);
  }
  harness h;
  if (harness_start(&h) < 0) return 1;
  sl_agent_conn c;
  sl_error err = {0};
  if (sl_agent_conn_open(&c, h.sock, 5000, 0, &err) < 0) {
    fprintf(stderr, "connect: %s\n", err.msg);
    return 1;
  }
  double *samples = calloc((size_t)n, sizeof *samples);
  sl_buf req = {0}, release = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&req, SL_F_ARGV, (const char *[]){"true", NULL});
  sl_frame_put_i64(&req, SL_F_STREAM, 1);
  sl_frame_end(&req, start, NULL);
  for (int i = 0; i < n; i++) {
    double t0 = now_ms();
    if (sl_agent_conn_call(&c, &req, NULL, NULL, &reply, &f, &err) < 0) {
      fprintf(stderr, "exec: %s\n", err.msg);
      return 1;
    }
    samples[i] = now_ms() - t0;
    release.len = 0;
    start = sl_frame_begin(&release, SL_MSG_RELEASE, 0);
    sl_frame_put_i64(&release, SL_F_PROC, field_i64(&f, SL_F_PROC, 0));
    sl_frame_end(&release, start, NULL);
    sl_agent_conn_call(&c, &release, NULL, NULL, &reply, &f, &err);
  }
  qsort(samples, (size_t)n, sizeof *samples, compare);
  printf("exec true round trip over %d runs: median %.3f ms, p90 %.3f ms, max %.3f ms\n", n,
         samples[n / 2], samples[n * 9 / 10], samples[n - 1]);
  sl_agent_conn_close(&c);
  harness_stop(&h);
  free(samples);
  return 0;
}
