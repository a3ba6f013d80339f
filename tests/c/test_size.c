#include <errno.h>

#include "size.h"
#include "test.h"

static void parse_accepts_units(void) {
  static const struct {
    const char *text;
    uint64_t bytes;
  } cases[] = {
      {"1", 1},           {"4096", 4096},         {"1K", 1024},
      {"512M", 512ULL << 20}, {"512m", 512ULL << 20}, {"1G", 1ULL << 30},
      {"2GiB", 2ULL << 30},   {"3MB", 3ULL << 20},    {"1T", 1ULL << 40},
      {"100B", 100},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_error err = {0};
    uint64_t out = 0;
    CHECK_OK(sl_parse_size(cases[i].text, &out, &err), &err);
    if (out != cases[i].bytes) fprintf(stderr, "case %s\n", cases[i].text);
    CHECK(out == cases[i].bytes);
  }
}

static void parse_rejects_bad_text(void) {
  static const char *const bad[] = {"",   "M",  "-1", "+5", "1.5G", "12X", "1 G",
                                    "0",  "0M", "1GG", "18446744073709551616",
                                    "17179869184G"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_error err = {0};
    uint64_t out = 7;
    int rc = sl_parse_size(bad[i], &out, &err);
    if (rc != -EINVAL) fprintf(stderr, "case \"%s\"\n", bad[i]);
    CHECK_INT(rc, ==, -EINVAL);
    CHECK_INT(err.code, ==, EINVAL);
    CHECK(strstr(err.msg, bad[i]) != NULL);
    CHECK(out == 7);
  }
}

static void parse_explains_fractions(void) {
  sl_error err = {0};
  uint64_t out;
  CHECK_INT(sl_parse_size("1.5G", &out, &err), ==, -EINVAL);
  CHECK_STR(err.msg, "invalid size: \"1.5G\" (expected a whole number and a unit, such as 1536M for "
                     "1.5G)");
}

static void parse_rejects_null(void) {
  sl_error err = {0};
  uint64_t out;
  CHECK_INT(sl_parse_size(NULL, &out, &err), ==, -EINVAL);
}

static void parse_keeps_max_value(void) {
  sl_error err = {0};
  uint64_t out;
  CHECK_OK(sl_parse_size("18446744073709551615", &out, &err), &err);
  CHECK(out == UINT64_MAX);
  CHECK_OK(sl_parse_size("16777215T", &out, &err), &err);
  CHECK(out == 16777215ULL << 40);
}

static void format_picks_largest_unit(void) {
  char buf[32];
  sl_format_size(512ULL << 20, buf, sizeof buf);
  CHECK_STR(buf, "512M");
  sl_format_size(1ULL << 30, buf, sizeof buf);
  CHECK_STR(buf, "1G");
  sl_format_size(1000, buf, sizeof buf);
  CHECK_STR(buf, "1000");
  sl_format_size(3072, buf, sizeof buf);
  CHECK_STR(buf, "3K");
  sl_format_size(1ULL << 50, buf, sizeof buf);
  CHECK_STR(buf, "1024T");
}

int main(void) {
  RUN(parse_accepts_units);
  RUN(parse_rejects_bad_text);
  RUN(parse_explains_fractions);
  RUN(parse_rejects_null);
  RUN(parse_keeps_max_value);
  RUN(format_picks_largest_unit);
  TEST_EXIT();
}
