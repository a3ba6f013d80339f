/* The asynchronous agent client on a libuv loop. */
#include "agent_client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent_ports.h"
#include "log.h"

/* ST_PORT_WAIT: other host processes hold every agent port of the VM, so
 * the timer tries again. */
enum conn_state { ST_IDLE, ST_PORT_WAIT, ST_CONNECTING, ST_SYNCING, ST_READY };

/* A client of a VM's agent ports lets its port go after this long without
 * a request, process or waiter, so other host processes can have it. */
#define PORT_IDLE_RELEASE_MS 1000

typedef struct pending {
  uint32_t id;
  sl_agent_reply_cb cb;
  void *data;
  sl_agent_exec *exec; /* set for the request an exec follows */
  /* Position among the request frames written on this connection, 0
   * while the request waits in the queue. */
  uint64_t seq;
  /* A copy of the request until its first reply proves that the agent
   * read it, so it can be sent again when the agent closed the
   * connection before reading it (CLOSING). */
  uint8_t *bytes;
  size_t len;
  struct pending *next;
} pending;

typedef struct queued {
  uint8_t *bytes;
  size_t len;
  uint32_t id; /* of its pending request, 0 for none (ACK) */
  struct queued *next;
} queued;

typedef struct waiter {
  sl_agent_done_cb cb;
  void *data;
  struct waiter *next;
} waiter;

struct sl_agent_exec {
  sl_agent *a;
  sl_exec_callbacks cbs;
  void *data;
  int64_t proc;
  int64_t pid;
  uint64_t delivered[3];
  uint64_t acked[3];
  uint64_t ack_step;
  int detached;
  sl_agent_exec *next;
};

struct sl_agent {
  uv_loop_t *loop;
  char *path;
  sl_agent_options opts;
  char *port_dir;         /* vm_ports: the folder of the ports */
  char port_path[4096];   /* vm_ports: the socket of the port held */
  int port_lock;          /* vm_ports: the lock fd of that port, or -1 */
  uint64_t port_wait_end; /* uv_now() value until which to wait for a port */
  uv_pipe_t *pipe; /* first member of a struct connection, NULL when idle */
  uv_timer_t timer;
  enum conn_state state;
  int paused;
  uint64_t written;     /* request frames written on this connection */
  int peer_closing;     /* the agent sent CLOSING: it reads no more */
  int write_failed;     /* EPIPE: the agent closed; the read side ends */
  uint64_t peer_read;   /* request frames it read, from CLOSING */
  int expect_return;    /* after CLOSING: retry refused connections */
  int closing;
  int open_handles;
  int attempts;
  uint32_t next_id;
  uint8_t nonce[SL_PROTO_SYNC_NONCE];
  uint64_t sync_deadline; /* uv_now() value */
  sl_parser in;
  pending *pending;
  queued *queue;
  waiter *waiters;
  sl_agent_exec *execs;
};

/* One connection attempt: the connect request lives as long as its pipe,
 * because libuv may still cancel it while the pipe closes. */
struct connection {
  uv_pipe_t pipe;
  uv_connect_t req;
};

static void start_connect(sl_agent *a);
static void drop_connection(sl_agent *a, const sl_error *err);
static void on_timer(uv_timer_t *t);
static void check_idle(sl_agent *a);
static int send_attach(sl_agent_exec *x, sl_error *err);

/* ---- Lifetime ----------------------------------------------------------- */

/* The folder part of `path` ("." when it has none), malloc'd. */
static char *folder_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

sl_agent *sl_agent_new(uv_loop_t *loop, const char *path, const sl_agent_options *opts) {
  sl_agent *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->path = strdup(path);
  if (a->path == NULL) {
    free(a);
    return NULL;
  }
  a->loop = loop;
  a->port_lock = -1;
  if (opts != NULL) a->opts = *opts;
  if (a->opts.vm_ports) {
    a->opts.sync = 1;
    a->port_dir = folder_of(path);
    if (a->port_dir == NULL) {
      free(a->path);
      free(a);
      return NULL;
    }
  }
  if (a->opts.connect_timeout_ms <= 0) a->opts.connect_timeout_ms = 5000;
  if (a->opts.reconnect_attempts <= 0) a->opts.reconnect_attempts = 50;
  if (a->opts.reconnect_delay_ms <= 0) a->opts.reconnect_delay_ms = 100;
  a->next_id = 1;
  sl_parser_init(&a->in, SL_PROTO_MAX_FRAME);
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  a->open_handles = 1;
  return a;
}

static void maybe_free(sl_agent *a) {
  if (a->open_handles > 0) return;
  sl_parser_free(&a->in);
  free(a->port_dir);
  free(a->path);
  free(a);
}

static void on_handle_closed(uv_handle_t *h) {
  sl_agent *a = h->data;
  if (h != (uv_handle_t *)&a->timer) free(h);
  a->open_handles--;
  if (a->closing) maybe_free(a);
}

/* ---- Writing ------------------------------------------------------------ */

typedef struct write_req {
  uv_write_t req;
  uint8_t bytes[];
} write_req;

