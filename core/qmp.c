#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* A message larger than this is treated as a broken stream rather than
 * buffered without bound. The replies to the commands sandlot sends are a
 * few kilobytes. */
#define QMP_MESSAGE_MAX (16u << 20)

/* Parsing. */

static int parse_error(json_t *root, sl_qmp_msg *msg, sl_error *err) {
  json_t *error = json_object_get(root, "error");
  const char *cls = json_string_value(json_object_get(error, "class"));
  const char *desc = json_string_value(json_object_get(error, "desc"));
  if (!json_is_object(error) || cls == NULL || desc == NULL)
    return sl_error_set(err, EPROTO, "invalid QMP error reply: missing class or desc");
  msg->kind = SL_QMP_ERROR;
  msg->error_class = cls;
  msg->error_desc = desc;
  return 0;
}

static int classify(json_t *root, sl_qmp_msg *msg, sl_error *err) {
  json_t *id = json_object_get(root, "id");
  msg->id = json_string_value(id);
  if (json_object_get(root, "QMP") != NULL) {
    msg->kind = SL_QMP_GREETING;
    msg->value = json_object_get(root, "QMP");
    return 0;
  }
  if (json_object_get(root, "return") != NULL) {
    msg->kind = SL_QMP_RETURN;
    msg->value = json_object_get(root, "return");
    return 0;
  }
  if (json_object_get(root, "error") != NULL) return parse_error(root, msg, err);
  const char *event = json_string_value(json_object_get(root, "event"));
  if (event != NULL) {
    msg->kind = SL_QMP_EVENT;
    msg->event = event;
    msg->value = json_object_get(root, "data");
    return 0;
  }
  return sl_error_set(err, EPROTO, "invalid QMP message: no QMP, return, error or event key");
}

int sl_qmp_parse(const char *text, size_t len, sl_qmp_msg *msg, sl_error *err) {
  memset(msg, 0, sizeof *msg);
  json_error_t jerr;
  json_t *root = json_loadb(text, len, 0, &jerr);
  if (root == NULL)
    return sl_error_set(err, EPROTO, "invalid QMP message: %s at offset %d", jerr.text,
                        jerr.position);
  if (!json_is_object(root)) {
    json_decref(root);
    return sl_error_set(err, EPROTO, "invalid QMP message: not a JSON object");
  }
  msg->root = root;
  int rc = classify(root, msg, err);
  if (rc < 0) sl_qmp_msg_clear(msg);
  return rc;
}

void sl_qmp_msg_clear(sl_qmp_msg *msg) {
  json_decref(msg->root);
  memset(msg, 0, sizeof *msg);
}

char *sl_qmp_format_command(const char *command, const json_t *args, const char *id) {
  json_t *obj = json_object();
  if (obj == NULL) return NULL;
  json_object_set_new(obj, "execute", json_string(command));
  if (args != NULL) json_object_set(obj, "arguments", (json_t *)args);
  if (id != NULL) json_object_set_new(obj, "id", json_string(id));
  char *body = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (body == NULL) return NULL;
  size_t len = strlen(body);
  char *line = realloc(body, len + 3);
  if (line == NULL) {
    free(body);
    return NULL;
  }
  memcpy(line + len, "\r\n", 3);
  return line;
}

static int reply_error(const char *command, const sl_qmp_msg *msg, sl_error *err) {
  return sl_error_set(err, EIO, "QMP %s failed: %s: %s", command, msg->error_class,
                      msg->error_desc);
}

/* Line buffering shared by both clients. */

typedef struct line_buffer {
  char *data;
  size_t len;
  size_t cap;
} line_buffer;

static int buffer_append(line_buffer *b, const char *bytes, size_t n, sl_error *err) {
  if (b->len + n > QMP_MESSAGE_MAX)
    return sl_error_set(err, EPROTO, "QMP message longer than %u bytes", QMP_MESSAGE_MAX);
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) return sl_error_set(err, ENOMEM, "out of memory reading QMP");
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, bytes, n);
  b->len += n;
  return 0;
}

/* Take the first complete line out of `b` and parse it. Returns 1 with `msg`
 * filled, 0 when no complete line is buffered, or a negative errno. Blank
 * lines are skipped. */
