/* A small harness for the C tests: each test file is one executable whose
 * main() calls RUN(test_fn) for each case. A failed check prints where and
 * why, and the executable exits 1. SKIP() exits 77, which ctest reports as
 * skipped; use it only for a missing capability, and say which. */
#ifndef SANDLOT_TEST_H
#define SANDLOT_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      test_failures++;                                                       \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_INT(a, op, b)                                                  \
  do {                                                                       \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);          \
    if (!(check_a_ op check_b_)) {                                           \
      fprintf(stderr, "%s:%d: check failed: %s %s %s (%lld vs %lld)\n",      \
              __FILE__, __LINE__, #a, #op, #b, check_a_, check_b_);          \
      test_failures++;                                                       \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_STR(a, b)                                                      \
  do {                                                                       \
    const char *check_a_ = (a), *check_b_ = (b);                             \
    if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_)) { \
      fprintf(stderr, "%s:%d: check failed: %s == %s (\"%s\" vs \"%s\")\n",  \
              __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",    \
              check_b_ ? check_b_ : "(null)");                               \
      test_failures++;                                                       \
      return;                                                                \
    }                                                                        \
  } while (0)

/* Check that a core call returned >= 0, printing its error otherwise. */
#define CHECK_OK(call, err)                                                  \
  do {                                                                       \
    int check_rc_ = (call);                                                  \
    if (check_rc_ < 0) {                                                     \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__,     \
              #call, sl_errname((err)->code), (err)->msg);                   \
      test_failures++;                                                       \
      return;                                                                \
    }                                                                        \
  } while (0)

#define RUN(fn)                                                              \
  do {                                                                       \
    int before_ = test_failures;                                             \
    fn();                                                                    \
    fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

#define SKIP(reason)                                                         \
  do {                                                                       \
    fprintf(stderr, "SKIPPED: %s\n", reason);                                \
    exit(77);                                                                \
  } while (0)

#define TEST_EXIT() return test_failures == 0 ? 0 : 1

#endif