static void on_written(uv_write_t *req, int status) {
  sl_agent *a = req->data;
  free(req);
  if (status >= 0 || status == UV_ECANCELED || a->pipe == NULL) return;
  /* The agent closed the connection, but its last messages (CLOSING
   * among them) may still wait to be read. The read then ends in EOF,
   * which drops the connection. Nothing more is written meanwhile. */
  if ((status == UV_EPIPE || status == UV_ECONNRESET) && a->state == ST_READY) {
    a->write_failed = 1;
    return;
  }
  sl_error err;
  sl_error_set(&err, -status, "write to the agent failed: %s", uv_strerror(status));
  drop_connection(a, &err);
}

static int write_bytes(sl_agent *a, const uint8_t *bytes, size_t len) {
  write_req *w = malloc(sizeof *w + len);
  if (w == NULL) return -ENOMEM;
  memcpy(w->bytes, bytes, len);
  w->req.data = a;
  uv_buf_t buf = uv_buf_init((char *)w->bytes, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)a->pipe, &buf, 1, on_written);
  if (rc < 0) free(w);
  return rc;
}

static queued *queued_new(const uint8_t *bytes, size_t len, uint32_t id) {
  queued *q = malloc(sizeof *q);
  uint8_t *copy = malloc(len);
  if (q == NULL || copy == NULL) {
    free(q);
    free(copy);
    return NULL;
  }
  memcpy(copy, bytes, len);
  *q = (queued){.bytes = copy, .len = len, .id = id};
  return q;
}

static int enqueue(sl_agent *a, const uint8_t *bytes, size_t len, uint32_t id) {
  queued *q = queued_new(bytes, len, id);
  if (q == NULL) return -ENOMEM;
  queued **pp = &a->queue;
  while (*pp != NULL) pp = &(*pp)->next;
  *pp = q;
  return 0;
}

static void free_queue(sl_agent *a) {
  while (a->queue != NULL) {
    queued *q = a->queue;
    a->queue = q->next;
    free(q->bytes);
    free(q);
  }
}

static pending *find_pending(sl_agent *a, uint32_t id);

/* Write a request frame and note its position on the connection. */
static int write_request(sl_agent *a, const uint8_t *bytes, size_t len, uint32_t id) {
  int rc = write_bytes(a, bytes, len);
  if (rc < 0) return rc;
  a->written++;
  pending *p = id != 0 ? find_pending(a, id) : NULL;
  if (p != NULL) p->seq = a->written;
  return 0;
}

/* Whether requests may go out now: connected, not held by
 * sl_agent_pause(), and the agent still reads. */
static int can_send(const sl_agent *a) {
  return a->state == ST_READY && !a->paused && !a->peer_closing && !a->write_failed;
}

/* Send now when possible, otherwise queue (and connect when idle). */
static int send_or_queue(sl_agent *a, const uint8_t *bytes, size_t len, uint32_t id) {
  if (can_send(a)) return write_request(a, bytes, len, id);
  int rc = enqueue(a, bytes, len, id);
  if (rc == 0 && a->state == ST_IDLE && !a->paused) start_connect(a);
  return rc;
}

/* Write the queued requests, in order, while requests may go out. */
static void flush_queue(sl_agent *a) {
  while (a->queue != NULL && can_send(a)) {
    queued *q = a->queue;
    a->queue = q->next;
    write_request(a, q->bytes, q->len, q->id);
    free(q->bytes);
    free(q);
  }
}

/* ---- Requests ----------------------------------------------------------- */

static pending *add_pending(sl_agent *a, sl_agent_reply_cb cb, void *data, sl_agent_exec *x) {
  pending *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->id = a->next_id++;
  if (a->next_id == 0) a->next_id = 1;
  p->cb = cb;
  p->data = data;
  p->exec = x;
  p->next = a->pending;
  a->pending = p;
  return p;
}

static void remove_pending(sl_agent *a, pending *target) {
  for (pending **pp = &a->pending; *pp != NULL; pp = &(*pp)->next)
    if (*pp == target) {
      *pp = target->next;
      return;
    }
}

static void pending_free(pending *p) {
  free(p->bytes);
  free(p);
}

