/* Client connections: reading requests, queueing replies, and the session
 * rules of the stream fd (hangup, return, sync). */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

/* How often a hung-up stream fd is checked for the peer's return, in case
 * the device does not wake epoll when it comes back. */
#define STREAM_RECHECK_MS 200
#define READ_CHUNK (64u << 10)

conn *conn_new(int fd, int stream) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    SL_ERROR("agent.conn", "error=out of memory fd=%d", fd);
    return NULL;
  }
  c->fd = fd;
  c->stream = stream;
  c->serial = ++g_agent.next_conn_serial;
  c->w = (watch){.kind = W_CONN, .obj = c};
  sl_parser_init(&c->in, SL_PROTO_MAX_FRAME);
  c->events = EPOLLIN;
  watch_add(fd, c->events, &c->w);
  c->next = g_agent.conns;
  g_agent.conns = c;
  SL_DEBUG("agent.conn.open", "conn=%lu stream=%d", c->serial, stream);
  return c;
}

/* Forget everything tied to the current peer: the next peer of a stream fd
 * starts a fresh session. */
static void reset_session(conn *c) {
  procs_forget_conn(c);
  sl_parser_reset(&c->in);
  c->out.len = 0;
  c->out_pos = 0;
  c->close_after_flush = 0;
}

static void stream_down(conn *c, const char *why) {
  SL_INFO("agent.stream.down", "conn=%lu reason=%s", c->serial, why);
  reset_session(c);
  c->down = 1;
  c->recheck_ms = now_ms() + STREAM_RECHECK_MS;
  /* Edge-triggered, so a device that keeps reporting the hangup does not
   * spin the loop; a wakeup or the recheck timer brings it back. */
  c->events = EPOLLIN | EPOLLET;
  watch_mod(c->fd, c->events, &c->w);
}

static void stream_check_up(conn *c) {
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  if (poll(&pfd, 1, 0) < 0) return;
  if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) {
    c->recheck_ms = now_ms() + STREAM_RECHECK_MS;
    return;
  }
  SL_INFO("agent.stream.up", "conn=%lu", c->serial);
  c->down = 0;
  c->events = 0;
  conn_update_events(c);
}

void conn_kill(conn *c, const char *why) {
  if (c->dead) return;
  if (c->stream) {
    stream_down(c, why);
    return;
  }
  SL_DEBUG("agent.conn.close", "conn=%lu reason=%s", c->serial, why);
  if (g_agent.quiesce_conn == c) g_agent.quiesce_conn = NULL;
  procs_forget_conn(c);
  watch_del(c->fd);
  close(c->fd);
  c->fd = -1;
  c->dead = 1;
}

void conns_reap(void) {
  conn **pp = &g_agent.conns;
  while (*pp != NULL) {
    conn *c = *pp;
    if (!c->dead) {
      pp = &c->next;
      continue;
    }
    *pp = c->next;
    sl_parser_free(&c->in);
    sl_buf_free(&c->out);
    free(c);
  }
}

void conn_update_events(conn *c) {
  if (c->dead || c->down) return;
  size_t pending = c->out.len - c->out_pos;
  uint32_t events = 0;
  if (pending < CONN_PAUSE_INPUT && !c->close_after_flush) events |= EPOLLIN;
  if (pending > 0) events |= EPOLLOUT;
  if (events == c->events) return;
  c->events = events;
  watch_mod(c->fd, events, &c->w);
}

static void after_flushed(conn *c) {
  if (!c->close_after_flush) return;
  if (c->stream) {
    reset_session(c);
  } else {
    conn_kill(c, "quiesce");
  }
}

void conn_flush(conn *c) {
  while (!c->dead && !c->down && c->out_pos < c->out.len) {
    ssize_t n = c->stream ? write(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos)
                          : send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos,
                                 MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      conn_kill(c, n < 0 ? strerror(errno) : "write returned 0");
      return;
    }
    c->out_pos += (size_t)n;
  }
  if (c->dead || c->down) return;
  if (c->out_pos == c->out.len) {
    c->out.len = c->out_pos = 0;
    after_flushed(c);
  } else if (c->out_pos > (1u << 20) && c->out_pos > c->out.len / 2) {
    sl_buf_consume(&c->out, c->out_pos);
    c->out_pos = 0;
  }
  conn_update_events(c);
}

/* ---- Replies ------------------------------------------------------------ */

static sl_buf discard_buf;

/* A reply to a missing connection (NULL, closed or down) is built into a
 * scratch buffer and dropped. */
