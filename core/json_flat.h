/* Writing and reading flat JSON objects (string and number members), the
 * shape of the catalog's options, labels and cgroups columns. */
#ifndef SANDLOT_JSON_FLAT_H
#define SANDLOT_JSON_FLAT_H

#include <stddef.h>

#include "text.h"

/* The object being written (see core/text.h). */
typedef sl_text sl_json_buf;

/* Append a member ("key": value) to the object in `b`, adding the
 * opening brace and commas as needed; sl_json_close() ends it. */
void sl_json_add_string(sl_json_buf *b, const char *key, const char *value);
void sl_json_add_number(sl_json_buf *b, const char *key, double value);
void sl_json_add_integer(sl_json_buf *b, const char *key, long long value);

/* Close the object ("{}" when no member was added) and return its text,
 * owned by `b`; NULL when an allocation failed. */
const char *sl_json_close(sl_json_buf *b);
void sl_json_free(sl_json_buf *b);

/* Receives one member, key and value decoded. `is_string` is 1 for a
 * string and 0 for a number, true, false or null, given as raw text. */
typedef void (*sl_json_member_fn)(const char *key, const char *value, int is_string, void *data);

/* Call `fn` for each member of the flat object `json`. Nested objects and
 * arrays are rejected. Returns 0, or -EINVAL on malformed text. */
int sl_json_each(const char *json, sl_json_member_fn fn, void *data);

/* Build a JSON object of string members from "key=value" lines (lines
 * without '=' are skipped). Returns a heap string, NULL when out of
 * memory. */
char *sl_json_from_lines(const char *lines);

/* Write the members of the flat object `json` as "key=value" lines.
 * Returns the length, -EINVAL for malformed JSON, -ENOSPC when `buf` is
 * too small. A NULL `json` gives no lines. */
int sl_json_to_lines(const char *json, char *buf, size_t len);

#endif
