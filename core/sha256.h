/* SHA-256 (FIPS 180-4), used to key templates and layers by content. */
#ifndef SANDLOT_SHA256_H
#define SANDLOT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SL_SHA256_HEX_LEN 64

typedef struct sl_sha256 {
  uint32_t state[8];
  uint64_t length; /* bytes hashed so far */
  uint8_t block[64];
  size_t used; /* bytes waiting in `block` */
} sl_sha256;

void sl_sha256_init(sl_sha256 *ctx);
void sl_sha256_update(sl_sha256 *ctx, const void *data, size_t len);
void sl_sha256_final(sl_sha256 *ctx, uint8_t digest[32]);

/* Hash `len` bytes and write 64 lowercase hex digits and a NUL to `hex`. */
void sl_sha256_hex(const void *data, size_t len, char hex[SL_SHA256_HEX_LEN + 1]);

/* Hash a whole file into `hex`. Returns 0, or a negative errno on a failed
 * open or read. */
int sl_sha256_file(const char *path, char hex[SL_SHA256_HEX_LEN + 1]);

#endif