static sl_buf *reply_buf(conn *c) {
  if (c == NULL || c->dead || c->down || c->close_after_flush) {
    discard_buf.len = 0;
    return &discard_buf;
  }
  return &c->out;
}

reply reply_begin(conn *c, uint8_t type, uint32_t id) {
  reply r = {.c = c, .b = reply_buf(c)};
  r.start = sl_frame_begin(r.b, type, id);
  return r;
}

void reply_end(reply *r) {
  uint32_t id = 0;
  if (r->b->len >= r->start + SL_PROTO_HEADER)
    memcpy(&id, r->b->data + r->start + 5, 4); /* the id bytes, for an error reply */
  sl_error err = {0};
  int rc = sl_frame_end(r->b, r->start, &err);
  if (r->b == &discard_buf) {
    r->b->len = 0;
    return;
  }
  if (rc < 0) {
    SL_ERROR("agent.reply", "conn=%lu error=%s", r->c->serial, err.msg);
    reply_error(r->c, id, err.code, "%s", err.msg);
    return;
  }
  conn_update_events(r->c);
}

void reply_ok(conn *c, uint32_t id) {
  reply r = reply_begin(c, SL_MSG_OK, id);
  reply_end(&r);
}

void reply_error(conn *c, uint32_t id, int code, const char *fmt, ...) {
  char msg[SL_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sl_buf *b = reply_buf(c);
  size_t start = sl_frame_begin(b, SL_MSG_ERROR, id);
  sl_frame_put_str(b, SL_F_CODE, sl_errname(code));
  sl_frame_put_str(b, SL_F_MESSAGE, msg);
  if (sl_frame_end(b, start, NULL) == 0 && b != &discard_buf) conn_update_events(c);
  if (b == &discard_buf) b->len = 0;
}

void reply_sl_error(conn *c, uint32_t id, const sl_error *err) {
  reply_error(c, id, err->code, "%s", err->msg);
}

/* ---- Requests ----------------------------------------------------------- */

static void handle_sync(conn *c, const sl_frame *f) {
  SL_DEBUG("agent.sync", "conn=%lu", c->serial);
  uint8_t nonce[SL_PROTO_SYNC_NONCE];
  memcpy(nonce, f->body, sizeof nonce);
  reset_session(c);
  sl_proto_put_sync(&c->out, nonce);
  conn_update_events(c);
}

static void handle_frame(conn *c, const sl_frame *f) {
  SL_DEBUG("agent.request", "conn=%lu id=%u type=%s", c->serial, f->id, sl_msg_name(f->type));
  if (f->type != SL_MSG_SYNC) c->frames_read++;
  if (f->type == SL_MSG_SYNC) {
    handle_sync(c, f);
  } else if (f->type >= SL_MSG_EXEC && f->type <= SL_MSG_DETACH) {
    proc_handle(c, f);
  } else if (f->type >= SL_MSG_FILE_READ && f->type <= SL_MSG_RENAME) {
    files_handle(c, f);
  } else if (f->type < 0x80) {
    system_handle(c, f);
  } else {
    reply_error(c, f->id, EPROTO, "not a request: message type 0x%02x", f->type);
  }
}

/* Log malformed input at most PROTOCOL_WARN_BURST times per minute, so a
 * misbehaving client cannot flood the log; the rest are counted. */
#define PROTOCOL_WARN_BURST 10

static void warn_malformed(conn *c, const sl_error *err) {
  static int64_t window_start;
  static int logged;
  static unsigned long suppressed;
  int64_t now = now_ms();
  if (now - window_start >= 60000) {
    if (suppressed > 0)
      SL_WARN("agent.protocol", "suppressed=%lu reason=rate limit", suppressed);
    window_start = now;
    logged = 0;
    suppressed = 0;
  }
  if (logged >= PROTOCOL_WARN_BURST) {
    suppressed++;
    return;
  }
  logged++;
  SL_WARN("agent.protocol", "conn=%lu error=%s", c->serial, err->msg);
}

static void on_malformed(conn *c, const sl_error *err) {
  warn_malformed(c, err);
  if (!c->stream) {
    conn_kill(c, "malformed frame");
    return;
  }
  /* A byte stream cannot be dropped: forget the session and wait for the
   * peer's next sync marker. */
  reset_session(c);
  sl_parser_resync(&c->in);
}

static void process_input(conn *c) {
  sl_frame f;
  sl_error err = {0};
  while (!c->dead && !c->down && !c->close_after_flush &&
         c->out.len - c->out_pos < CONN_PAUSE_INPUT) {
    int rc = sl_parser_next(&c->in, &f, &err);
    if (rc == 0) return;
    if (rc < 0) {
      on_malformed(c, &err);
      return;
    }
    handle_frame(c, &f);
  }
}

static void read_input(conn *c) {
  for (;;) {
    uint8_t *space = sl_parser_space(&c->in, READ_CHUNK);
    if (space == NULL) {
      conn_kill(c, "out of memory");
      return;
    }
    ssize_t n = read(c->fd, space, READ_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      conn_kill(c, n == 0 ? "end of stream" : strerror(errno));
      return;
    }
    sl_parser_commit(&c->in, (size_t)n);
    process_input(c);
    if (c->dead || c->down || !(c->events & EPOLLIN)) return;
  }
}

static void conn_drain(conn *c);

void conn_on_event(conn *c, uint32_t events) {
  if (c->down) {
    stream_check_up(c);
    if (c->down) return;
  }
  if (events & EPOLLOUT) conn_flush(c);
  if (!c->dead && !c->down && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_input(c);
  if (!c->dead && !c->down) {
    process_input(c); /* frames left over from a paused read */
    procs_pump(c);
    conn_flush(c);
  }
  if (c->draining) conn_drain(c);
}

void conns_check_timers(int64_t now, int64_t *next) {
  for (conn *c = g_agent.conns; c != NULL; c = c->next) {
    if (c->dead || !c->down) continue;
    if (c->recheck_ms <= now) {
      stream_check_up(c);
      if (!c->down) {
        read_input(c);
        continue;
      }
    }
    if (*next < 0 || c->recheck_ms < *next) *next = c->recheck_ms;
  }
}

/* ---- Quiesce ----------------------------------------------------------- */

/* Whether bytes wait in the socket that have not been read yet. */
static int socket_has_input(const conn *c) {
  char byte;
  return recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Serve what a draining connection has sent (a request it was sending
 * when the quiesce arrived included), then close it once its replies are
 * out. The last message, CLOSING, carries the number of request frames
 * read, so the client sends the others again on its next connection.
 * Processes it follows are detached by the close, and its client
 * re-attaches later at the offsets it has. */
static void conn_drain(conn *c) {
  if (c->dead || c->close_after_flush) return;
  read_input(c);
  if (c->dead) return;
  /* A partial frame, or input left while the output is too large. */
  if (c->in.end > c->in.start || socket_has_input(c)) return;
  reply r = reply_begin(c, SL_MSG_CLOSING, 0);
  sl_frame_put_i64(r.b, SL_F_COUNT, (int64_t)c->frames_read);
  reply_end(&r);
  c->close_after_flush = 1;
  conn_flush(c);
}

void conns_quiesce(conn *requester, uint32_t id) {
  if (g_agent.quiesce_conn != NULL) {
    /* An earlier quiesce still drains: this one takes over. */
    conn *earlier = g_agent.quiesce_conn;
    g_agent.quiesce_conn = NULL;
    reply_ok(earlier, g_agent.quiesce_id);
    earlier->close_after_flush = 1;
    conn_flush(earlier);
  }
  for (conn *c = g_agent.conns; c != NULL; c = c->next) {
    if (c->dead || c == requester) continue;
    if (c->stream) {
      reset_session(c);
      continue;
    }
    c->draining = 1;
    conn_drain(c);
  }
  g_agent.quiesce_conn = requester;
  g_agent.quiesce_id = id;
  g_agent.drain_until_ms = now_ms() + AGENT_QUIESCE_DRAIN_MS;
  int64_t next = -1;
  quiesce_check(now_ms(), &next);
}

void quiesce_check(int64_t now, int64_t *next) {
  conn *requester = g_agent.quiesce_conn;
  if (requester == NULL) return;
  int draining = 0;
  for (conn *c = g_agent.conns; c != NULL; c = c->next)
    if (!c->dead && c->draining) draining++;
  if (draining > 0 && now < g_agent.drain_until_ms) {
    if (*next < 0 || g_agent.drain_until_ms < *next) *next = g_agent.drain_until_ms;
    return;
  }
  if (draining > 0) {
    SL_WARN("agent.quiesce.drain", "conns=%d error=replies not taken within %d ms action=close",
            draining, AGENT_QUIESCE_DRAIN_MS);
    for (conn *c = g_agent.conns; c != NULL; c = c->next)
      if (!c->dead && c->draining) conn_kill(c, "quiesce drain timed out");
  }
  g_agent.quiesce_conn = NULL;
  reply_ok(requester, g_agent.quiesce_id);
  requester->close_after_flush = 1;
  conn_flush(requester);
}
