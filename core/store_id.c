/* Ids, names and the quoting of user values in messages. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "store.h"

#define ID_PREFIX_LEN 3
#define ID_HEX_DIGITS 12
#define ID_RANDOM_BYTES (ID_HEX_DIGITS / 2)

static const char *const id_prefixes[] = {"sb-", "sn-", "ly-", "tp-"};
static const char *const id_kind_names[] = {"sandbox", "snapshot", "layer", "template"};
#define ID_KIND_COUNT (sizeof id_prefixes / sizeof id_prefixes[0])

static int valid_kind(sl_id_kind kind) { return (unsigned)kind < ID_KIND_COUNT; }

const char *sl_id_kind_name(sl_id_kind kind) {
  return valid_kind(kind) ? id_kind_names[kind] : "unknown";
}

int sl_id_new(sl_id_kind kind, char out[SL_ID_SIZE], sl_error *err) {
  if (!valid_kind(kind)) return sl_error_set(err, EINVAL, "invalid id kind: %d", (int)kind);

  unsigned char bytes[ID_RANDOM_BYTES];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_error_errno(err, errno, "getrandom failed");
    got += (size_t)n;
  }

  static const char hex[] = "0123456789abcdef";
  memcpy(out, id_prefixes[kind], ID_PREFIX_LEN);
  for (size_t i = 0; i < sizeof bytes; i++) {
    out[ID_PREFIX_LEN + 2 * i] = hex[bytes[i] >> 4];
    out[ID_PREFIX_LEN + 2 * i + 1] = hex[bytes[i] & 0xf];
  }
  out[SL_ID_LEN] = '\0';
  return 0;
}

static int is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int sl_id_validate(sl_id_kind kind, const char *id, sl_error *err) {
  if (!valid_kind(kind)) return sl_error_set(err, EINVAL, "invalid id kind: %d", (int)kind);

  int ok = id != NULL && strnlen(id, SL_ID_SIZE) == SL_ID_LEN &&
           strncmp(id, id_prefixes[kind], ID_PREFIX_LEN) == 0;
  for (size_t i = ID_PREFIX_LEN; ok && i < SL_ID_LEN; i++) ok = is_lower_hex(id[i]);
  if (ok) return 0;

  char quoted[SL_QUOTE_SIZE];
  return sl_error_set(err, EINVAL, "invalid %s id: %s (expected %s and 12 hex digits 0-9a-f)",
                      id_kind_names[kind], sl_quote(id, quoted, sizeof quoted),
                      id_prefixes[kind]);
}

int sl_id_kind_of(const char *id) {
  if (id == NULL) return -1;
  for (size_t i = 0; i < ID_KIND_COUNT; i++)
    if (strncmp(id, id_prefixes[i], ID_PREFIX_LEN) == 0) return (int)i;
  return -1;
}

static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

static int is_alnum(char c) { return is_name_char(c) && c != '.' && c != '_' && c != '-'; }

int sl_name_validate(const char *field, const char *name, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  if (name == NULL || name[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid %s: empty", field);

  size_t len = strnlen(name, SL_NAME_MAX + 1);
  if (len > SL_NAME_MAX)
    return sl_error_set(err, EINVAL, "invalid %s: %s (longer than %d characters)", field,
                        sl_quote(name, quoted, sizeof quoted), SL_NAME_MAX);
  if (!is_alnum(name[0]))
    return sl_error_set(err, EINVAL, "invalid %s: %s (must start with a letter or digit)",
                        field, sl_quote(name, quoted, sizeof quoted));
  for (size_t i = 1; i < len; i++)
    if (!is_name_char(name[i]))
      return sl_error_set(err, EINVAL,
                          "invalid %s: %s (allowed characters: A-Z a-z 0-9 . _ -)", field,
                          sl_quote(name, quoted, sizeof quoted));
  if (sl_id_kind_of(name) >= 0)
    return sl_error_set(err, EINVAL,
                        "invalid %s: %s (must not start with an id prefix: sb- sn- ly- tp-)",
                        field, sl_quote(name, quoted, sizeof quoted));
  return 0;
}

const char *sl_quote(const char *value, char *buf, size_t size) {
  if (size < 16) {
    if (size > 0) buf[0] = '\0';
    return buf;
  }
  if (value == NULL) {
    snprintf(buf, size, "(null)");
    return buf;
  }

  const size_t max_chars = 64;
  size_t out = 0, i = 0;
  buf[out++] = '"';
  for (; value[i] != '\0' && i < max_chars; i++) {
    unsigned char c = (unsigned char)value[i];
    if (out + 8 >= size) break;
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      out += (size_t)snprintf(buf + out, size - out, "\\x%02x", c);
    else
      buf[out++] = (char)c;
  }
  const char *tail = value[i] != '\0' ? "\"..." : "\"";
  snprintf(buf + out, size - out, "%s", tail);
  return buf;
}