static int request(sl_agent *a, const sl_buf *frame, sl_agent_reply_cb cb, void *data,
                   sl_agent_exec *x, sl_error *err) {
  if (a->closing) return sl_error_set(err, EINVAL, "agent client is closed");
  if (frame->len < SL_PROTO_HEADER) return sl_error_set(err, EINVAL, "request frame is empty");
  uint8_t *bytes = malloc(frame->len);
  pending *p = NULL;
  if (bytes != NULL && (cb != NULL || x != NULL)) p = add_pending(a, cb, data, x);
  if (bytes == NULL || (p == NULL && (cb != NULL || x != NULL))) {
    free(bytes);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  memcpy(bytes, frame->data, frame->len);
  sl_frame_set_id(bytes, p != NULL ? p->id : 0);
  if (p != NULL) {
    p->bytes = bytes;
    p->len = frame->len;
  }
  int rc = send_or_queue(a, bytes, frame->len, p != NULL ? p->id : 0);
  if (p == NULL) free(bytes);
  if (rc < 0) {
    if (p != NULL) {
      remove_pending(a, p);
      pending_free(p);
    }
    return sl_error_set(err, -rc, "sending to the agent failed: %s", strerror(-rc));
  }
  return 0;
}

int sl_agent_request(sl_agent *a, const sl_buf *frame, sl_agent_reply_cb cb, void *data,
                     sl_error *err) {
  return request(a, frame, cb, data, NULL, err);
}

void sl_agent_error_from_frame(const sl_frame *f, sl_error *err) {
  char *code = NULL, *msg = NULL;
  sl_frame_get_str(f, SL_F_CODE, &code, NULL);
  sl_frame_get_str(f, SL_F_MESSAGE, &msg, NULL);
  int errnum = sl_errcode(code);
  sl_error_set(err, errnum ? errnum : EIO, "%s", msg ? msg : "agent error without a message");
  free(code);
  free(msg);
}

/* ---- Reading ------------------------------------------------------------ */

static pending *find_pending(sl_agent *a, uint32_t id) {
  for (pending *p = a->pending; p != NULL; p = p->next)
    if (p->id == id) return p;
  return NULL;
}

static void deliver_frame(sl_agent *a, const sl_frame *f) {
  pending *p = find_pending(a, f->id);
  if (p == NULL) {
    SL_DEBUG("agent_client.stray", "path=%s id=%u type=%s", a->path, f->id, sl_msg_name(f->type));
    return;
  }
  sl_error err = {0};
  const sl_error *errp = NULL;
  if (f->type == SL_MSG_ERROR) {
    sl_agent_error_from_frame(f, &err);
    errp = &err;
  }
  sl_agent_reply_cb cb = p->cb;
  void *data = p->data;
  /* The agent read the request: it is never sent again. */
  free(p->bytes);
  p->bytes = NULL;
  /* A final reply unlinks the request before its callback, which may close
   * the client; a non-final one is not touched after the callback. */
  if (sl_msg_is_final(f->type)) {
    remove_pending(a, p);
    pending_free(p);
  }
  if (cb != NULL) cb(a, f, errp, data);
}

static void on_ready(sl_agent *a);

static void handle_sync_frame(sl_agent *a, const sl_frame *f) {
  if (a->state != ST_SYNCING) return;
  if (memcmp(f->body, a->nonce, SL_PROTO_SYNC_NONCE) != 0) {
    sl_parser_resync(&a->in); /* a reply to an older session's marker */
    return;
  }
  on_ready(a);
}

/* The agent closes the connection after this message, and read only the
 * first `count` request frames written on it. */
static void on_peer_closing(sl_agent *a, const sl_frame *f) {
  int64_t count = 0;
  sl_frame_get_i64(f, SL_F_COUNT, &count, NULL);
  SL_DEBUG("agent_client.closing", "path=%s read=%lld written=%llu", a->path, (long long)count,
           (unsigned long long)a->written);
  a->peer_closing = 1;
  a->peer_read = count > 0 ? (uint64_t)count : 0;
  a->expect_return = 1;
}

static void process_frames(sl_agent *a) {
  sl_frame f;
  sl_error err = {0};
  while (a->pipe != NULL && !a->closing) {
    int rc = sl_parser_next(&a->in, &f, &err);
    if (rc == 0) break;
    if (rc < 0) {
      sl_error_wrap(&err, "invalid data from the agent");
      drop_connection(a, &err);
      return;
    }
    if (f.type == SL_MSG_SYNC)
      handle_sync_frame(a, &f);
    else if (f.type == SL_MSG_CLOSING && a->state == ST_READY)
      on_peer_closing(a, &f);
    else if (a->state == ST_READY)
      deliver_frame(a, &f);
  }
  if (!a->closing) check_idle(a);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_agent *a = h->data;
  (void)suggested;
  uint8_t *space = sl_parser_space(&a->in, 65536);
  *buf = uv_buf_init((char *)space, space ? 65536 : 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_agent *a = s->data;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    sl_error err;
    if (nread == UV_EOF)
      sl_error_set(&err, ECONNRESET, "connection to the agent closed: %s", a->path);
    else
      sl_error_set(&err, (int)-nread, "reading from the agent failed: %s", uv_strerror((int)nread));
    drop_connection(a, &err);
    return;
  }
  sl_parser_commit(&a->in, (size_t)nread);
  process_frames(a);
}

/* ---- Connecting --------------------------------------------------------- */

static void notify_waiters(sl_agent *a, const sl_error *err) {
  while (a->waiters != NULL) {
    waiter *w = a->waiters;
    a->waiters = w->next;
    w->cb(a, err, w->data);
    free(w);
  }
}

/* Close the connection, if any, and release the port it used. uv_close()
 * closes the socket at once (only its callback comes later), so QEMU's
 * chardev gets the hangup before the next owner of the port connects. */
static void close_pipe(sl_agent *a) {
  a->state = ST_IDLE;
  a->written = 0;
  a->peer_closing = 0;
  a->write_failed = 0;
  if (a->pipe != NULL) {
    uv_close((uv_handle_t *)a->pipe, on_handle_closed);
    a->pipe = NULL;
    sl_parser_reset(&a->in);
  }
  if (a->port_lock >= 0) close(a->port_lock);
  a->port_lock = -1;
}

static bool is_idle(const sl_agent *a) {
  return a->pending == NULL && a->queue == NULL && a->execs == NULL && a->waiters == NULL;
}

/* Start the countdown to releasing an idle VM port. */
static void check_idle(sl_agent *a) {
  if (a->opts.vm_ports && a->state == ST_READY && is_idle(a))
    uv_timer_start(&a->timer, on_timer, PORT_IDLE_RELEASE_MS, 0);
}

static void release_idle_port(sl_agent *a) {
  if (!is_idle(a)) return; /* busy again: the next idle moment re-arms */
  if (uv_stream_get_write_queue_size((uv_stream_t *)a->pipe) > 0) {
    uv_timer_start(&a->timer, on_timer, PORT_IDLE_RELEASE_MS, 0);
    return;
  }
  SL_DEBUG("agent_client.port_released", "path=%s", a->port_path);
  close_pipe(a);
}

static void on_ready(sl_agent *a) {
  uv_timer_stop(&a->timer);
  a->state = ST_READY;
  a->attempts = 0;
  a->expect_return = 0;
  SL_DEBUG("agent_client.connected", "path=%s", a->path);
  flush_queue(a);
  for (sl_agent_exec *x = a->execs; x != NULL && a->state == ST_READY; x = x->next) {
    if (!x->detached) continue;
    sl_error err = {0};
    if (send_attach(x, &err) < 0) SL_WARN("agent_client.attach", "proc=%lld error=%s",
                                          (long long)x->proc, err.msg);
  }
  notify_waiters(a, NULL);
  check_idle(a);
}

/* Resend the marker every SYNC_RESEND_MS: a stale partial frame from an
 * earlier session may swallow the first ones. */
#define SYNC_RESEND_MS 250

static void send_sync_marker(sl_agent *a) {
  sl_buf b = {0};
  sl_proto_put_sync(&b, a->nonce);
  if (!b.failed) write_bytes(a, b.data, b.len);
  sl_buf_free(&b);
}

static void on_timer(uv_timer_t *t) {
  sl_agent *a = t->data;
  if (a->state == ST_IDLE || a->state == ST_PORT_WAIT) {
    start_connect(a); /* the reconnect delay ended, or a port may be free */
    return;
  }
  if (a->state == ST_READY) {
    release_idle_port(a);
    return;
  }
  if (a->state == ST_SYNCING && uv_now(a->loop) < a->sync_deadline) {
    send_sync_marker(a);
    uv_timer_start(&a->timer, on_timer, SYNC_RESEND_MS, 0);
    return;
  }
  sl_error err;
  sl_error_set(&err, ETIMEDOUT, "connecting to the agent timed out after %lld ms: %s",
               (long long)a->opts.connect_timeout_ms, a->path);
  drop_connection(a, &err);
}

static void on_connect(uv_connect_t *req, int status) {
  sl_agent *a = req->data;
  if (a->pipe == NULL || (uv_stream_t *)a->pipe != req->handle) return; /* abandoned */
  if (status < 0) {
    sl_error err;
    const char *path = a->port_lock >= 0 ? a->port_path : a->path;
    if (status == UV_ENOENT)
      sl_error_set(&err, ENOENT, "agent socket not found: %s", path);
    else if (status == UV_ECONNREFUSED)
      sl_error_set(&err, ECONNREFUSED, "agent not listening: %s", path);
    else
      sl_error_set(&err, -status, "connecting to the agent failed: %s: %s", path,
                   uv_strerror(status));
    drop_connection(a, &err);
    return;
  }
  uv_read_start((uv_stream_t *)a->pipe, on_alloc, on_read);
  if (!a->opts.sync) {
    on_ready(a);
    return;
  }
  a->state = ST_SYNCING;
  if (getrandom(a->nonce, sizeof a->nonce, 0) != (ssize_t)sizeof a->nonce)
    for (size_t i = 0; i < sizeof a->nonce; i++) a->nonce[i] = (uint8_t)rand();
  sl_parser_resync(&a->in);
  a->sync_deadline = uv_now(a->loop) + (uint64_t)a->opts.connect_timeout_ms;
  send_sync_marker(a);
  uv_timer_start(&a->timer, on_timer, SYNC_RESEND_MS, 0);
}

/* For a VM's port set, take a free port first. Returns 1 with the port
 * held, 0 when every port is held and the timer will try again, -1 after
 * failing the connection. */
static int take_port(sl_agent *a) {
  if (!a->opts.vm_ports) return 1;
  uint64_t now = uv_now(a->loop);
  if (a->state != ST_PORT_WAIT) a->port_wait_end = now + (uint64_t)a->opts.connect_timeout_ms;
  unsigned count = sl_agent_ports_count(a->port_dir), port = 0;
  sl_error err = {0};
  int fd = count == 0 ? sl_error_set(&err, ENOENT, "agent socket not found: %s", a->path)
                      : sl_agent_port_try(a->port_dir, count, &port, &err);
  if (fd >= 0 && sl_agent_port_socket(a->port_dir, port, a->port_path, sizeof a->port_path,
                                      &err) < 0) {
    close(fd);
    fd = -err.code;
  }
  if (fd >= 0) {
    a->port_lock = fd;
    return 1;
  }
  if (fd == -EWOULDBLOCK && now < a->port_wait_end) {
    a->state = ST_PORT_WAIT;
    uv_timer_start(&a->timer, on_timer, SL_AGENT_PORT_RETRY_MS, 0);
    return 0;
  }
  if (fd == -EWOULDBLOCK)
    sl_error_set(&err, EBUSY, "all %u agent ports of %s are in use by other host processes "
                 "(waited %lld ms)", count, a->port_dir, (long long)a->opts.connect_timeout_ms);
  drop_connection(a, &err);
  return -1;
}

static void start_connect(sl_agent *a) {
  if (take_port(a) <= 0) return;
  struct connection *conn = calloc(1, sizeof *conn);
  a->pipe = conn ? &conn->pipe : NULL;
  if (a->pipe == NULL) {
    sl_error err;
    sl_error_set(&err, ENOMEM, "out of memory");
    drop_connection(a, &err);
    return;
  }
  uv_pipe_init(a->loop, a->pipe, 0);
  a->pipe->data = a;
  a->open_handles++;
  a->state = ST_CONNECTING;
  conn->req.data = a;
  uv_pipe_connect(&conn->req, a->pipe, a->port_lock >= 0 ? a->port_path : a->path, on_connect);
  uv_timer_start(&a->timer, on_timer, (uint64_t)a->opts.connect_timeout_ms, 0);
}

void sl_agent_connect(sl_agent *a, sl_agent_done_cb cb, void *data) {
  sl_error err;
  if (a->closing) {
    sl_error_set(&err, EINVAL, "agent client is closed");
    cb(a, &err, data);
    return;
  }
  if (a->state == ST_READY) {
    cb(a, NULL, data);
    return;
  }
  waiter *w = calloc(1, sizeof *w);
  if (w == NULL) {
    sl_error_set(&err, ENOMEM, "out of memory");
    cb(a, &err, data);
    return;
  }
  *w = (waiter){.cb = cb, .data = data, .next = a->waiters};
  a->waiters = w;
  if (a->state == ST_IDLE && !a->paused) start_connect(a);
}

/* ---- Losing the connection ---------------------------------------------- */

static void exec_finish(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err);

static int has_detached(sl_agent *a) {
  for (sl_agent_exec *x = a->execs; x != NULL; x = x->next)
    if (x->detached) return 1;
  return 0;
}

static void fail_detached(sl_agent *a, const sl_error *err) {
  sl_agent_exec *x = a->execs;
  while (x != NULL) {
    sl_agent_exec *next = x->next;
    if (x->detached) exec_finish(x, NULL, err);
    x = next;
  }
}

/* Fail the pending requests (only those written on the lost connection
 * when `written_only`), except those of execs that can re-attach.
 * NOTE: an exec whose connection drops before STARTED arrives fails with
 * ECONNRESET, although its process may be running; LIST can find it.
 * The agent's quiesce avoids that: it writes STARTED before it closes. */
static void fail_pending(sl_agent *a, const sl_error *err, int written_only) {
  /* Unlink the requests to fail first: their callbacks may add requests
   * or close the client. */
  pending *failed = NULL, **tail = &failed, **pp = &a->pending;
  while (*pp != NULL) {
    pending *p = *pp;
    if (written_only && p->seq == 0) {
      pp = &p->next;
      continue;
    }
    *pp = p->next;
    p->next = NULL;
    *tail = p;
    tail = &p->next;
  }
  while (failed != NULL) {
    pending *p = failed;
    failed = p->next;
    if (p->exec != NULL && p->exec->proc != 0 && err->code != ECANCELED) {
      p->exec->detached = 1;
    } else if (p->exec != NULL) {
      exec_finish(p->exec, NULL, err);
    } else if (p->cb != NULL) {
      p->cb(a, NULL, err, p->data);
    }
    pending_free(p);
  }
}

/* After CLOSING: put the requests the agent did not read back at the
 * front of the queue, in the order they were written, for the next
 * connection. An exec that already runs re-attaches instead. */
static void requeue_unread(sl_agent *a) {
  queued *head = NULL, **tail = &head;
  for (uint64_t seq = a->peer_read + 1; seq <= a->written; seq++) {
    pending *p = NULL;
    for (pending *it = a->pending; it != NULL && p == NULL; it = it->next)
      if (it->seq == seq) p = it;
    if (p == NULL || p->bytes == NULL || (p->exec != NULL && p->exec->proc != 0)) continue;
    queued *q = queued_new(p->bytes, p->len, p->id);
    if (q == NULL) continue; /* out of memory: this request fails below */
    p->seq = 0;
    *tail = q;
    tail = &q->next;
  }
  if (head == NULL) return;
  *tail = a->queue;
  a->queue = head;
  SL_DEBUG("agent_client.requeued", "path=%s", a->path);
}

static void drop_connection(sl_agent *a, const sl_error *err) {
  int was_ready = a->state == ST_READY;
  uv_timer_stop(&a->timer);
  if (was_ready && a->peer_closing) requeue_unread(a);
  close_pipe(a);
  SL_DEBUG("agent_client.disconnected", "path=%s error=%s", a->path, err->msg);
  sl_error reset = *err;
  if (was_ready && err->code != ECANCELED)
    sl_error_set(&reset, ECONNRESET, "connection to the agent lost: %s", err->msg);
  if (!was_ready) {
    /* Nothing was sent on this connection: queued requests wait for the
     * next one unless no retry is due. A pause that caught the connection
     * before it was ready keeps them, and the execs waiting to re-attach,
     * until sl_agent_resume(). */
    if (a->paused && !a->closing) return;
    a->attempts++;
    /* Execs re-attach, and after a quiesce (CLOSING) queued requests and
     * connect calls wait too: the agent may be restored or resumed
     * meanwhile, and its socket refuses connections until then. */
    int waiting = has_detached(a) ||
                  (a->expect_return && (a->queue != NULL || a->waiters != NULL));
    if (waiting && a->attempts < a->opts.reconnect_attempts && !a->closing) {
      uv_timer_start(&a->timer, on_timer, (uint64_t)a->opts.reconnect_delay_ms, 0);
      return;
    }
    a->expect_return = 0;
    free_queue(a);
    fail_pending(a, err, 0);
    fail_detached(a, err);
    notify_waiters(a, err);
    return;
  }
  fail_pending(a, &reset, 1);
  if ((has_detached(a) || a->queue != NULL) && !a->paused && !a->closing) {
    a->attempts = 0;
    uv_timer_start(&a->timer, on_timer, (uint64_t)a->opts.reconnect_delay_ms, 0);
  }
}

void sl_agent_pause(sl_agent *a) {
  if (a->closing || a->paused) return;
  a->paused = 1;
  if (a->state == ST_IDLE) {
    uv_timer_stop(&a->timer);
    return;
  }
  /* A ready connection stays open, so replies to requests already
   * written still arrive; the agent's quiesce closes it. */
  if (a->state == ST_READY) return;
  sl_error err;
  sl_error_set(&err, ECONNRESET, "agent client paused");
  drop_connection(a, &err);
}

void sl_agent_resume(sl_agent *a) {
  if (a->closing || !a->paused) return;
  a->paused = 0;
  a->attempts = 0;
  if (a->state == ST_READY) {
    flush_queue(a);
    return;
  }
  if (a->state == ST_IDLE && (a->queue != NULL || a->waiters != NULL || has_detached(a)))
    start_connect(a);
}

void sl_agent_close(sl_agent *a) { sl_agent_close_with(a, NULL); }

void sl_agent_close_with(sl_agent *a, const sl_error *reason) {
  if (a == NULL || a->closing) return;
  a->closing = 1;
  sl_error err;
  if (reason != NULL)
    err = *reason;
  else
    sl_error_set(&err, ECANCELED, "agent client closed");
  uv_timer_stop(&a->timer);
  close_pipe(a);
  free_queue(a);
  fail_pending(a, &err, 0);
  fail_detached(a, &err);
  notify_waiters(a, &err);
  uv_close((uv_handle_t *)&a->timer, on_handle_closed);
}

/* ---- Exec --------------------------------------------------------------- */

static void ignore_reply(sl_agent *a, const sl_frame *msg, const sl_error *err, void *data) {
  (void)a, (void)msg, (void)err, (void)data;
}

static void exec_finish(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err) {
  sl_agent *a = x->a;
  for (sl_agent_exec **pp = &a->execs; *pp != NULL; pp = &(*pp)->next)
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  for (pending *p = a->pending; p != NULL; p = p->next)
    if (p->exec == x) p->exec = NULL, p->cb = NULL;
  if (x->cbs.on_exit != NULL) x->cbs.on_exit(x, st, err, x->data);
  free(x);
}

static void send_ack(sl_agent_exec *x) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_ACK, 0);
  sl_frame_put_i64(&b, SL_F_PROC, x->proc);
  sl_frame_put_i64(&b, SL_F_STDOUT_OFFSET, (int64_t)x->delivered[1]);
  sl_frame_put_i64(&b, SL_F_STDERR_OFFSET, (int64_t)x->delivered[2]);
  if (sl_frame_end(&b, start, NULL) == 0 && request(x->a, &b, NULL, NULL, NULL, NULL) == 0) {
    x->acked[1] = x->delivered[1];
    x->acked[2] = x->delivered[2];
  }
  sl_buf_free(&b);
}

