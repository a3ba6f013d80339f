#include "json_flat.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(sl_json_buf *b, const char *s, size_t n) { sl_text_put(b, s, n); }

static void put_quoted(sl_json_buf *b, const char *s) {
  put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      put(b, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      put(b, esc, 6);
    } else {
      put(b, (const char *)p, 1);
    }
  }
  put(b, "\"", 1);
}

static void begin_member(sl_json_buf *b, const char *key) {
  put(b, b->len == 0 ? "{" : ",", 1);
  put_quoted(b, key);
  put(b, ":", 1);
}

void sl_json_add_string(sl_json_buf *b, const char *key, const char *value) {
  begin_member(b, key);
  put_quoted(b, value);
}

void sl_json_add_number(sl_json_buf *b, const char *key, double value) {
  char text[64];
  snprintf(text, sizeof text, "%.17g", value);
  begin_member(b, key);
  put(b, text, strlen(text));
}

void sl_json_add_integer(sl_json_buf *b, const char *key, long long value) {
  char text[32];
  snprintf(text, sizeof text, "%lld", value);
  begin_member(b, key);
  put(b, text, strlen(text));
}

const char *sl_json_close(sl_json_buf *b) {
  if (b->len == 0) put(b, "{", 1);
  put(b, "}", 1);
  return b->failed ? NULL : b->data;
}

void sl_json_free(sl_json_buf *b) { sl_text_free(b); }

/* Reading */

static const char *skip_space(const char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  return p;
}

static int hex4(const char *p, unsigned *out) {
  *out = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) return -1;
    *out = *out * 16 + (unsigned)v;
  }
  return 0;
}

static void put_utf8(sl_json_buf *b, unsigned cp) {
  char out[4];
  size_t n;
  if (cp < 0x80) {
    out[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  put(b, out, n);
}

/* Decode the string starting at the quote `p` into `out`; returns the
 * position after the closing quote, or NULL. */
static const char *read_string(const char *p, sl_json_buf *out) {
  out->len = 0;
  put(out, "", 0);
  for (p++; *p && *p != '"'; p++) {
    if (*p != '\\') {
      put(out, p, 1);
      continue;
    }
    p++;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = *p ? strchr(from, *p) : NULL;
    if (hit) {
      put(out, &to[hit - from], 1);
    } else if (*p == 'u') {
      unsigned cp, low;
      if (hex4(p + 1, &cp) < 0) return NULL;
      p += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && p[1] == '\\' && p[2] == 'u' && hex4(p + 3, &low) == 0 &&
          low >= 0xdc00 && low < 0xe000) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        p += 6;
      }
      put_utf8(out, cp);
    } else {
      return NULL;
    }
  }
  return *p == '"' && !out->failed ? p + 1 : NULL;
}

/* Read a number, true, false or null as raw text. */
static const char *read_scalar(const char *p, sl_json_buf *out) {
  const char *start = p;
  while (*p && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.')) p++;
  if (p == start) return NULL;
  out->len = 0;
  put(out, start, (size_t)(p - start));
  return out->failed ? NULL : p;
}

int sl_json_each(const char *json, sl_json_member_fn fn, void *data) {
  sl_json_buf key = {0}, value = {0};
  const char *p = json ? skip_space(json) : "";
  int rc = *p == '{' ? 0 : -EINVAL;
  if (rc == 0) p = skip_space(p + 1);
  if (rc == 0 && *p == '}') p = NULL; /* empty object */
  while (rc == 0 && p) {
    if (*p != '"' || (p = read_string(p, &key)) == NULL) {
      rc = -EINVAL;
      break;
    }
    p = skip_space(p);
    if (*p != ':') {
      rc = -EINVAL;
      break;
    }
    p = skip_space(p + 1);
    int is_string = *p == '"';
    p = is_string ? read_string(p, &value) : read_scalar(p, &value);
    if (p == NULL) {
      rc = -EINVAL;
      break;
    }
    fn(key.data, value.data, is_string, data);
    p = skip_space(p);
    if (*p == '}') break;
    if (*p != ',') rc = -EINVAL;
    else p = skip_space(p + 1);
  }
  sl_json_free(&key);
  sl_json_free(&value);
  return rc;
}

/* Lines */

char *sl_json_from_lines(const char *lines) {
  sl_json_buf b = {0};
  char *copy = strdup(lines ? lines : ""), *save = NULL;
  if (copy == NULL) return NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '=');
    if (eq == NULL) continue;
    *eq = '\0';
    sl_json_add_string(&b, line, eq + 1);
  }
  free(copy);
  const char *text = sl_json_close(&b);
  char *result = text ? strdup(text) : NULL;
  sl_json_free(&b);
  return result;
}

typedef struct lines_out {
  char *buf;
  size_t len, used;
  int overflow;
} lines_out;

static void add_line(const char *key, const char *value, int is_string, void *data) {
  lines_out *o = data;
  (void)is_string;
  int n = snprintf(o->buf + o->used, o->len - o->used, "%s=%s\n", key, value);
  if (n < 0 || (size_t)n >= o->len - o->used) o->overflow = 1;
  else o->used += (size_t)n;
}

int sl_json_to_lines(const char *json, char *buf, size_t len) {
  lines_out o = {buf, len, 0, 0};
  buf[0] = '\0';
  if (json == NULL) return 0;
  int rc = sl_json_each(json, add_line, &o);
  if (rc < 0) return rc;
  return o.overflow ? -ENOSPC : (int)o.used;
}

