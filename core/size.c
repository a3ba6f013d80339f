#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>

/* Return the shift for a unit suffix, or -1 for an unknown one. */
static int unit_shift(const char *suffix) {
  static const struct {
    const char *names[4];
    int shift;
  } units[] = {
      {{"", "b", NULL, NULL}, 0},
      {{"k", "kb", "kib", NULL}, 10},
      {{"m", "mb", "mib", NULL}, 20},
      {{"g", "gb", "gib", NULL}, 30},
      {{"t", "tb", "tib", NULL}, 40},
  };
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    for (int j = 0; j < 4 && units[i].names[j] != NULL; j++)
      if (strcasecmp(suffix, units[i].names[j]) == 0) return units[i].shift;
  return -1;
}

static int too_large(const char *text, sl_error *err) {
  return sl_error_set(err, EINVAL, "invalid size: \"%s\" (too large: at most %llu bytes)", text,
                      (unsigned long long)UINT64_MAX);
}

int sl_parse_size(const char *text, uint64_t *out, sl_error *err) {
  if (text == NULL) return sl_error_set(err, EINVAL, "invalid size: (null)");

  const char *p = text;
  if (!isdigit((unsigned char)*p))
    return sl_error_set(err, EINVAL,
                        "invalid size: \"%s\" (expected digits and a unit such as 512M or 1G)",
                        text);
  uint64_t value = 0;
  for (; isdigit((unsigned char)*p); p++) {
    uint64_t digit = (uint64_t)(*p - '0');
    if (value > (UINT64_MAX - digit) / 10) return too_large(text, err);
    value = value * 10 + digit;
  }

  if (*p == '.' || *p == ',')
    return sl_error_set(err, EINVAL,
                        "invalid size: \"%s\" (expected a whole number and a unit, such as 1536M "
                        "for 1.5G)",
                        text);
  int shift = unit_shift(p);
  if (shift < 0)
    return sl_error_set(err, EINVAL,
                        "invalid size: \"%s\" (unknown unit \"%s\"; use K, M, G or T)",
                        text, p);
  if (value == 0) return sl_error_set(err, EINVAL, "invalid size: \"%s\" (must be > 0)", text);
  if (shift > 0 && value > (UINT64_MAX >> shift)) return too_large(text, err);

  *out = value << shift;
  return 0;
}

int sl_format_size(uint64_t bytes, char *buf, int len) {
  static const char units[] = "KMGT";
  int unit = -1;
  while (unit < 3 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    unit++;
  }
  if (unit < 0) return snprintf(buf, (size_t)len, "%llu", (unsigned long long)bytes);
  return snprintf(buf, (size_t)len, "%llu%c", (unsigned long long)bytes, units[unit]);
}
