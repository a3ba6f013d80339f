#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  uint8_t type;
  const char *name;
} msg_names[] = {
    {SL_MSG_SYNC, "sync"},
    {SL_MSG_HELLO, "hello"},
    {SL_MSG_PING, "ping"},
    {SL_MSG_QUIESCE, "quiesce"},
    {SL_MSG_EXEC, "exec"},
    {SL_MSG_ATTACH, "attach"},
    {SL_MSG_ACK, "ack"},
    {SL_MSG_READ, "read"},
    {SL_MSG_WRITE_STDIN, "write_stdin"},
    {SL_MSG_CLOSE_STDIN, "close_stdin"},
    {SL_MSG_SIGNAL, "signal"},
    {SL_MSG_WAIT, "wait"},
    {SL_MSG_LIST, "list"},
    {SL_MSG_RELEASE, "release"},
    {SL_MSG_DETACH, "detach"},
    {SL_MSG_FILE_READ, "file_read"},
    {SL_MSG_FILE_WRITE, "file_write"},
    {SL_MSG_LIST_DIR, "list_dir"},
    {SL_MSG_STAT, "stat"},
    {SL_MSG_MKDIR, "mkdir"},
    {SL_MSG_REMOVE, "remove"},
    {SL_MSG_RENAME, "rename"},
    {SL_MSG_SET_HOSTNAME, "set_hostname"},
    {SL_MSG_ADD_ENTROPY, "add_entropy"},
    {SL_MSG_OK, "ok"},
    {SL_MSG_ERROR, "error"},
    {SL_MSG_EXIT, "exit"},
    {SL_MSG_STARTED, "started"},
    {SL_MSG_OUTPUT, "output"},
    {SL_MSG_ENTRY, "entry"},
    {SL_MSG_PROCESS, "process"},
    {SL_MSG_CLOSING, "closing"},
};

const char *sl_msg_name(uint8_t type) {
  for (size_t i = 0; i < sizeof msg_names / sizeof msg_names[0]; i++)
    if (msg_names[i].type == type) return msg_names[i].name;
  return "unknown";
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- Buffers ------------------------------------------------------------ */

void sl_buf_free(sl_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}

static int buf_reserve(sl_buf *b, size_t extra) {
  if (b->failed) return -1;
  if (b->cap - b->len >= extra) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2) {
      b->failed = 1;
      return -1;
    }
    cap *= 2;
  }
  uint8_t *data = realloc(b->data, cap);
  if (data == NULL) {
    b->failed = 1;
    return -1;
  }
  b->data = data;
  b->cap = cap;
  return 0;
}

void sl_buf_append(sl_buf *b, const void *bytes, size_t len) {
  if (len == 0 || buf_reserve(b, len) < 0) return;
  memcpy(b->data + b->len, bytes, len);
  b->len += len;
}