static int buffer_next_message(line_buffer *b, sl_qmp_msg *msg, sl_error *err) {
  for (;;) {
    char *nl = b->data ? memchr(b->data, '\n', b->len) : NULL;
    if (nl == NULL) return 0;
    size_t line_len = (size_t)(nl - b->data), consumed = line_len + 1;
    if (line_len > 0 && b->data[line_len - 1] == '\r') line_len--;
    int rc = line_len > 0 ? sl_qmp_parse(b->data, line_len, msg, err) : 1;
    memmove(b->data, b->data + consumed, b->len - consumed);
    b->len -= consumed;
    if (rc < 0) return rc;
    if (line_len > 0) return 1;
  }
}

/* Blocking client. */

struct sl_qmp_sync {
  int fd;
  line_buffer in;
  json_t *events; /* array of {"event": name, "data": data} not yet waited for */
  unsigned next_id;
};

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(long long deadline) {
  long long left = deadline - now_ms();
  return left < 0 ? 0 : (int)left;
}

static int sync_fill(sl_qmp_sync *q, long long deadline, sl_error *err) {
  struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
  int n = poll(&pfd, 1, remaining_ms(deadline));
  if (n < 0 && errno == EINTR) return 0;
  if (n < 0) return sl_error_errno(err, errno, "poll on QMP socket");
  if (n == 0) return sl_error_set(err, ETIMEDOUT, "timed out waiting for QMP");
  char chunk[65536];
  ssize_t got = read(q->fd, chunk, sizeof chunk);
  if (got < 0 && errno == EINTR) return 0;
  if (got < 0) return sl_error_errno(err, errno, "read from QMP socket");
  if (got == 0) return sl_error_set(err, EPIPE, "QEMU closed the QMP connection");
  return buffer_append(&q->in, chunk, (size_t)got, err);
}

static int sync_read_message(sl_qmp_sync *q, long long deadline, sl_qmp_msg *msg,
                             sl_error *err) {
  for (;;) {
    int rc = buffer_next_message(&q->in, msg, err);
    if (rc != 0) return rc < 0 ? rc : 0;
    rc = sync_fill(q, deadline, err);
    if (rc < 0) return rc;
  }
}

static void sync_queue_event(sl_qmp_sync *q, const sl_qmp_msg *msg) {
  json_t *entry = json_pack("{s:s, s:O?}", "event", msg->event, "data", msg->value);
  if (entry != NULL) json_array_append_new(q->events, entry);
}

static int sync_send_all(sl_qmp_sync *q, const char *bytes, size_t len, int fd_to_pass,
                         sl_error *err) {
  while (len > 0) {
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    char control[CMSG_SPACE(sizeof(int))];
    if (fd_to_pass >= 0) {
      memset(control, 0, sizeof control);
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &fd_to_pass, sizeof(int));
    }
    ssize_t sent = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return sl_error_errno(err, errno, "write to QMP socket");
    bytes += sent;
    len -= (size_t)sent;
    fd_to_pass = -1; /* the descriptor travels with the first byte only */
  }
  return 0;
}

/* Send one command and wait for the reply with its id. */
static int sync_roundtrip(sl_qmp_sync *q, const char *command, json_t *args, int fd_to_pass,
                          json_t **ret, int timeout_ms, sl_error *err) {
  char id[32];
  snprintf(id, sizeof id, "sl-%u", ++q->next_id);
  char *line = sl_qmp_format_command(command, args, id);
  json_decref(args);
  if (line == NULL) return sl_error_set(err, ENOMEM, "out of memory formatting QMP %s", command);
  int rc = sync_send_all(q, line, strlen(line), fd_to_pass, err);
  free(line);
  if (rc < 0) return sl_error_wrap(err, "QMP %s", command);

  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    sl_qmp_msg msg;
    rc = sync_read_message(q, deadline, &msg, err);
    if (rc < 0) return sl_error_wrap(err, "QMP %s", command);
    if (msg.kind == SL_QMP_EVENT) {
      sync_queue_event(q, &msg);
    } else if (msg.id != NULL && strcmp(msg.id, id) == 0) {
      if (msg.kind == SL_QMP_ERROR) rc = reply_error(command, &msg, err);
      if (msg.kind == SL_QMP_RETURN && ret != NULL) *ret = json_incref(msg.value);
      sl_qmp_msg_clear(&msg);
      return rc;
    }
    sl_qmp_msg_clear(&msg);
  }
}

