#include "text.h"

#include <stdlib.h>
#include <string.h>

void sl_text_put(sl_text *text, const char *bytes, size_t len) {
  if (text->failed) return;
  if (text->len + len + 1 > text->cap) {
    size_t cap = text->cap ? text->cap : 256;
    while (cap < text->len + len + 1) cap *= 2;
    char *grown = realloc(text->data, cap);
    if (grown == NULL) {
      text->failed = 1;
      return;
    }
    text->data = grown;
    text->cap = cap;
  }
  memcpy(text->data + text->len, bytes, len);
  text->len += len;
  text->data[text->len] = '\0';
}

void sl_text_free(sl_text *text) {
  free(text->data);
  text->data = NULL;
  text->len = text->cap = 0;
}
