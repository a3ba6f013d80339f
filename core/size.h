/* Parsing of human-readable sizes ("512M", "1G") for sandbox limits. */
#ifndef SANDLOT_SIZE_H
#define SANDLOT_SIZE_H

#include <stdint.h>

#include "error.h"

/* Parse a size: decimal digits with an optional binary unit suffix K, M, G
 * or T (powers of 1024; "KiB", "MB", "m" and "mib" are accepted the same
 * way), or plain bytes with "B" or no suffix. Rejects empty text,
 * signs, fractions, a size of 0, other suffixes and values above
 * UINT64_MAX with EINVAL and the text in the message. */
int sl_parse_size(const char *text, uint64_t *out, sl_error *err);

/* Format `bytes` with the largest unit that divides it ("512M", "3K",
 * "1000"). Returns the length written, as snprintf does. */
int sl_format_size(uint64_t bytes, char *buf, int len);

#endif