static int sync_connect_socket(const char *path, long long deadline, sl_error *err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path)
    return sl_error_set(err, ENAMETOOLONG, "QMP socket path too long: %s", path);
  strcpy(addr.sun_path, path);
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sl_error_errno(err, errno, "socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
    int e = errno;
    close(fd);
    if ((e != ENOENT && e != ECONNREFUSED) || now_ms() >= deadline)
      return sl_error_errno(err, e, "connect to QMP socket %s", path);
    usleep(2000);
  }
}

static int sync_handshake(sl_qmp_sync *q, long long deadline, sl_error *err) {
  sl_qmp_msg msg;
  int rc = sync_read_message(q, deadline, &msg, err);
  if (rc < 0) return sl_error_wrap(err, "QMP greeting");
  bool greeting = msg.kind == SL_QMP_GREETING;
  sl_qmp_msg_clear(&msg);
  if (!greeting) return sl_error_set(err, EPROTO, "QMP greeting missing: first message was a reply or event");
  return sync_roundtrip(q, "qmp_capabilities", NULL, -1, NULL, remaining_ms(deadline), err);
}

int sl_qmp_sync_connect(const char *path, int timeout_ms, sl_qmp_sync **out, sl_error *err) {
  long long deadline = now_ms() + timeout_ms;
  sl_qmp_sync *q = calloc(1, sizeof *q);
  if (q == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  q->fd = -1;
  q->events = json_array();
  int rc = q->events ? 0 : sl_error_set(err, ENOMEM, "out of memory");
  if (rc == 0) rc = q->fd = sync_connect_socket(path, deadline, err);
  if (rc >= 0) rc = sync_handshake(q, deadline, err);
  if (rc < 0) {
    sl_qmp_sync_close(q);
    return rc;
  }
  *out = q;
  return 0;
}

int sl_qmp_sync_execute(sl_qmp_sync *q, const char *command, json_t *args, json_t **ret,
                        int timeout_ms, sl_error *err) {
  return sync_roundtrip(q, command, args, -1, ret, timeout_ms, err);
}

int sl_qmp_sync_send_fd(sl_qmp_sync *q, const char *name, int fd, int timeout_ms,
                        sl_error *err) {
  json_t *args = json_pack("{s:s}", "fdname", name);
  if (args == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  return sync_roundtrip(q, "getfd", args, fd, NULL, timeout_ms, err);
}

static bool sync_take_queued(sl_qmp_sync *q, sl_qmp_event_match match, void *arg) {
  while (json_array_size(q->events) > 0) {
    json_t *entry = json_array_get(q->events, 0);
    bool hit = match(json_string_value(json_object_get(entry, "event")),
                     json_object_get(entry, "data"), arg);
    json_array_remove(q->events, 0);
    if (hit) return true;
  }
  return false;
}

int sl_qmp_sync_wait_event(sl_qmp_sync *q, sl_qmp_event_match match, void *arg,
                           int timeout_ms, sl_error *err) {
  if (sync_take_queued(q, match, arg)) return 0;
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    sl_qmp_msg msg;
    int rc = sync_read_message(q, deadline, &msg, err);
    if (rc < 0) return sl_error_wrap(err, "waiting for QMP event");
    bool hit = msg.kind == SL_QMP_EVENT && match(msg.event, msg.value, arg);
    sl_qmp_msg_clear(&msg);
    if (hit) return 0;
  }
}

int sl_qmp_sync_fd(const sl_qmp_sync *q) { return q->fd; }

void sl_qmp_sync_close(sl_qmp_sync *q) {
  if (q == NULL) return;
  if (q->fd >= 0) close(q->fd);
  free(q->in.data);
  json_decref(q->events);
  free(q);
}

/* Loop client. */

typedef struct pending {
  struct pending *next;
  char id[32];
  char command[64];
  sl_qmp_reply_cb cb;
  void *data;
} pending;

typedef enum { QMP_CONNECTING, QMP_NEGOTIATING, QMP_READY, QMP_DEAD, QMP_CLOSING } qmp_state;

struct sl_qmp {
  uv_pipe_t pipe;
  uv_connect_t connect_req;
  qmp_state state;
  bool greeted;
  line_buffer in;
  pending *pending; /* sent or queued commands, oldest first */
  char **unsent;    /* lines queued before the connection was up */
  size_t unsent_n;
  unsigned next_id;
  sl_qmp_ready_cb ready;
  sl_qmp_event_cb on_event;
  void *data;
};

#define CAPABILITIES_ID "sl-capabilities"

typedef struct write_req {
  uv_write_t req;
  char *line;
} write_req;

static void on_write(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  free(w->line);
  free(w);
  (void)status; /* a failed write also ends the read side, which reports it */
}

/* Write `line` (ownership taken) to the socket, or keep it until connected. */
static int qmp_write(sl_qmp *q, char *line, sl_error *err) {
  if (q->state == QMP_CONNECTING) {
    char **grown = realloc(q->unsent, (q->unsent_n + 1) * sizeof *grown);
    if (grown == NULL) {
      free(line);
      return sl_error_set(err, ENOMEM, "out of memory");
    }
    q->unsent = grown;
    q->unsent[q->unsent_n++] = line;
    return 0;
  }
  write_req *w = malloc(sizeof *w);
  if (w == NULL) {
    free(line);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  w->line = line;
  uv_buf_t buf = uv_buf_init(line, (unsigned)strlen(line));
  int rc = uv_write(&w->req, (uv_stream_t *)&q->pipe, &buf, 1, on_write);
  if (rc < 0) {
    free(line);
    free(w);
    return sl_error_set(err, -rc, "write to QMP socket: %s", uv_strerror(rc));
  }
  return 0;
}

static pending *take_pending(sl_qmp *q, const char *id) {
  for (pending **p = &q->pending; *p != NULL; p = &(*p)->next) {
    if (strcmp((*p)->id, id) == 0) {
      pending *found = *p;
      *p = found->next;
      return found;
    }
  }
  return NULL;
}

/* Fail every pending command with `status`, then report the end of the
 * connection to the event callback. */
static void qmp_fail_all(sl_qmp *q, int status, const char *why) {
  sl_error err = {0};
  sl_error_set(&err, -status, "%s", why);
  while (q->pending != NULL) {
    pending *p = q->pending;
    q->pending = p->next;
    if (p->cb) p->cb(q, status, NULL, &err, p->data);
    free(p);
  }
}

static void qmp_die(sl_qmp *q, int status, const char *why) {
  if (q->state == QMP_DEAD || q->state == QMP_CLOSING) return;
  bool was_ready = q->state == QMP_READY;
  q->state = QMP_DEAD;
  uv_read_stop((uv_stream_t *)&q->pipe);
  SL_DEBUG("qmp.closed", "status=%d reason=\"%s\"", status, why);
  sl_error err = {0};
  sl_error_set(&err, -status, "%s", why);
  if (!was_ready && q->ready) q->ready(q, status, &err, q->data);
  if (q->state == QMP_CLOSING) return; /* the ready callback closed the client */
  qmp_fail_all(q, status, why);
  if (q->on_event) q->on_event(q, NULL, NULL, status, q->data);
}

static void qmp_on_capabilities(sl_qmp *q, const sl_qmp_msg *msg) {
  if (msg->kind == SL_QMP_ERROR) {
    char why[SL_ERROR_MSG_MAX];
    snprintf(why, sizeof why, "QMP qmp_capabilities failed: %s: %s", msg->error_class,
             msg->error_desc);
    qmp_die(q, -EIO, why);
    return;
  }
  q->state = QMP_READY;
  if (q->ready) q->ready(q, 0, NULL, q->data);
}

static void qmp_dispatch(sl_qmp *q, sl_qmp_msg *msg) {
  if (!q->greeted) {
    if (msg->kind != SL_QMP_GREETING) {
      qmp_die(q, -EPROTO, "QMP greeting missing: first message was a reply or event");
      return;
    }
    q->greeted = true;
    return;
  }
  if (msg->kind == SL_QMP_EVENT) {
    if (q->on_event) q->on_event(q, msg->event, msg->value, 0, q->data);
    return;
  }
  if (msg->id != NULL && strcmp(msg->id, CAPABILITIES_ID) == 0) {
    qmp_on_capabilities(q, msg);
    return;
  }
  pending *p = msg->id ? take_pending(q, msg->id) : NULL;
  if (p == NULL) {
    SL_DEBUG("qmp.unmatched", "id=%s", msg->id ? msg->id : "(none)");
    return;
  }
  if (msg->kind == SL_QMP_ERROR) {
    sl_error err = {0};
    reply_error(p->command, msg, &err);
    p->cb(q, -EIO, NULL, &err, p->data);
  } else {
    p->cb(q, 0, msg->value, NULL, p->data);
  }
  free(p);
}

static void qmp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)handle;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void qmp_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  sl_qmp *q = stream->data;
  sl_error err = {0};
  if (nread < 0) {
    free(buf->base);
    qmp_die(q, nread == UV_EOF ? -EPIPE : (int)nread,
            nread == UV_EOF ? "QEMU closed the QMP connection" : uv_strerror((int)nread));
    return;
  }
  int rc = buffer_append(&q->in, buf->base, (size_t)nread, &err);
  free(buf->base);
  while (rc == 0 && q->state != QMP_DEAD && q->state != QMP_CLOSING) {
    sl_qmp_msg msg;
    rc = buffer_next_message(&q->in, &msg, &err);
    if (rc <= 0) break;
    qmp_dispatch(q, &msg);
    sl_qmp_msg_clear(&msg);
    rc = 0;
  }
  if (rc < 0) qmp_die(q, rc, err.msg);
}

