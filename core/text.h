/* A growing, always NUL-terminated text buffer for building small
 * documents (JSON members, key=value files) piece by piece. */
#ifndef SANDLOT_TEXT_H
#define SANDLOT_TEXT_H

#include <stddef.h>

/* Zero-initialize before use. Allocation failures are sticky: once one
 * fails, `failed` is set, later appends do nothing, and `data` keeps the
 * text appended before (NULL when nothing was). */
typedef struct sl_text {
  char *data;
  size_t len, cap;
  int failed;
} sl_text;

/* Append `len` bytes of `bytes`, which need not be NUL-terminated. */
void sl_text_put(sl_text *text, const char *bytes, size_t len);
void sl_text_free(sl_text *text);

#endif
