/* Unit tests of what sandlot reads back from CRIU: error lines of a log
 * and the stats images. The inputs are copies of CRIU 4.2.1 output. */
#include <errno.h>

#include "criu.h"
#include "error.h"
#include "test.h"

/* stats-dump of a 10 MB sandbox: freezing 539 us, frozen 54578 us, memory
 * dump 7712 us, memory write 4926 us, 3334 pages scanned, 3262 written. */
static const unsigned char stats_dump[] = {
    0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x25, 0x00, 0x00, 0x00, 0x0a,
    0x23, 0x08, 0x9b, 0x04, 0x10, 0xb2, 0xaa, 0x03, 0x18, 0xa0, 0x3c, 0x20, 0xbe,
    0x26, 0x28, 0x86, 0x1a, 0x30, 0x00, 0x38, 0xbe, 0x19, 0x40, 0x00, 0x48, 0x00,
    0x50, 0x0c, 0x58, 0x0c, 0x60, 0x00, 0x68, 0x00, 0x70, 0x00};

/* stats-restore of one fork of that sandbox: forking 62 us, restore
 * 104906 us, 3262 pages restored. */
static const unsigned char stats_restore[] = {
    0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x0f, 0x00, 0x00, 0x00, 0x12, 0x0d,
    0x08, 0x00, 0x10, 0x00, 0x18, 0x3e, 0x20, 0xca, 0xb3, 0x06, 0x28, 0xbe, 0x19};

static void test_stats_dump_decoded(void) {
  sl_criu_stats s;
  sl_error err = {0};
  CHECK_OK(sl_criu_parse_stats(stats_dump, sizeof stats_dump, &s, &err), &err);
  CHECK(s.has_dump);
  CHECK(!s.has_restore);
  CHECK_INT(s.freezing_time_us, ==, 539);
  CHECK_INT(s.frozen_time_us, ==, 54578);
  CHECK_INT(s.memdump_time_us, ==, 7712);
  CHECK_INT(s.memwrite_time_us, ==, 4926);
  CHECK_INT(s.pages_scanned, ==, 3334);
  CHECK_INT(s.pages_written, ==, 3262);
  CHECK_INT(s.pages_lazy, ==, 0);
}

static void test_stats_restore_decoded(void) {
  sl_criu_stats s;
  sl_error err = {0};
  CHECK_OK(sl_criu_parse_stats(stats_restore, sizeof stats_restore, &s, &err), &err);
  CHECK(s.has_restore);
  CHECK(!s.has_dump);
  CHECK_INT(s.forking_time_us, ==, 62);
  CHECK_INT(s.restore_time_us, ==, 104906);
  CHECK_INT(s.pages_restored, ==, 3262);
}

static void test_stats_bad_input(void) {
  sl_criu_stats s;
  sl_error err = {0};
  CHECK_INT(sl_criu_parse_stats(stats_dump, 8, &s, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "magic") != NULL);

  unsigned char wrong_magic[sizeof stats_dump];
  memcpy(wrong_magic, stats_dump, sizeof stats_dump);
  wrong_magic[4] ^= 0xff;
  CHECK_INT(sl_criu_parse_stats(wrong_magic, sizeof wrong_magic, &s, &err), ==, -EINVAL);

  CHECK_INT(sl_criu_parse_stats(stats_dump, sizeof stats_dump - 5, &s, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "truncated") != NULL);

  /* A length-delimited entry that claims more bytes than the image has. */
  unsigned char bad_entry[] = {0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57,
                               0x03, 0x00, 0x00, 0x00, 0x0a, 0x7f, 0x08};
  CHECK_INT(sl_criu_parse_stats(bad_entry, sizeof bad_entry, &s, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "malformed") != NULL);
}

static void test_stats_missing_file(void) {
  sl_criu_stats s;
  sl_error err = {0};
  CHECK_INT(sl_criu_read_stats("/nonexistent/stats-dump", &s, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "/nonexistent/stats-dump") != NULL);
}

static const char failed_dump_log[] =
    "(00.000000) CRIU run id = f993654c\n"
    "(00.035236) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: "
    "Operation not permitted\n"
    "(00.040000) Warn  (compel/arch/x86/src/lib/infect.c:419): Will restore 15926 with "
    "interrupted system call\n"
    "Error (criu/util.c:642): execvp(\"iptables-restore\", ...) failed: No such file or "
    "directory\n"
    "(00.037860) Error (criu/util.c:657): exited, status=1\n"
    "(00.038439) Error (criu/net.c:3436): net: Locking network failed: iptables-restore "
    "returned -1.\n"
    "(00.041781) Error (criu/cr-dump.c:1975): Dumping FAILED.\n";

static void test_error_lines_filtered(void) {
  char buf[1024];
  int n = sl_criu_error_lines(failed_dump_log, buf, sizeof buf);
  CHECK_INT(n, ==, 3);
  CHECK_STR(buf,
            "Error (criu/util.c:657): exited, status=1; "
            "Error (criu/net.c:3436): net: Locking network failed: iptables-restore returned "
            "-1.; Error (criu/cr-dump.c:1975): Dumping FAILED.");
  CHECK(strstr(buf, "RLIMIT") == NULL);
  CHECK(strstr(buf, "Warn") == NULL);
}

static void test_error_lines_keep_last(void) {
  char buf[60];
  int n = sl_criu_error_lines(failed_dump_log, buf, sizeof buf);
  CHECK_INT(n, ==, 1);
  CHECK_STR(buf, "Error (criu/cr-dump.c:1975): Dumping FAILED.");
}

static void test_error_lines_task_prefix(void) {
  const char *log = "(00.053646)      1: Error (criu/files-reg.c:2210): Can't open file tmp/x\n"
                    "(00.060000) Error (criu/cr-restore.c:2440): Restoring FAILED.";
  char buf[256];
  CHECK_INT(sl_criu_error_lines(log, buf, sizeof buf), ==, 2);
  CHECK_STR(buf, "Error (criu/files-reg.c:2210): Can't open file tmp/x; "
                 "Error (criu/cr-restore.c:2440): Restoring FAILED.");
}

static void test_error_lines_none(void) {
  char buf[64] = "stale";
  CHECK_INT(sl_criu_error_lines("(00.1) all fine\n(00.2) done\n", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "");
  CHECK_INT(sl_criu_error_lines(NULL, buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "");
  CHECK_INT(sl_criu_error_lines(failed_dump_log, buf, 0), ==, 0);
}

static void test_error_lines_many(void) {
  static char log[200 * 64];
  size_t used = 0;
  for (int i = 0; i < 200; i++)
    used += (size_t)snprintf(log + used, sizeof log - used, "(00.%06d) Error (x.c:%d): e%d\n",
                             i, i, i);
  char buf[SL_ERROR_MSG_MAX];
  int n = sl_criu_error_lines(log, buf, sizeof buf);
  CHECK(n > 10);
  CHECK(strstr(buf, "e199") != NULL);
  CHECK(strstr(buf, "e0;") == NULL);
  CHECK(strlen(buf) < sizeof buf);
}

int main(void) {
  RUN(test_stats_dump_decoded);
  RUN(test_stats_restore_decoded);
  RUN(test_stats_bad_input);
  RUN(test_stats_missing_file);
  RUN(test_error_lines_filtered);
  RUN(test_error_lines_keep_last);
  RUN(test_error_lines_task_prefix);
  RUN(test_error_lines_none);
  RUN(test_error_lines_many);
  TEST_EXIT();
}