static void qmp_on_connect(uv_connect_t *req, int status) {
  sl_qmp *q = req->data;
  if (q->state == QMP_CLOSING) return;
  if (status < 0) {
    char why[256];
    snprintf(why, sizeof why, "connect to QMP socket: %s", uv_strerror(status));
    qmp_die(q, status, why);
    return;
  }
  q->state = QMP_NEGOTIATING;
  uv_read_start((uv_stream_t *)&q->pipe, qmp_alloc, qmp_on_read);
  sl_error err = {0};
  char *caps = sl_qmp_format_command("qmp_capabilities", NULL, CAPABILITIES_ID);
  int rc = caps ? qmp_write(q, caps, &err) : sl_error_set(&err, ENOMEM, "out of memory");
  for (size_t i = 0; i < q->unsent_n; i++)
    if (rc == 0) rc = qmp_write(q, q->unsent[i], &err);
    else free(q->unsent[i]);
  free(q->unsent);
  q->unsent = NULL;
  q->unsent_n = 0;
  if (rc < 0) qmp_die(q, rc, err.msg);
}

int sl_qmp_open(uv_loop_t *loop, const char *path, sl_qmp_ready_cb ready,
                sl_qmp_event_cb on_event, void *data, sl_qmp **out, sl_error *err) {
  sl_qmp *q = calloc(1, sizeof *q);
  if (q == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  int rc = uv_pipe_init(loop, &q->pipe, 0);
  if (rc < 0) {
    free(q);
    return sl_error_set(err, -rc, "uv_pipe_init: %s", uv_strerror(rc));
  }
  q->pipe.data = q;
  q->connect_req.data = q;
  q->ready = ready;
  q->on_event = on_event;
  q->data = data;
  q->state = QMP_CONNECTING;
  uv_pipe_connect(&q->connect_req, &q->pipe, path, qmp_on_connect);
  *out = q;
  return 0;
}

int sl_qmp_execute(sl_qmp *q, const char *command, json_t *args, sl_qmp_reply_cb cb,
                   void *data, sl_error *err) {
  if (q->state == QMP_DEAD || q->state == QMP_CLOSING) {
    json_decref(args);
    return sl_error_set(err, EPIPE, "QMP %s: connection closed", command);
  }
  pending *p = calloc(1, sizeof *p);
  if (p == NULL) {
    json_decref(args);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  snprintf(p->id, sizeof p->id, "sl-%u", ++q->next_id);
  snprintf(p->command, sizeof p->command, "%s", command);
  p->cb = cb;
  p->data = data;
  char *line = sl_qmp_format_command(command, args, p->id);
  json_decref(args);
  int rc = line ? qmp_write(q, line, err) : sl_error_set(err, ENOMEM, "out of memory");
  if (rc < 0) {
    free(p);
    return rc;
  }
  pending **tail = &q->pending;
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = p;
  return 0;
}

static void qmp_on_closed(uv_handle_t *handle) {
  sl_qmp *q = handle->data;
  free(q->in.data);
  free(q);
}

void sl_qmp_close(sl_qmp *q) {
  if (q == NULL || q->state == QMP_CLOSING) return;
  bool notify = q->state != QMP_DEAD;
  q->state = QMP_CLOSING;
  qmp_fail_all(q, -ECANCELED, "QMP connection closed by the client");
  if (notify && q->on_event) q->on_event(q, NULL, NULL, 0, q->data);
  for (size_t i = 0; i < q->unsent_n; i++) free(q->unsent[i]);
  free(q->unsent);
  q->unsent = NULL;
  q->unsent_n = 0;
  uv_close((uv_handle_t *)&q->pipe, qmp_on_closed);
}