static void exec_output(sl_agent_exec *x, const sl_frame *f) {
  int64_t fd = 0, offset = 0;
  const uint8_t *bytes = NULL;
  size_t len = 0;
  sl_frame_get_i64(f, SL_F_FD, &fd, NULL);
  sl_frame_get_i64(f, SL_F_OFFSET, &offset, NULL);
  sl_frame_get_bytes(f, SL_F_DATA, &bytes, &len);
  if ((fd != 1 && fd != 2) || offset < 0) return;
  uint64_t end = (uint64_t)offset + len;
  /* Bytes before `delivered` were passed on already; skip them so that a
   * repeated event can never duplicate output. */
  if (end <= x->delivered[fd]) return;
  uint64_t first = x->delivered[fd] > (uint64_t)offset ? x->delivered[fd] : (uint64_t)offset;
  size_t skip = (size_t)(first - (uint64_t)offset);
  x->delivered[fd] = end;
  /* Ack before the callback, which may close the client and free x. */
  if (x->delivered[fd] - x->acked[fd] >= x->ack_step) send_ack(x);
  if (x->cbs.on_output != NULL) x->cbs.on_output(x, (int)fd, bytes + skip, len - skip, x->data);
}

static void exec_exit(sl_agent_exec *x, const sl_frame *f) {
  sl_exit_status st = {.proc = x->proc, .pid = x->pid};
  int64_t v;
  if (sl_frame_get_i64(f, SL_F_EXIT_CODE, &v, NULL) == 1) {
    st.exited = 1;
    st.exit_code = (int)v;
  }
  if (sl_frame_get_i64(f, SL_F_SIGNAL, &v, NULL) == 1) st.signal = (int)v;
  if (sl_frame_get_i64(f, SL_F_TIMED_OUT, &v, NULL) == 1) st.timed_out = (int)v;
  st.stdout_bytes = x->delivered[1];
  st.stderr_bytes = x->delivered[2];
  /* The exit was delivered: the agent may forget the process. */
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_RELEASE, 0);
  sl_frame_put_i64(&b, SL_F_PROC, x->proc);
  if (sl_frame_end(&b, start, NULL) == 0) request(x->a, &b, ignore_reply, NULL, NULL, NULL);
  sl_buf_free(&b);
  exec_finish(x, &st, NULL);
}

