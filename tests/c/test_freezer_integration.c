/* Freezing through cgroup v1 (freezer.state) and cgroup v2
 * (cgroup.freeze) with a busy child process. Needs root and creates its
 * own cgroups, which it removes. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "freezer.h"
#include "test.h"

/* utime + stime of `pid` in clock ticks, or -1. */
static long long cpu_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  long long utime, stime;
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime) != 2)
    return -1;
  return utime + stime;
}

static pid_t spin_child(void) {
  pid_t pid = fork();
  if (pid == 0)
    for (volatile unsigned long i = 0;; i++) {}
  return pid;
}

static int join(const char *cgroup, pid_t pid) {
  char path[300];
  snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  int ok = fprintf(f, "%d", (int)pid) > 0;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* Freeze, check the child gets no CPU, thaw, check it runs again. */
static void check_freeze_cycle(const char *cgroup) {
  pid_t child = spin_child();
  CHECK(child > 0);
  sl_error err = {0};
  int joined = join(cgroup, child);
  if (joined < 0) kill(child, SIGKILL);
  CHECK_INT(joined, ==, 0);

  sl_freezer_state state;
  int rc = sl_freezer_freeze(cgroup, 5000, &err);
  int got = sl_freezer_get(cgroup, &state, &err);
  long long before = cpu_ticks(child);
  usleep(300000);
  long long frozen_after = cpu_ticks(child);
  int thawed = sl_freezer_thaw(cgroup, &err);
  sl_freezer_state state_after;
  int got_after = sl_freezer_get(cgroup, &state_after, &err);
  usleep(300000);
  long long running_after = cpu_ticks(child);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);

  CHECK_OK(rc, &err);
  CHECK_OK(got, &err);
  CHECK_INT(state, ==, SL_FREEZER_FROZEN);
  CHECK_INT(frozen_after, ==, before);
  CHECK_OK(thawed, &err);
  CHECK_OK(got_after, &err);
  CHECK_INT(state_after, ==, SL_FREEZER_THAWED);
  CHECK(running_after > frozen_after);
  CHECK_OK(sl_freezer_thaw(cgroup, &err), &err);
}

static char v1[128], v2[128];

static void test_freeze_v1(void) {
  if (mkdir(v1, 0755) < 0) {
    fprintf(stderr, "  no cgroup v1 freezer here (%s); case not run\n", strerror(errno));
    v1[0] = '\0';
    return;
  }
  check_freeze_cycle(v1);
}

static void test_freeze_v2(void) {
  if (mkdir(v2, 0755) < 0) {
    fprintf(stderr, "  no cgroup v2 hierarchy here (%s); case not run\n", strerror(errno));
    v2[0] = '\0';
    return;
  }
  check_freeze_cycle(v2);
}

static void test_freezer_bad_paths(void) {
  sl_error err = {0};
  sl_freezer_state state;
  CHECK_INT(sl_freezer_get("relative/path", &state, &err), ==, -EINVAL);
  CHECK_INT(sl_freezer_get(NULL, &state, &err), ==, -EINVAL);
  CHECK_INT(sl_freezer_freeze("/sys/fs/cgroup/freezer/no-such-sandlot-cgroup", 100, &err), ==,
            -ENOENT);
  CHECK(strstr(err.msg, "no-such-sandlot-cgroup") != NULL);
  CHECK_INT(sl_freezer_thaw("/nonexistent", &err), ==, -ENOENT);
}

int main(void) {
  if (geteuid() != 0) SKIP("freezing cgroups needs root");
  snprintf(v1, sizeof v1, "/sys/fs/cgroup/freezer/sandlot-freezer-test-%d", (int)getpid());
  snprintf(v2, sizeof v2, "/sys/fs/cgroup/unified/sandlot-freezer-test-%d", (int)getpid());
  if (access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) != 0)
    snprintf(v2, sizeof v2, "/sys/fs/cgroup/sandlot-freezer-test-%d", (int)getpid());
  RUN(test_freeze_v1);
  RUN(test_freeze_v2);
  RUN(test_freezer_bad_paths);
  if (v1[0]) rmdir(v1);
  if (v2[0]) rmdir(v2);
  TEST_EXIT();
}
