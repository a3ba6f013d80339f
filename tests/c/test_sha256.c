#include <stdio.h>
#include <unistd.h>

#include "sha256.h"
#include "test.h"

static void known_vectors(void) {
  char hex[SL_SHA256_HEX_LEN + 1];
  sl_sha256_hex("", 0, hex);
  CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  sl_sha256_hex("abc", 3, hex);
  CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  sl_sha256_hex(two_blocks, strlen(two_blocks), hex);
  CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void incremental_matches_one_shot(void) {
  static char million[1000000];
  memset(million, 'a', sizeof million);
  sl_sha256 ctx;
  sl_sha256_init(&ctx);
  for (size_t i = 0; i < sizeof million; i += 999) {
    size_t n = sizeof million - i < 999 ? sizeof million - i : 999;
    sl_sha256_update(&ctx, million + i, n);
  }
  uint8_t digest[32];
  sl_sha256_final(&ctx, digest);
  CHECK_INT(digest[0], ==, 0xcd);
  CHECK_INT(digest[31], ==, 0xd0);
  char hex[SL_SHA256_HEX_LEN + 1];
  sl_sha256_hex(million, sizeof million, hex);
  CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void file_hash_matches_buffer(void) {
  char path[] = "/tmp/sandlot-sha-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK_INT(write(fd, "abc", 3), ==, 3);
  close(fd);
  char hex[SL_SHA256_HEX_LEN + 1];
  CHECK_INT(sl_sha256_file(path, hex), ==, 0);
  unlink(path);
  CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sl_sha256_file("/nonexistent/sandlot", hex) < 0);
}

int main(void) {
  RUN(known_vectors);
  RUN(incremental_matches_one_shot);
  RUN(file_hash_matches_buffer);
  TEST_EXIT();
}