static void exec_started(sl_agent_exec *x, const sl_frame *f) {
  int64_t proc = 0, pid = 0, size = 0;
  sl_frame_get_i64(f, SL_F_PROC, &proc, NULL);
  sl_frame_get_i64(f, SL_F_PID, &pid, NULL);
  sl_frame_get_i64(f, SL_F_BUFFER_SIZE, &size, NULL);
  x->ack_step = size > 0 ? (uint64_t)size / 4 : 65536;
  int first = x->proc == 0;
  x->proc = proc;
  x->pid = pid;
  if (first && x->cbs.on_start != NULL) x->cbs.on_start(x, proc, pid, x->data);
}

static void on_exec_reply(sl_agent *a, const sl_frame *f, const sl_error *err, void *data) {
  (void)a;
  sl_agent_exec *x = data;
  if (err != NULL) {
    exec_finish(x, NULL, err);
    return;
  }
  switch (f->type) {
  case SL_MSG_STARTED: exec_started(x, f); break;
  case SL_MSG_OUTPUT: exec_output(x, f); break;
  case SL_MSG_EXIT: exec_exit(x, f); break;
  default: {
    sl_error e;
    sl_error_set(&e, EPROTO, "unexpected %s reply to exec", sl_msg_name(f->type));
    if (sl_msg_is_final(f->type)) exec_finish(x, NULL, &e);
  }
  }
}

