#include <errno.h>

#include "sandbox.h"
#include "test.h"

static int check_code(const sl_create_spec *spec, int code, const char *in_message) {
  sl_error err = {0};
  int rc = sl_sandbox_spec_check(spec, &err);
  if (rc != -code || (in_message && !strstr(err.msg, in_message))) {
    fprintf(stderr, "  got %d (%s: %s), expected %s with \"%s\"\n", rc, sl_errname(err.code),
            err.msg, sl_errname(code), in_message ? in_message : "");
    return 0;
  }
  return 1;
}

static void defaults_are_valid(void) {
  sl_create_spec spec = {0};
  sl_error err = {0};
  CHECK_OK(sl_sandbox_spec_check(&spec, &err), &err);
  spec.memory = "512M";
  spec.pids = 64;
  spec.cpu_shares = 512;
  spec.cpus = 0.5;
  spec.timeout_sec = 30;
  spec.hostname = "box-1.local";
  spec.cwd = "/work";
  const char *env[] = {"A=1", "EMPTY=", NULL};
  const char *labels[] = {"team=x", NULL};
  spec.env = env;
  spec.labels = labels;
  spec.on_timeout = SL_ON_TIMEOUT_PAUSE;
  CHECK_OK(sl_sandbox_spec_check(&spec, &err), &err);
}

static void unknown_template_is_enoent(void) {
  sl_create_spec spec = {0};
  spec.template_name = "no-such-template";
  CHECK(check_code(&spec, ENOENT, "no-such-template"));
}

static void vm_backend_accepted(void) {
  sl_create_spec spec = {0};
  spec.backend = SL_BACKEND_VM;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_spec_check(&spec, &err), &err);
}

static void unknown_backend_not_supported(void) {
  sl_create_spec spec = {0};
  spec.backend = (sl_backend)7;
  CHECK(check_code(&spec, ENOTSUP, "backend not available"));
}

static void invalid_sizes_name_the_value(void) {
  sl_create_spec spec = {0};
  spec.memory = "12X";
  CHECK(check_code(&spec, EINVAL, "12X"));
  spec.memory = "1K";
  CHECK(check_code(&spec, EINVAL, "minimum"));
  spec.memory = "";
  CHECK(check_code(&spec, EINVAL, "invalid size"));
}

static void invalid_limits(void) {
  sl_create_spec spec = {0};
  spec.pids = -1;
  CHECK(check_code(&spec, EINVAL, "-1"));
  spec.pids = 0;
  spec.cpu_shares = 1;
  CHECK(check_code(&spec, EINVAL, "cpu_shares"));
  spec.cpu_shares = 0;
  spec.cpus = -0.5;
  CHECK(check_code(&spec, EINVAL, "cpus"));
  spec.cpus = 0;
  spec.timeout_sec = -3;
  CHECK(check_code(&spec, EINVAL, "-3"));
}

static void invalid_names_and_pairs(void) {
  sl_create_spec spec = {0};
  spec.hostname = "bad host";
  CHECK(check_code(&spec, EINVAL, "bad host"));
  spec.hostname = "";
  CHECK(check_code(&spec, EINVAL, "hostname"));
  spec.hostname = NULL;
  spec.cwd = "relative/dir";
  CHECK(check_code(&spec, EINVAL, "relative/dir"));
  spec.cwd = NULL;
  const char *env[] = {"NOEQUALS", NULL};
  spec.env = env;
  CHECK(check_code(&spec, EINVAL, "NOEQUALS"));
  const char *env2[] = {"=value", NULL};
  spec.env = env2;
  CHECK(check_code(&spec, EINVAL, "=value"));
  spec.env = NULL;
  const char *labels[] = {"k v=1", NULL};
  spec.labels = labels;
  CHECK(check_code(&spec, EINVAL, "label"));
  spec.labels = NULL;
  spec.on_timeout = SL_ON_TIMEOUT_PAUSE_FS;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_spec_check(&spec, &err), &err);
  spec.on_timeout = (sl_on_timeout)7;
  CHECK(check_code(&spec, EINVAL, "on_timeout"));
  spec.on_timeout = SL_ON_TIMEOUT_KILL;
  spec.on_fork = "true";
  CHECK(check_code(&spec, EINVAL, "on_fork needs a snapshot"));
}

int main(void) {
  RUN(defaults_are_valid);
  RUN(unknown_template_is_enoent);
  RUN(vm_backend_accepted);
  RUN(unknown_backend_not_supported);
  RUN(invalid_sizes_name_the_value);
  RUN(invalid_limits);
  RUN(invalid_names_and_pairs);
  TEST_EXIT();
}
