#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "proto.h"
#include "test.h"

static void build_frame(sl_buf *b) {
  const char *argv[] = {"echo", "a b", "", NULL};
  size_t start = sl_frame_begin(b, SL_MSG_EXEC, 0x01020304);
  sl_frame_put_strv(b, SL_F_ARGV, argv);
  sl_frame_put_i64(b, SL_F_TIMEOUT_MS, -5);
  sl_frame_put_bytes(b, SL_F_STDIN, "\0\1\2", 3);
  sl_frame_end(b, start, NULL);
}

static void frame_round_trip(void) {
  sl_buf b = {0};
  build_frame(&b);
  sl_frame f;
  sl_error err = {0};
  CHECK_INT(sl_frame_parse(b.data, b.len, SL_PROTO_MAX_FRAME, &f, &err), ==, (long)b.len);
  CHECK_INT(f.type, ==, SL_MSG_EXEC);
  CHECK_INT(f.id, ==, 0x01020304);

  int64_t v = 0;
  CHECK_INT(sl_frame_get_i64(&f, SL_F_TIMEOUT_MS, &v, &err), ==, 1);
  CHECK_INT(v, ==, -5);
  CHECK_INT(sl_frame_get_i64(&f, SL_F_PID, &v, &err), ==, 0);

  char **argv = NULL;
  size_t n = 0;
  CHECK_INT(sl_frame_get_strv(&f, SL_F_ARGV, &argv, &n, &err), ==, 3);
  CHECK_STR(argv[0], "echo");
  CHECK_STR(argv[1], "a b");
  CHECK_STR(argv[2], "");
  CHECK(argv[3] == NULL);
  sl_strv_free(argv);

  const uint8_t *data;
  size_t len;
  CHECK_INT(sl_frame_get_bytes(&f, SL_F_STDIN, &data, &len), ==, 1);
  CHECK_INT(len, ==, 3);
  CHECK(memcmp(data, "\0\1\2", 3) == 0);
  sl_buf_free(&b);
}

static void wire_layout_is_little_endian(void) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_PING, 7);
  sl_frame_put_i64(&b, SL_F_OFFSET, 0x0102);
  CHECK_INT(sl_frame_end(&b, start, NULL), ==, 0);
  const uint8_t expected[] = {18, 0, 0, 0, SL_MSG_PING, 7, 0, 0, 0, SL_F_OFFSET, 8, 0, 0, 0,
                              0x02, 0x01, 0, 0, 0, 0, 0, 0};
  CHECK_INT(b.len, ==, sizeof expected);
  CHECK(memcmp(b.data, expected, sizeof expected) == 0);
  sl_buf_free(&b);
}

static void string_with_nul_is_eproto(void) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_STAT, 1);
  sl_frame_put_bytes(&b, SL_F_PATH, "/etc\0/x", 7);
  sl_frame_end(&b, start, NULL);
  sl_frame f;
  sl_error err = {0};
  CHECK(sl_frame_parse(b.data, b.len, SL_PROTO_MAX_FRAME, &f, &err) > 0);
  char *s = NULL;
  CHECK_INT(sl_frame_get_str(&f, SL_F_PATH, &s, &err), ==, -EPROTO);
  CHECK(s == NULL);
  sl_buf_free(&b);
}

static void wrong_integer_size_is_eproto(void) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_READ, 1);
  sl_frame_put_bytes(&b, SL_F_OFFSET, "abc", 3);
  sl_frame_end(&b, start, NULL);
  sl_frame f;
  sl_error err = {0};
  CHECK(sl_frame_parse(b.data, b.len, SL_PROTO_MAX_FRAME, &f, &err) > 0);
  int64_t v;
  CHECK_INT(sl_frame_get_i64(&f, SL_F_OFFSET, &v, &err), ==, -EPROTO);
  CHECK_INT(err.code, ==, EPROTO);
  sl_buf_free(&b);
}