static sl_agent_exec *exec_new(sl_agent *a, const sl_exec_callbacks *cbs, void *data) {
  sl_agent_exec *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->a = a;
  x->cbs = *cbs;
  x->data = data;
  x->ack_step = 65536;
  x->next = a->execs;
  a->execs = x;
  return x;
}

static void exec_unlink(sl_agent_exec *x) {
  sl_agent *a = x->a;
  for (sl_agent_exec **pp = &a->execs; *pp != NULL; pp = &(*pp)->next)
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  free(x);
  if (!a->closing) check_idle(a);
}

static void put_exec_fields(sl_buf *b, const sl_exec_spec *spec) {
  if (spec->command != NULL) sl_frame_put_str(b, SL_F_COMMAND, spec->command);
  sl_frame_put_strv(b, SL_F_ARGV, spec->argv);
  sl_frame_put_strv(b, SL_F_ENV, spec->env);
  if (spec->cwd != NULL) sl_frame_put_str(b, SL_F_CWD, spec->cwd);
  if (spec->stdin_data != NULL) sl_frame_put_bytes(b, SL_F_STDIN, spec->stdin_data, spec->stdin_len);
  if (spec->stdin_open) sl_frame_put_i64(b, SL_F_STDIN_OPEN, 1);
  if (spec->timeout_ms > 0) sl_frame_put_i64(b, SL_F_TIMEOUT_MS, spec->timeout_ms);
  if (spec->buffer_size > 0) sl_frame_put_i64(b, SL_F_BUFFER_SIZE, spec->buffer_size);
  sl_frame_put_i64(b, SL_F_STREAM, 1);
}

