/* Listing cursors.
 *
 * A cursor is 24 bytes in unpadded base64url (32 characters):
 *
 *     version (1) | listing (1) | created_at (8, big endian) | id (6) | mac (8)
 *
 * `id` is the 12 hex digits of the row id; its prefix follows from the
 * listing. `mac` is SipHash-2-4, keyed with the catalog's random cursor
 * key (table meta), over the first 16 bytes followed by the filter
 * fingerprint. A cursor therefore fails to decode when any byte changed,
 * when it comes from another catalog, or when it is used with other
 * filters than the listing that made it. */
#include <errno.h>
#include <string.h>

#include "catalog_internal.h"

#define CURSOR_VERSION 1
#define CURSOR_PAYLOAD 16
#define CURSOR_BYTES 24
#define CURSOR_CHARS 32

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t load_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

#define SIPROUND(v0, v1, v2, v3) \
  do {                           \
    v0 += v1;                    \
    v1 = rotl(v1, 13);           \
    v1 ^= v0;                    \
    v0 = rotl(v0, 32);           \
    v2 += v3;                    \
    v3 = rotl(v3, 16);           \
    v3 ^= v2;                    \
    v0 += v3;                    \
    v3 = rotl(v3, 21);           \
    v3 ^= v0;                    \
    v2 += v1;                    \
    v1 = rotl(v1, 17);           \
    v1 ^= v2;                    \
    v2 = rotl(v2, 32);           \
  } while (0)

/* SipHash-2-4 as specified by Aumasson and Bernstein ("SipHash: a fast
 * short-input PRF", 2012): 2 compression rounds, 4 finalization rounds. */
uint64_t catalog_siphash24(const unsigned char key[16], const void *data, size_t len) {
  const unsigned char *in = data;
  uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;

  size_t full = len - len % 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = load_le64(in + i);
    v3 ^= m;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
  }

  uint64_t last = (uint64_t)(len & 0xff) << 56;
  for (size_t i = 0; i < len % 8; i++) last |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= last;
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  v0 ^= last;

  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) SIPROUND(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t cursor_mac(const sl_catalog *cat, const unsigned char *payload,
                           const char *filter) {
  unsigned char buf[CURSOR_PAYLOAD + 1024];
  size_t filter_len = strnlen(filter, sizeof buf - CURSOR_PAYLOAD);
  memcpy(buf, payload, CURSOR_PAYLOAD);
  memcpy(buf + CURSOR_PAYLOAD, filter, filter_len);
  return catalog_siphash24(cat->cursor_key, buf, CURSOR_PAYLOAD + filter_len);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c) {
  const char *p = c != '\0' ? strchr(b64, c) : NULL;
  return p != NULL ? (int)(p - b64) : -1;
}

static int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

void catalog_cursor_encode(const sl_catalog *cat, char listing, const char *filter,
                           int64_t created_at, const char *id, char out[SL_CURSOR_SIZE]) {
  unsigned char bytes[CURSOR_BYTES];
  bytes[0] = CURSOR_VERSION;
  bytes[1] = (unsigned char)listing;
  for (int i = 0; i < 8; i++) bytes[2 + i] = (unsigned char)((uint64_t)created_at >> (56 - 8 * i));
  for (int i = 0; i < 6; i++)
    bytes[10 + i] = (unsigned char)(hex_value(id[3 + 2 * i]) << 4 | hex_value(id[4 + 2 * i]));
  uint64_t mac = cursor_mac(cat, bytes, filter);
  for (int i = 0; i < 8; i++) bytes[CURSOR_PAYLOAD + i] = (unsigned char)(mac >> (8 * i));

  /* 24 bytes are 8 groups of 3 bytes, each giving 4 characters. */
  for (int g = 0; g < CURSOR_BYTES / 3; g++) {
    uint32_t v = (uint32_t)bytes[3 * g] << 16 | (uint32_t)bytes[3 * g + 1] << 8 | bytes[3 * g + 2];
    for (int c = 0; c < 4; c++) out[4 * g + c] = b64[(v >> (18 - 6 * c)) & 0x3f];
  }
  out[CURSOR_CHARS] = '\0';
}

static int decode_b64(const char *cursor, unsigned char bytes[CURSOR_BYTES]) {
  if (strnlen(cursor, CURSOR_CHARS + 1) != CURSOR_CHARS) return -1;
  for (int g = 0; g < CURSOR_BYTES / 3; g++) {
    uint32_t v = 0;
    for (int c = 0; c < 4; c++) {
      int d = b64_value(cursor[4 * g + c]);
      if (d < 0) return -1;
      v = v << 6 | (uint32_t)d;
    }
    bytes[3 * g] = (unsigned char)(v >> 16);
    bytes[3 * g + 1] = (unsigned char)(v >> 8);
    bytes[3 * g + 2] = (unsigned char)v;
  }
  return 0;
}

int catalog_cursor_decode(const sl_catalog *cat, char listing, const char *filter,
                          const char *cursor, int64_t *created_at, char id[SL_ID_SIZE],
                          sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  unsigned char bytes[CURSOR_BYTES];
  if (cursor == NULL || cursor[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid cursor: empty (pass no cursor for the first page)");
  if (decode_b64(cursor, bytes) < 0)
    return sl_error_set(err, EINVAL, "invalid cursor: %s (malformed)",
                        sl_quote(cursor, quoted, sizeof quoted));

  uint64_t mac = 0;
  for (int i = 7; i >= 0; i--) mac = mac << 8 | bytes[CURSOR_PAYLOAD + i];
  if (bytes[0] != CURSOR_VERSION || bytes[1] != (unsigned char)listing ||
      mac != cursor_mac(cat, bytes, filter))
    return sl_error_set(err, EINVAL,
                        "invalid cursor: %s (changed, or made by a listing with other "
                        "filters or in another catalog)",
                        sl_quote(cursor, quoted, sizeof quoted));

  uint64_t when = 0;
  for (int i = 0; i < 8; i++) when = when << 8 | bytes[2 + i];
  *created_at = (int64_t)when;
  static const char hex[] = "0123456789abcdef";
  memcpy(id, listing == 'b' ? "sb-" : "sn-", 3);
  for (int i = 0; i < 6; i++) {
    id[3 + 2 * i] = hex[bytes[10 + i] >> 4];
    id[4 + 2 * i] = hex[bytes[10 + i] & 0xf];
  }
  id[SL_ID_LEN] = '\0';
  return 0;
}