static void oversized_frame_is_emsgsize(void) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_FILE_WRITE, 1);
  char *big = calloc(1, SL_PROTO_MAX_FRAME);
  CHECK(big != NULL);
  sl_frame_put_bytes(&b, SL_F_DATA, big, SL_PROTO_MAX_FRAME);
  free(big);
  sl_error err = {0};
  CHECK_INT(sl_frame_end(&b, start, &err), ==, -EMSGSIZE);
  CHECK_INT(b.len, ==, 0);
  sl_buf_free(&b);
}

static void truncated_frame_needs_more(void) {
  sl_buf b = {0};
  build_frame(&b);
  sl_frame f;
  sl_error err = {0};
  for (size_t cut = 0; cut < b.len; cut++)
    CHECK_INT(sl_frame_parse(b.data, cut, SL_PROTO_MAX_FRAME, &f, &err), ==, 0);
  sl_buf_free(&b);
}

static void malformed_headers_are_eproto(void) {
  sl_frame f;
  sl_error err = {0};
  const uint8_t short_len[] = {3, 0, 0, 0, 1, 0, 0};
  CHECK_INT(sl_frame_parse(short_len, sizeof short_len, 1024, &f, &err), ==, -EPROTO);
  const uint8_t huge_len[] = {0xff, 0xff, 0xff, 0x7f, 1};
  CHECK_INT(sl_frame_parse(huge_len, sizeof huge_len, 1024, &f, &err), ==, -EPROTO);
  CHECK(strstr(err.msg, "too large") != NULL);
  /* A field that claims more bytes than its frame holds. */
  const uint8_t bad_field[] = {11, 0, 0, 0, 2, 1, 0, 0, 0, SL_F_DATA, 9, 0, 0, 0, 'x'};
  CHECK_INT(sl_frame_parse(bad_field, sizeof bad_field, 1024, &f, &err), ==, -EPROTO);
  /* A field header cut by the end of the frame. */
  const uint8_t cut_field[] = {8, 0, 0, 0, 2, 1, 0, 0, 0, SL_F_DATA, 0, 0};
  CHECK_INT(sl_frame_parse(cut_field, sizeof cut_field, 1024, &f, &err), ==, -EPROTO);
  /* A zero length that is not a sync marker. */
  const uint8_t zero[] = {0, 0, 0, 0, 'X', 'L', 'S', 'Y', 'N', 'C', '\r', '\n'};
  CHECK_INT(sl_frame_parse(zero, sizeof zero, 1024, &f, &err), ==, -EPROTO);
}

static void parser_takes_one_byte_at_a_time(void) {
  sl_buf b = {0};
  for (int i = 0; i < 3; i++) build_frame(&b);
  sl_parser p;
  sl_parser_init(&p, SL_PROTO_MAX_FRAME);
  sl_error err = {0};
  sl_frame f;
  int frames = 0;
  for (size_t i = 0; i < b.len; i++) {
    CHECK_OK(sl_parser_feed(&p, b.data + i, 1, &err), &err);
    int rc;
    while ((rc = sl_parser_next(&p, &f, &err)) == 1) {
      CHECK_INT(f.type, ==, SL_MSG_EXEC);
      frames++;
    }
    CHECK_INT(rc, ==, 0);
  }
  CHECK_INT(frames, ==, 3);
  sl_parser_free(&p);
  sl_buf_free(&b);
}

static void parser_stays_failed_until_reset(void) {
  sl_parser p;
  sl_parser_init(&p, 1024);
  sl_error err = {0};
  sl_frame f;
  const uint8_t junk[] = {1, 0, 0, 0, 9};
  sl_parser_feed(&p, junk, sizeof junk, &err);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, -EPROTO);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, -EPROTO);
  sl_parser_reset(&p);
  sl_buf b = {0};
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_PING, 2), NULL);
  sl_parser_feed(&p, b.data, b.len, &err);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, 1);
  CHECK_INT(f.id, ==, 2);
  sl_parser_free(&p);
  sl_buf_free(&b);
}