int sl_agent_exec_start(sl_agent *a, const sl_exec_spec *spec, const sl_exec_callbacks *cbs,
                        void *data, sl_agent_exec **out, sl_error *err) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  put_exec_fields(&b, spec);
  int rc = sl_frame_end(&b, start, err);
  sl_agent_exec *x = rc == 0 ? exec_new(a, cbs, data) : NULL;
  if (rc == 0 && x == NULL) rc = sl_error_set(err, ENOMEM, "out of memory");
  if (rc == 0) rc = request(a, &b, on_exec_reply, x, x, err);
  sl_buf_free(&b);
  if (rc < 0) {
    if (x != NULL) exec_unlink(x);
    return rc;
  }
  if (out != NULL) *out = x;
  return 0;
}

static int send_attach(sl_agent_exec *x, sl_error *err) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_ATTACH, 0);
  sl_frame_put_i64(&b, SL_F_PROC, x->proc);
  sl_frame_put_i64(&b, SL_F_STDOUT_OFFSET, (int64_t)x->delivered[1]);
  sl_frame_put_i64(&b, SL_F_STDERR_OFFSET, (int64_t)x->delivered[2]);
  int rc = sl_frame_end(&b, start, err);
  if (rc == 0) rc = request(x->a, &b, on_exec_reply, x, x, err);
  sl_buf_free(&b);
  if (rc == 0) x->detached = 0;
  return rc;
}

