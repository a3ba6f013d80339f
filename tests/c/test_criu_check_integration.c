/* Runs `criu check` with the CRIU that tools/deps.sh built, through
 * sl_criu_run(), and the failure paths of execution. Needs root. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu.h"
#include "error.h"
#include "sandlot_config.h"
#include "test.h"

static void test_check_passes(void) {
  sl_criu_opts o = {.command = SL_CRIU_CHECK};
  sl_criu_exec x = {.timeout_ms = 60000};
  sl_criu_result r;
  sl_error err = {0};
  CHECK_OK(sl_criu_run(&o, &x, &r, &err), &err);
  CHECK_INT(r.exit_status, ==, 0);
  CHECK(r.elapsed_ms > 0);
}

/* Lazy restore needs both userfaultfd features. */
static void test_check_features(void) {
  static const char *const features[] = {"uffd", "uffd-noncoop"};
  for (size_t i = 0; i < sizeof features / sizeof *features; i++) {
    sl_criu_opts o = {.command = SL_CRIU_CHECK, .feature = features[i]};
    sl_error err = {0};
    CHECK_OK(sl_criu_run(&o, NULL, NULL, &err), &err);
  }
}

static void test_check_unknown_feature(void) {
  sl_criu_opts o = {.command = SL_CRIU_CHECK, .feature = "no-such-feature"};
  sl_criu_result r;
  sl_error err = {0};
  CHECK_INT(sl_criu_run(&o, NULL, &r, &err), ==, -EIO);
  CHECK(r.exit_status != 0);
  CHECK(strstr(err.msg, "criu check failed") != NULL);
  CHECK(strstr(err.msg, "Unknown feature no-such-feature") != NULL);
}

static void test_missing_binary(void) {
  setenv("SANDLOT_CRIU", "/nonexistent/criu", 1);
  sl_criu_opts o = {.command = SL_CRIU_CHECK};
  sl_error err = {0};
  int rc = sl_criu_run(&o, NULL, NULL, &err);
  unsetenv("SANDLOT_CRIU");
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err.msg, "/nonexistent/criu") != NULL);
}

/* A dump of a pid that does not exist fails with CRIU's own error lines,
 * and the log stays in the work directory. */
static void test_dump_unknown_pid(void) {
  char dir[] = "/tmp/sandlot-criu-check-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char images[256], work[256];
  snprintf(images, sizeof images, "%s/images", dir);
  snprintf(work, sizeof work, "%s/work", dir);
  CHECK(mkdir(images, 0700) == 0);
  sl_criu_opts o = {
      .command = SL_CRIU_DUMP,
      .images_dir = images,
      .work_dir = work,
      .pid = 999999999,
      .network_lock = SL_CRIU_NETLOCK_SKIP,
  };
  sl_criu_result r;
  sl_error err = {0};
  int rc = sl_criu_run(&o, &(sl_criu_exec){.timeout_ms = 60000}, &r, &err);
  CHECK_INT(rc, ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed: exit status 1: Error") != NULL);
  CHECK(strstr(err.msg, "RLIMIT") == NULL);
  CHECK(access(r.log_path, R_OK) == 0);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

static void test_timeout_kills(void) {
  char dir[] = "/tmp/sandlot-criu-check-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char fake[256];
  snprintf(fake, sizeof fake, "%s/criu", dir);
  FILE *f = fopen(fake, "w");
  CHECK(f != NULL);
  fprintf(f, "#!/bin/sh\necho $$ > %s/pid\nexec sleep 30\n", dir);
  fclose(f);
  CHECK(chmod(fake, 0755) == 0);
  setenv("SANDLOT_CRIU", fake, 1);
  sl_criu_opts o = {.command = SL_CRIU_CHECK};
  sl_criu_result r;
  sl_error err = {0};
  int rc = sl_criu_run(&o, &(sl_criu_exec){.timeout_ms = 200}, &r, &err);
  unsetenv("SANDLOT_CRIU");
  CHECK_INT(rc, ==, -ETIMEDOUT);
  CHECK(strstr(err.msg, "timed out after 200 ms") != NULL);
  char pid_path[300];
  snprintf(pid_path, sizeof pid_path, "%s/pid", dir);
  FILE *pf = fopen(pid_path, "r");
  CHECK(pf != NULL);
  int pid = 0;
  CHECK_INT(fscanf(pf, "%d", &pid), ==, 1);
  fclose(pf);
  CHECK_INT(kill(pid, 0), ==, -1);
  CHECK_INT(errno, ==, ESRCH);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  if (geteuid() != 0) SKIP("criu check needs root");
  if (access(SANDLOT_CRIU_PATH, X_OK) != 0)
    SKIP("no CRIU at SANDLOT_CRIU_PATH: run tools/deps.sh criu");
  RUN(test_check_passes);
  RUN(test_check_features);
  RUN(test_check_unknown_feature);
  RUN(test_missing_binary);
  RUN(test_dump_unknown_pid);
  RUN(test_timeout_kills);
  TEST_EXIT();
}
