/* Whole-file transfers over the asynchronous agent client, one chunk of at
 * most SL_PROTO_CHUNK bytes per request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent_client.h"

typedef struct transfer {
  sl_agent *a;
  char *path;
  sl_agent_file_cb cb;
  void *data;
  sl_buf bytes; /* read: received so far; write: everything to send */
  uint64_t offset;
  uint64_t max;  /* read: the largest file accepted; 0: any */
  int mode;
  int flags;
} transfer;

static void transfer_free(transfer *t) {
  sl_buf_free(&t->bytes);
  free(t->path);
  free(t);
}

static void transfer_fail(transfer *t, const sl_error *err) {
  t->cb(t->a, NULL, 0, err, t->data);
  transfer_free(t);
}

static transfer *transfer_new(sl_agent *a, const char *path, sl_agent_file_cb cb, void *data) {
  transfer *t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  t->path = strdup(path);
  if (t->path == NULL) {
    free(t);
    return NULL;
  }
  t->a = a;
  t->cb = cb;
  t->data = data;
  return t;
}

/* ---- Reading ------------------------------------------------------------ */

static int read_next(transfer *t, sl_error *err);

static void on_read_reply(sl_agent *a, const sl_frame *f, const sl_error *err, void *data) {
  transfer *t = data;
  (void)a;
  if (err != NULL) {
    sl_error wrapped = *err;
    if (f == NULL) sl_error_wrap(&wrapped, "read %s", t->path);
    transfer_fail(t, &wrapped);
    return;
  }
  const uint8_t *bytes = NULL;
  size_t len = 0;
  int64_t eof = 1;
  int64_t size = 0;
  sl_frame_get_bytes(f, SL_F_DATA, &bytes, &len);
  sl_frame_get_i64(f, SL_F_EOF, &eof, NULL);
  sl_frame_get_i64(f, SL_F_SIZE, &size, NULL);
  sl_error e = {0};
  /* The size in the first reply fails a large file before the transfer.
   * The count of bytes catches a file that grows while it is read. */
  if (t->max > 0 && ((uint64_t)size > t->max || t->offset + len > t->max)) {
    uint64_t found = (uint64_t)size > t->offset + len ? (uint64_t)size : t->offset + len;
    char quoted[SL_SUBJECT_MAX];
    sl_error_set(&e, EFBIG, "file too large (%llu bytes, more than the maximum of %llu): %s",
                 (unsigned long long)found, (unsigned long long)t->max,
                 sl_subject(quoted, sizeof quoted, t->path));
    transfer_fail(t, &e);
    return;
  }
  sl_buf_append(&t->bytes, bytes, len);
  t->offset += len;
  if (t->bytes.failed) {
    sl_error_set(&e, ENOMEM, "out of memory reading %s", t->path);
    transfer_fail(t, &e);
  } else if (eof || len == 0) {
    t->cb(t->a, t->bytes.data ? t->bytes.data : (const uint8_t *)"", t->bytes.len, NULL, t->data);
    transfer_free(t);
  } else if (read_next(t, &e) < 0) {
    transfer_fail(t, &e);
  }
}

static int read_next(transfer *t, sl_error *err) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_FILE_READ, 0);
  sl_frame_put_str(&b, SL_F_PATH, t->path);
  sl_frame_put_i64(&b, SL_F_OFFSET, (int64_t)t->offset);
  sl_frame_put_i64(&b, SL_F_LENGTH, SL_PROTO_CHUNK);
  int rc = sl_frame_end(&b, start, err);
  if (rc == 0) rc = sl_agent_request(t->a, &b, on_read_reply, t, err);
  sl_buf_free(&b);
  return rc;
}

int sl_agent_read_file(sl_agent *a, const char *path, sl_agent_file_cb cb, void *data,
                       sl_error *err) {
  return sl_agent_read_file_max(a, path, 0, cb, data, err);
}

int sl_agent_read_file_max(sl_agent *a, const char *path, uint64_t max, sl_agent_file_cb cb,
                           void *data, sl_error *err) {
  transfer *t = transfer_new(a, path, cb, data);
  if (t == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  t->max = max;
  int rc = read_next(t, err);
  if (rc < 0) transfer_free(t);
  return rc;
}

/* ---- Writing ------------------------------------------------------------ */

static int write_next(transfer *t, sl_error *err);

static void on_write_reply(sl_agent *a, const sl_frame *f, const sl_error *err, void *data) {
  transfer *t = data;
  (void)a;
  (void)f;
  if (err != NULL) {
    sl_error wrapped = *err;
    if (f == NULL) sl_error_wrap(&wrapped, "write %s", t->path);
    transfer_fail(t, &wrapped);
    return;
  }
  sl_error e = {0};
  if (t->offset >= t->bytes.len) {
    t->cb(t->a, NULL, 0, NULL, t->data);
    transfer_free(t);
  } else if (write_next(t, &e) < 0) {
    transfer_fail(t, &e);
  }
}

static int write_next(transfer *t, sl_error *err) {
  size_t len = t->bytes.len - (size_t)t->offset;
  if (len > SL_PROTO_CHUNK) len = SL_PROTO_CHUNK;
  /* Only the first chunk truncates; later ones write at their offset, so a
   * repeated chunk rewrites the same bytes. Appended chunks go to the end. */
  int flags = t->flags | SL_FILE_CREATE;
  if (t->offset == 0 && !(flags & SL_FILE_APPEND)) flags |= SL_FILE_TRUNCATE;
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_FILE_WRITE, 0);
  sl_frame_put_str(&b, SL_F_PATH, t->path);
  sl_frame_put_i64(&b, SL_F_OFFSET, (int64_t)t->offset);
  sl_frame_put_i64(&b, SL_F_FLAGS, t->offset == 0 ? flags : flags & ~SL_FILE_EXCL);
  sl_frame_put_i64(&b, SL_F_MODE, t->mode);
  sl_frame_put_bytes(&b, SL_F_DATA, t->bytes.data ? t->bytes.data + t->offset : NULL, len);
  int rc = sl_frame_end(&b, start, err);
  if (rc == 0) rc = sl_agent_request(t->a, &b, on_write_reply, t, err);
  sl_buf_free(&b);
  if (rc == 0) t->offset += len;
  return rc;
}

int sl_agent_write_file(sl_agent *a, const char *path, const void *bytes, size_t len, int mode,
                        int flags, sl_agent_file_cb cb, void *data, sl_error *err) {
  transfer *t = transfer_new(a, path, cb, data);
  if (t == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  t->mode = mode > 0 ? mode : 0644;
  t->flags = flags & (SL_FILE_PARENTS | SL_FILE_EXCL | SL_FILE_APPEND);
  sl_buf_append(&t->bytes, bytes, len);
  if (t->bytes.failed) {
    transfer_free(t);
    return sl_error_set(err, ENOMEM, "out of memory copying %zu bytes", len);
  }
  int rc = write_next(t, err);
  if (rc < 0) transfer_free(t);
  return rc;
}
