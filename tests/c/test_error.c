#include <errno.h>
#include <string.h>

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

static void wrap_subject_names_it_once(void) {
  sl_error err = {0};
  sl_error_set(&err, ESRCH, "sandbox has ended (killed): %s", "sb-1");
  sl_error_wrap_subject(&err, "kill", "sb-1");
  CHECK_STR(err.msg, "kill: sandbox has ended (killed): sb-1");
  sl_error_set(&err, EIO, "write freezer.state: Device or resource busy");
  sl_error_wrap_subject(&err, "freeze", "sb-1");
  CHECK_STR(err.msg, "freeze sb-1: write freezer.state: Device or resource busy");
  sl_error_set(&err, ENOENT, "no such file");
  sl_error_wrap_subject(&err, "open store", "");
  CHECK_STR(err.msg, "open store \"\": no such file");
}

static void wrap_subject_names_operation_once(void) {
  sl_error err = {0};
  sl_error_set(&err, EINVAL, "snapshot of sb-1: invalid snapshot name: empty");
  CHECK_INT(sl_error_wrap_subject(&err, "snapshot", "sb-1"), ==, -EINVAL);
  CHECK_STR(err.msg, "snapshot of sb-1: invalid snapshot name: empty");
  /* Another operation, or one that only starts the same word, is added. */
  sl_error_wrap_subject(&err, "pause", "sb-1");
  CHECK_STR(err.msg, "pause: snapshot of sb-1: invalid snapshot name: empty");
  sl_error_set(&err, EINVAL, "snapshots of sb-1 are locked");
  sl_error_wrap_subject(&err, "snapshot", "sb-1");
  CHECK_STR(err.msg, "snapshot: snapshots of sb-1 are locked");
  /* Without the subject, the operation still comes with the subject. */
  sl_error_set(&err, EIO, "snapshot failed");
  sl_error_wrap_subject(&err, "snapshot", "sb-1");
  CHECK_STR(err.msg, "snapshot sb-1: snapshot failed");
}

static void quote_leaves_plain_words(void) {
  char buf[SL_SUBJECT_MAX];
  CHECK_STR(sl_subject(buf, sizeof buf, "/etc/hostname"), "/etc/hostname");
  CHECK_STR(sl_subject(buf, sizeof buf, "sb-1a2b"), "sb-1a2b");
  CHECK_STR(sl_subject(buf, sizeof buf, "caf\xc3\xa9"), "caf\xc3\xa9");
}

static void quote_escapes_odd_bytes(void) {
  char buf[SL_SUBJECT_MAX];
  CHECK_STR(sl_subject(buf, sizeof buf, ""), "\"\"");
  CHECK_STR(sl_subject(buf, sizeof buf, NULL), "\"\"");
  CHECK_STR(sl_subject(buf, sizeof buf, "my file"), "\"my file\"");
  CHECK_STR(sl_subject(buf, sizeof buf, "a\"b\\c"), "\"a\\\"b\\\\c\"");
  CHECK_STR(sl_subject(buf, sizeof buf, "x\ny\tz\x7f"), "\"x\\ny\\tz\\x7f\"");
  CHECK_STR(sl_subject_bytes(buf, sizeof buf, "/tmp/f\0.txt", 11), "\"/tmp/f\\0.txt\"");
}

static void quote_cuts_long_values(void) {
  char buf[16];
  CHECK_STR(sl_subject(buf, sizeof buf, "abcdefghijklmnopqrstuvwxyz"), "abcdefghijk...");
  CHECK_STR(sl_subject(buf, sizeof buf, "a b c d e f g h i j"), "\"a b c d e ...\"");
  CHECK_INT((int)strlen(buf), <, (int)sizeof buf);
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
  RUN(wrap_subject_names_it_once);
  RUN(wrap_subject_names_operation_once);
  RUN(quote_leaves_plain_words);
  RUN(quote_escapes_odd_bytes);
  RUN(quote_cuts_long_values);
  RUN(names_round_trip);
  TEST_EXIT();
}
