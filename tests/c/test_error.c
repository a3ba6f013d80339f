#include <errno.h>

#include "error.h"
#include "test.h"

static void set_returns_negative_code(void) {
  sl_error err = {0};
  CHECK_INT(sl_error_set(&err, ENOENT, "sandbox not found: %s", "sb-1"), ==, -ENOENT);
  CHECK_INT(err.code, ==, ENOENT);
  CHECK_STR(err.msg, "sandbox not found: sb-1");
}

static void wrap_prepends_context(void) {
  sl_error err = {0};
  sl_error_set(&err, EBUSY, "operation in progress: %s", "sb-1");
  CHECK_INT(sl_error_wrap(&err, "snapshot %s", "sb-1"), ==, -EBUSY);
  CHECK_STR(err.msg, "snapshot sb-1: operation in progress: sb-1");
  CHECK_INT(err.code, ==, EBUSY);
}

static void errno_appends_strerror(void) {
  sl_error err = {0};
  sl_error_errno(&err, EACCES, "open %s", "/x");
  CHECK_STR(err.msg, "open /x: Permission denied");
}

static void invalid_code_becomes_eio(void) {
  sl_error err = {0};
  CHECK_INT(sl_error_set(&err, 0, "x"), ==, -EIO);
  CHECK_INT(sl_error_set(NULL, -3, "x"), ==, -EIO);
}

static void names_round_trip(void) {
  CHECK_STR(sl_errname(ENOENT), "ENOENT");
  CHECK_STR(sl_errname(EBUSY), "EBUSY");
  CHECK_INT(sl_errcode("ETIMEDOUT"), ==, ETIMEDOUT);
  CHECK_INT(sl_errcode("NOPE"), ==, 0);
  CHECK_STR(sl_errname(99999), "EIO");
}

int main(void) {
  RUN(set_returns_negative_code);
  RUN(wrap_prepends_context);
  RUN(errno_appends_strerror);
  RUN(invalid_code_becomes_eio);
  RUN(names_round_trip);
  TEST_EXIT();
}