int sl_agent_exec_attach(sl_agent *a, int64_t proc, uint64_t stdout_offset,
                         uint64_t stderr_offset, const sl_exec_callbacks *cbs, void *data,
                         sl_agent_exec **out, sl_error *err) {
  if (proc <= 0) return sl_error_set(err, EINVAL, "invalid process id: %lld", (long long)proc);
  sl_agent_exec *x = exec_new(a, cbs, data);
  if (x == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  x->proc = proc;
  x->delivered[1] = x->acked[1] = stdout_offset;
  x->delivered[2] = x->acked[2] = stderr_offset;
  int rc = send_attach(x, err);
  if (rc < 0) {
    exec_unlink(x);
    return rc;
  }
  if (out != NULL) *out = x;
  return 0;
}

static void send_detach(sl_agent *a, int64_t proc) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_DETACH, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  if (sl_frame_end(&b, start, NULL) == 0) request(a, &b, ignore_reply, NULL, NULL, NULL);
  sl_buf_free(&b);
}

/* Follows an exec cancelled before its process id arrived: detach as soon
 * as it does, so the agent stops streaming to a request without a reader. */
static void detach_when_started(sl_agent *a, const sl_frame *msg, const sl_error *err,
                                void *data) {
  (void)err, (void)data;
  int64_t proc = 0;
  if (msg != NULL && msg->type == SL_MSG_STARTED &&
      sl_frame_get_i64(msg, SL_F_PROC, &proc, NULL) == 1)
    send_detach(a, proc);
}

void sl_agent_exec_cancel(sl_agent_exec *x) {
  sl_agent *a = x->a;
  for (pending *p = a->pending; p != NULL; p = p->next) {
    if (p->exec != x) continue;
    if (x->proc == 0) {
      p->exec = NULL;
      p->cb = detach_when_started;
    } else {
      remove_pending(a, p);
      pending_free(p);
      send_detach(a, x->proc);
    }
    break;
  }
  sl_error err;
  sl_error_set(&err, ECANCELED, "exec cancelled");
  exec_finish(x, NULL, &err);
}

int64_t sl_agent_exec_proc(const sl_agent_exec *x) { return x->proc; }

static int proc_request(sl_agent *a, uint8_t type, int64_t proc, const void *bytes, size_t len,
                        int64_t signal, sl_agent_reply_cb cb, void *data, sl_error *err) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, type, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  if (bytes != NULL) sl_frame_put_bytes(&b, SL_F_DATA, bytes, len);
  if (signal > 0) sl_frame_put_i64(&b, SL_F_SIGNAL, signal);
  int rc = sl_frame_end(&b, start, err);
  if (rc == 0) rc = request(a, &b, cb ? cb : ignore_reply, data, NULL, err);
  sl_buf_free(&b);
  return rc;
}

int sl_agent_write_stdin(sl_agent *a, int64_t proc, const void *bytes, size_t len,
                         sl_agent_reply_cb cb, void *data, sl_error *err) {
  return proc_request(a, SL_MSG_WRITE_STDIN, proc, bytes ? bytes : "", len, 0, cb, data, err);
}

int sl_agent_close_stdin(sl_agent *a, int64_t proc, sl_agent_reply_cb cb, void *data,
                         sl_error *err) {
  return proc_request(a, SL_MSG_CLOSE_STDIN, proc, NULL, 0, 0, cb, data, err);
}

int sl_agent_signal(sl_agent *a, int64_t proc, int signal, sl_agent_reply_cb cb, void *data,
                    sl_error *err) {
  if (signal <= 0) return sl_error_set(err, EINVAL, "invalid signal number: %d", signal);
  return proc_request(a, SL_MSG_SIGNAL, proc, NULL, 0, signal, cb, data, err);
}
