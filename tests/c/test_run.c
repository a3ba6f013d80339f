/* sl_run: output lines, exit statuses, and the signal state a child
 * starts with when its parent (the sandlot host) ignores SIGPIPE. */
#include <errno.h>
#include <signal.h>

#include "run.h"
#include "test.h"

typedef struct lines {
  char text[4096];
  int count;
} lines;

static void collect(const char *line, void *data) {
  lines *l = data;
  size_t used = strlen(l->text);
  snprintf(l->text + used, sizeof l->text - used, "%s\n", line);
  l->count++;
}

static void run_passes_output_lines(void) {
  char *argv[] = {"sh", "-c", "echo one; echo two >&2; printf three", NULL};
  lines l = {{0}, 0};
  sl_error err = {0};
  CHECK_OK(sl_run(argv, collect, &l, &err), &err);
  CHECK_INT(l.count, ==, 3);
  CHECK(strstr(l.text, "one\n") != NULL);
  CHECK(strstr(l.text, "two\n") != NULL);
  CHECK(strstr(l.text, "three\n") != NULL);
}

static void run_reports_exit_status(void) {
  char *argv[] = {"sh", "-c", "echo last words; exit 3", NULL};
  sl_error err = {0};
  CHECK_INT(sl_run(argv, NULL, NULL, &err), ==, -EIO);
  CHECK(strstr(err.msg, "exit status 3") != NULL);
  CHECK(strstr(err.msg, "last words") != NULL);
}

static void run_reports_missing_program(void) {
  char *argv[] = {"/nonexistent/program", NULL};
  sl_error err = {0};
  CHECK(sl_run(argv, NULL, NULL, &err) < 0);
  CHECK(strstr(err.msg, "/nonexistent/program") != NULL);
}

/* A child whose parent ignores SIGPIPE starts with the default action: a
 * writer into a closed pipe ends instead of failing with EPIPE. The shell
 * reports its ignored signals in /proc/self/status. */
static void run_restores_sigpipe(void) {
  struct sigaction ignore = {.sa_handler = SIG_IGN}, old;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, &old);
  char *argv[] = {"sh", "-c", "grep '^SigIgn:' /proc/self/status", NULL};
  lines l = {{0}, 0};
  sl_error err = {0};
  int rc = sl_run(argv, collect, &l, &err);
  sigaction(SIGPIPE, &old, NULL);
  CHECK_OK(rc, &err);
  unsigned long long ignored = 0;
  CHECK_INT(sscanf(l.text, "SigIgn: %llx", &ignored), ==, 1);
  CHECK_INT(ignored & (1ULL << (SIGPIPE - 1)), ==, 0);
}

int main(void) {
  RUN(run_passes_output_lines);
  RUN(run_reports_exit_status);
  RUN(run_reports_missing_program);
  RUN(run_restores_sigpipe);
  return test_failures ? 1 : 0;
}