void sl_buf_consume(sl_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

/* ---- Building ----------------------------------------------------------- */

size_t sl_frame_begin(sl_buf *b, uint8_t type, uint32_t id) {
  size_t start = b->len;
  uint8_t header[SL_PROTO_HEADER];
  put_u32(header, 0);
  header[4] = type;
  put_u32(header + 5, id);
  sl_buf_append(b, header, sizeof header);
  return start;
}

void sl_frame_put_bytes(sl_buf *b, uint8_t key, const void *bytes, size_t len) {
  if (len > UINT32_MAX) {
    b->failed = 1;
    return;
  }
  uint8_t header[5];
  header[0] = key;
  put_u32(header + 1, (uint32_t)len);
  if (buf_reserve(b, sizeof header + len) < 0) return;
  sl_buf_append(b, header, sizeof header);
  sl_buf_append(b, bytes, len);
}

void sl_frame_put_str(sl_buf *b, uint8_t key, const char *s) {
  sl_frame_put_bytes(b, key, s, strlen(s));
}

void sl_frame_put_i64(sl_buf *b, uint8_t key, int64_t v) {
  uint8_t bytes[8];
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(u >> (8 * i));
  sl_frame_put_bytes(b, key, bytes, sizeof bytes);
}

void sl_frame_put_strv(sl_buf *b, uint8_t key, const char *const *v) {
  for (; v != NULL && *v != NULL; v++) sl_frame_put_str(b, key, *v);
}

int sl_frame_end(sl_buf *b, size_t start, sl_error *err) {
  if (b->failed) {
    b->failed = 0;
    b->len = start < b->len ? start : b->len;
    return sl_error_set(err, ENOMEM, "out of memory building a frame");
  }
  size_t length = b->len - start - 4;
  if (length > SL_PROTO_MAX_FRAME) {
    b->len = start;
    return sl_error_set(err, EMSGSIZE,
                        "message too large for the agent protocol: %zu bytes (at most %u)",
                        length, SL_PROTO_MAX_FRAME);
  }
  put_u32(b->data + start, (uint32_t)length);
  return 0;
}

void sl_frame_set_id(uint8_t *frame, uint32_t id) { put_u32(frame + 5, id); }

void sl_proto_put_sync(sl_buf *b, const uint8_t nonce[SL_PROTO_SYNC_NONCE]) {
  uint8_t zero[4] = {0};
  sl_buf_append(b, zero, sizeof zero);
  sl_buf_append(b, SL_PROTO_SYNC_MAGIC, 8);
  sl_buf_append(b, nonce, SL_PROTO_SYNC_NONCE);
}

/* ---- Reading ------------------------------------------------------------ */

static int check_fields(const uint8_t *body, size_t len, sl_error *err) {
  size_t pos = 0;
  while (pos < len) {
    if (len - pos < 5)
      return sl_error_set(err, EPROTO, "truncated field header at byte %zu", pos);
    uint32_t flen = get_u32(body + pos + 1);
    if (len - pos - 5 < flen)
      return sl_error_set(err, EPROTO, "field %u length %u exceeds the frame", body[pos],
                          flen);
    pos += 5 + (size_t)flen;
  }
  return 0;
}

static long parse_sync(const uint8_t *bytes, size_t len, sl_frame *out, sl_error *err) {
  size_t have = len - 4 < 8 ? len - 4 : 8;
  if (memcmp(bytes + 4, SL_PROTO_SYNC_MAGIC, have) != 0)
    return sl_error_set(err, EPROTO, "invalid frame length 0");
  if (len < SL_PROTO_SYNC_SIZE) return 0;
  out->type = SL_MSG_SYNC;
  out->id = 0;
  out->body = bytes + 12;
  out->body_len = SL_PROTO_SYNC_NONCE;
  return SL_PROTO_SYNC_SIZE;
}

long sl_frame_parse(const uint8_t *bytes, size_t len, size_t max_frame, sl_frame *out,
                    sl_error *err) {
  if (len < 4) return 0;
  uint32_t length = get_u32(bytes);
  if (length == 0) return parse_sync(bytes, len, out, err);
  if (length < SL_PROTO_HEADER - 4)
    return sl_error_set(err, EPROTO, "invalid frame length %u (minimum %u)", length,
                        SL_PROTO_HEADER - 4);
  if (length > max_frame)
    return sl_error_set(err, EPROTO, "frame too large: %u bytes (maximum %zu)", length,
                        max_frame);
  if (len - 4 < length) return 0;
  const uint8_t *body = bytes + SL_PROTO_HEADER;
  size_t body_len = length - (SL_PROTO_HEADER - 4);
  int rc = check_fields(body, body_len, err);
  if (rc < 0) return rc;
  out->type = bytes[4];
  out->id = get_u32(bytes + 5);
  out->body = body;
  out->body_len = body_len;
  return 4 + (long)length;
}

int sl_frame_next_field(const sl_frame *f, size_t *pos, sl_field *out) {
  if (*pos + 5 > f->body_len) return 0;
  const uint8_t *p = f->body + *pos;
  out->key = p[0];
  out->len = get_u32(p + 1);
  out->data = p + 5;
  *pos += 5 + (size_t)out->len;
  return 1;
}

static int find_field(const sl_frame *f, uint8_t key, sl_field *out) {
  size_t pos = 0;
  sl_field field;
  int found = 0;
  while (sl_frame_next_field(f, &pos, &field))
    if (field.key == key) {
      *out = field;
      found = 1;
    }
  return found;
}

int sl_frame_get_i64(const sl_frame *f, uint8_t key, int64_t *out, sl_error *err) {
  sl_field field;
  if (!find_field(f, key, &field)) return 0;
  if (field.len != 8)
    return sl_error_set(err, EPROTO, "field %u: expected 8 bytes, got %u", key, field.len);
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= (uint64_t)field.data[i] << (8 * i);
  *out = (int64_t)u;
  return 1;
}

int sl_frame_get_bytes(const sl_frame *f, uint8_t key, const uint8_t **data, size_t *len) {
  sl_field field;
  if (!find_field(f, key, &field)) return 0;
  *data = field.data;
  *len = field.len;
  return 1;
}

static int copy_string(const sl_field *field, char **out, sl_error *err) {
  if (memchr(field->data, '\0', field->len) != NULL)
    return sl_error_set(err, EPROTO, "field %u: string contains a NUL byte", field->key);
  char *s = malloc((size_t)field->len + 1);
  if (s == NULL) return sl_error_set(err, ENOMEM, "out of memory copying field %u", field->key);
  memcpy(s, field->data, field->len);
  s[field->len] = '\0';
  *out = s;
  return 1;
}

int sl_frame_get_str(const sl_frame *f, uint8_t key, char **out, sl_error *err) {
  sl_field field;
  if (!find_field(f, key, &field)) return 0;
  return copy_string(&field, out, err);
}

int sl_frame_get_strv(const sl_frame *f, uint8_t key, char ***out, size_t *count,
                      sl_error *err) {
  size_t n = 0, pos = 0;
  sl_field field;
  while (sl_frame_next_field(f, &pos, &field)) n += field.key == key;
  char **v = calloc(n + 1, sizeof *v);
  if (v == NULL) return sl_error_set(err, ENOMEM, "out of memory copying field %u", key);
  size_t i = 0;
  pos = 0;
  while (sl_frame_next_field(f, &pos, &field)) {
    if (field.key != key) continue;
    int rc = copy_string(&field, &v[i], err);
    if (rc < 0) {
      sl_strv_free(v);
      return rc;
    }
    i++;
  }
  *out = v;
  if (count != NULL) *count = n;
  return (int)n;
}

/* ---- Parser ------------------------------------------------------------- */

void sl_parser_init(sl_parser *p, size_t max_frame) {
  memset(p, 0, sizeof *p);
  p->max_frame = max_frame;
}

void sl_parser_free(sl_parser *p) {
  free(p->buf);
  memset(p, 0, sizeof *p);
}

void sl_parser_reset(sl_parser *p) {
  p->start = p->end = 0;
  p->scanning = 0;
  p->failed = 0;
}

void sl_parser_resync(sl_parser *p) {
  p->scanning = 1;
  p->failed = 0;
}

uint8_t *sl_parser_space(sl_parser *p, size_t want) {
  if (p->start > 0 && p->start == p->end) p->start = p->end = 0;
  if (p->cap - p->end >= want) return p->buf + p->end;
  if (p->start > 0) {
    memmove(p->buf, p->buf + p->start, p->end - p->start);
    p->end -= p->start;
    p->start = 0;
    if (p->cap - p->end >= want) return p->buf + p->end;
  }
  size_t cap = p->cap ? p->cap : 4096;
  while (cap - p->end < want) cap *= 2;
  uint8_t *buf = realloc(p->buf, cap);
  if (buf == NULL) return NULL;
  p->buf = buf;
  p->cap = cap;
  return p->buf + p->end;
}

void sl_parser_commit(sl_parser *p, size_t n) { p->end += n; }

int sl_parser_feed(sl_parser *p, const void *bytes, size_t len, sl_error *err) {
  uint8_t *dst = sl_parser_space(p, len);
  if (dst == NULL) return sl_error_set(err, ENOMEM, "out of memory buffering %zu bytes", len);
  memcpy(dst, bytes, len);
  sl_parser_commit(p, len);
  return 0;
}

/* Skip to the next sync marker. Keeps a possible marker prefix at the end
 * of the buffer, since the rest of it may arrive with the next read. */
static void scan_for_sync(sl_parser *p) {
  static const uint8_t marker[12] = {0, 0, 0, 0, 'S', 'L', 'S', 'Y', 'N', 'C', '\r', '\n'};
  while (p->end - p->start >= 1) {
    size_t avail = p->end - p->start;
    size_t cmp = avail < sizeof marker ? avail : sizeof marker;
    if (memcmp(p->buf + p->start, marker, cmp) == 0) {
      if (cmp == sizeof marker) p->scanning = 0;
      return;
    }
    p->start++;
  }
}

int sl_parser_next(sl_parser *p, sl_frame *out, sl_error *err) {
  if (p->failed) return sl_error_set(err, EPROTO, "parser stopped after malformed input");
  if (p->scanning) {
    scan_for_sync(p);
    if (p->scanning) return 0;
  }
  long n = sl_frame_parse(p->buf + p->start, p->end - p->start, p->max_frame, out, err);
  if (n < 0) {
    p->failed = 1;
    return (int)n;
  }
  if (n == 0) return 0;
  p->start += (size_t)n;
  return 1;
}