static void sync_marker_is_found_after_junk(void) {
  uint8_t nonce[SL_PROTO_SYNC_NONCE];
  for (size_t i = 0; i < sizeof nonce; i++) nonce[i] = (uint8_t)(0xa0 + i);
  sl_buf b = {0};
  const char junk[] = "\x07\x00\x00\x00garbage from an old session\x00\x00\x00";
  sl_buf_append(&b, junk, sizeof junk - 1);
  sl_proto_put_sync(&b, nonce);
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_HELLO, 9), NULL);

  sl_parser p;
  sl_parser_init(&p, 1024);
  sl_parser_resync(&p);
  sl_error err = {0};
  sl_frame f;
  /* Feed in pieces so that the marker is split across reads. */
  for (size_t i = 0; i < b.len; i += 5)
    sl_parser_feed(&p, b.data + i, b.len - i < 5 ? b.len - i : 5, &err);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, 1);
  CHECK_INT(f.type, ==, SL_MSG_SYNC);
  CHECK(memcmp(f.body, nonce, sizeof nonce) == 0);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, 1);
  CHECK_INT(f.type, ==, SL_MSG_HELLO);
  CHECK_INT(f.id, ==, 9);
  CHECK_INT(sl_parser_next(&p, &f, &err), ==, 0);
  sl_parser_free(&p);
  sl_buf_free(&b);
}

/* Random input must never crash the parser or yield a frame whose fields
 * reach past its end. */
static void fuzz_random_bytes(void) {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  uint8_t buf[512];
  int frames = 0, errors = 0;
  for (int round = 0; round < 200000; round++) {
    size_t len = 0;
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    len = (size_t)(state % sizeof buf);
    for (size_t i = 0; i < len; i++) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      buf[i] = (uint8_t)state;
    }
    /* Bias toward plausible headers so that field parsing is reached. */
    if (len >= 9 && (round & 1)) {
      uint32_t flen = (uint32_t)(len - 4 - (state >> 60));
      memcpy(buf, &flen, 4);
    }
    sl_parser p;
    sl_parser_init(&p, 256);
    sl_error err = {0};
    sl_parser_feed(&p, buf, len, &err);
    sl_frame f;
    int rc;
    while ((rc = sl_parser_next(&p, &f, &err)) == 1) {
      frames++;
      size_t pos = 0;
      sl_field field;
      while (sl_frame_next_field(&f, &pos, &field))
        CHECK(field.data + field.len <= f.body + f.body_len);
      CHECK_INT(pos, <=, f.body_len);
      char **v = NULL;
      if (sl_frame_get_strv(&f, SL_F_ARGV, &v, NULL, &err) >= 0) sl_strv_free(v);
    }
    if (rc < 0) {
      errors++;
      CHECK_INT(rc, ==, -EPROTO);
    }
    sl_parser_free(&p);
  }
  CHECK_INT(frames, >, 0);
  CHECK_INT(errors, >, 0);
}

static void message_names(void) {
  CHECK_STR(sl_msg_name(SL_MSG_EXEC), "exec");
  CHECK_STR(sl_msg_name(SL_MSG_EXIT), "exit");
  CHECK_STR(sl_msg_name(0x7f), "unknown");
  CHECK(sl_msg_is_final(SL_MSG_OK));
  CHECK(sl_msg_is_final(SL_MSG_EXIT));
  CHECK(!sl_msg_is_final(SL_MSG_OUTPUT));
}

int main(void) {
  RUN(frame_round_trip);
  RUN(wire_layout_is_little_endian);
  RUN(string_with_nul_is_eproto);
  RUN(wrong_integer_size_is_eproto);
  RUN(oversized_frame_is_emsgsize);
  RUN(truncated_frame_needs_more);
  RUN(malformed_headers_are_eproto);
  RUN(parser_takes_one_byte_at_a_time);
  RUN(parser_stays_failed_until_reset);
  RUN(sync_marker_is_found_after_junk);
  RUN(fuzz_random_bytes);
  RUN(message_names);
  TEST_EXIT();
}
