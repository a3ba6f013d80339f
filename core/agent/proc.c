/* Processes started by the agent: their pipes, output buffers, stdin
 * queue, attachments, waiters, timeouts and exit statuses. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

proc *proc_find(int64_t id) {
  for (proc *p = g_agent.procs; p != NULL; p = p->next)
    if (p->id == id && !p->dead) return p;
  return NULL;
}

/* ---- Output buffers ----------------------------------------------------- */

static size_t ring_len(const ring *r) { return (size_t)(r->end - r->start); }

/* Release everything before `offset`, which the caller has checked to lie
 * in [start, end]. */
static void ring_release(ring *r, uint64_t offset) {
  size_t drop = (size_t)(offset - r->start);
  if (drop == 0) return;
  size_t keep = ring_len(r) - drop;
  memmove(r->data, r->data + drop, keep);
  r->start = offset;
}

/* Make room for up to `want` more bytes within the capacity; returns the
 * number of bytes that may be written at data + ring_len(). */
static size_t ring_space(ring *r, size_t want, size_t *alloc) {
  size_t len = ring_len(r);
  size_t room = r->cap - len;
  if (want > room) want = room;
  if (*alloc - len >= want) return want;
  size_t size = *alloc ? *alloc : 4096;
  while (size - len < want) size *= 2;
  if (size > r->cap) size = r->cap;
  uint8_t *data = realloc(r->data, size);
  if (data == NULL) return *alloc - len;
  r->data = data;
  *alloc = size;
  return want;
}

/* ---- Epoll interest of the pipes ---------------------------------------- */

static void pipe_set_events(proc *p, int i, uint32_t events) {
  if (p->fds[i] < 0 || p->fd_events[i] == events) return;
  if (events == 0) {
    /* Removed, not modified to 0: a hung-up pipe reports EPOLLHUP even
     * with no interest, which would spin the loop while output is paused. */
    watch_del(p->fds[i]);
  } else if (p->fd_events[i] == 0) {
    watch_add(p->fds[i], events, &p->w[i]);
  } else {
    watch_mod(p->fds[i], events, &p->w[i]);
  }
  p->fd_events[i] = events;
}

static void pipe_close(proc *p, int i) {
  if (p->fds[i] < 0) return;
  pipe_set_events(p, i, 0);
  close(p->fds[i]);
  p->fds[i] = -1;
}

static void output_update_interest(proc *p, int i) {
  int full = ring_len(&p->out[i]) >= p->out[i].cap;
  pipe_set_events(p, i, full ? 0 : EPOLLIN);
}

int output_release(proc *p, int i, uint64_t offset, sl_error *err) {
  ring *r = &p->out[i];
  if (offset < r->start)
    return sl_error_set(err, ERANGE, "output of process %lld before offset %llu was released",
                        (long long)p->id, (unsigned long long)r->start);
  if (offset > r->end)
    return sl_error_set(err, EINVAL, "offset %llu is past the output of process %lld (%llu)",
                        (unsigned long long)offset, (long long)p->id,
                        (unsigned long long)r->end);
  ring_release(r, offset);
  if (ring_len(r) == 0 && p->out_alloc[i] > 65536) {
    free(r->data);
    r->data = NULL;
    p->out_alloc[i] = 0;
  }
  if (p->fds[i] >= 0) output_update_interest(p, i);
  return 0;
}

/* ---- Events to clients -------------------------------------------------- */

void put_exit_fields(sl_buf *b, const proc *p) {
  sl_frame_put_i64(b, SL_F_PROC, p->id);
  sl_frame_put_i64(b, SL_F_PID, p->pid);
  if (WIFEXITED(p->status)) sl_frame_put_i64(b, SL_F_EXIT_CODE, WEXITSTATUS(p->status));
  if (WIFSIGNALED(p->status)) sl_frame_put_i64(b, SL_F_SIGNAL, WTERMSIG(p->status));
  sl_frame_put_i64(b, SL_F_TIMED_OUT, p->timed_out);
  sl_frame_put_i64(b, SL_F_STDOUT_OFFSET, (int64_t)p->out[1].end);
  sl_frame_put_i64(b, SL_F_STDERR_OFFSET, (int64_t)p->out[2].end);
}

void send_exit(conn *c, uint32_t id, const proc *p) {
  reply r = reply_begin(c, SL_MSG_EXIT, id);
  put_exit_fields(r.b, p);
  reply_end(&r);
}

/* NOTE: a streamed exec ends only at EOF on both pipes, so a background
 * child that keeps stdout open (`server &`) holds the request open until
 * it exits or the timeout kills the process group. */
static int output_done(const proc *p) {
  return !p->running && p->fds[1] < 0 && p->fds[2] < 0 && p->sent[1] == p->out[1].end &&
         p->sent[2] == p->out[2].end;
}

static void send_output(conn *c, proc *p, int i) {
  ring *buf = &p->out[i];
  if (p->sent[i] < buf->start) p->sent[i] = buf->start; /* released by a READ elsewhere */
  while (p->sent[i] < buf->end && c->out.len - c->out_pos < CONN_OUTPUT_HIGH) {
    size_t n = (size_t)(buf->end - p->sent[i]);
    if (n > OUTPUT_EVENT_MAX) n = OUTPUT_EVENT_MAX;
    reply r = reply_begin(c, SL_MSG_OUTPUT, p->att_id);
    sl_frame_put_i64(r.b, SL_F_PROC, p->id);
    sl_frame_put_i64(r.b, SL_F_FD, i);
    sl_frame_put_i64(r.b, SL_F_OFFSET, (int64_t)p->sent[i]);
    sl_frame_put_bytes(r.b, SL_F_DATA, buf->data + (p->sent[i] - buf->start), n);
    reply_end(&r);
    p->sent[i] += n;
  }
}

/* Send what the attachment has not seen yet, then the exit once all output
 * is out. */
static void pump(proc *p) {
  conn *c = p->att;
  /* A connection being closed (for a quiesce) gets no more output: its
   * client re-attaches at the offsets it has. */
  if (c == NULL || c->dead || c->down || c->close_after_flush || c->draining) return;
  send_output(c, p, 1);
  send_output(c, p, 2);
  if (output_done(p)) {
    send_exit(c, p->att_id, p);
    p->att = NULL;
  }
}

void procs_pump(conn *c) {
  for (proc *p = g_agent.procs; p != NULL; p = p->next)
    if (!p->dead && p->att == c) pump(p);
}

void pump_and_flush(proc *p) {
  conn *c = p->att;
  pump(p);
  if (c != NULL) conn_flush(c);
}

void detach(proc *p, int code, const char *why) {
  if (p->att == NULL) return;
  reply_error(p->att, p->att_id, code, "process %lld: %s", (long long)p->id, why);
  conn_flush(p->att);
  p->att = NULL;
}

/* ---- Stdin -------------------------------------------------------------- */

static void stdin_fail_all(proc *p, int code) {
  while (p->stdin_head != NULL) {
    stdin_chunk *ch = p->stdin_head;
    p->stdin_head = ch->next;
    if (ch->c != NULL) reply_error(ch->c, ch->id, code, "stdin of process %lld is closed",
                                   (long long)p->id);
    free(ch->data);
    free(ch);
  }
  if (p->close_c != NULL) reply_ok(p->close_c, p->close_id);
  p->close_c = NULL;
  p->stdin_close_pending = 0;
  pipe_close(p, 0);
}

void stdin_write_some(proc *p) {
  while (p->stdin_head != NULL && p->fds[0] >= 0) {
    stdin_chunk *ch = p->stdin_head;
    ssize_t n = ch->len > ch->pos ? write(p->fds[0], ch->data + ch->pos, ch->len - ch->pos) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pipe_set_events(p, 0, EPOLLOUT);
      return;
    }
    if (n < 0) {
      stdin_fail_all(p, EPIPE);
      return;
    }
    ch->pos += (size_t)n;
    if (ch->pos < ch->len) continue;
    p->stdin_head = ch->next;
    if (ch->c != NULL) reply_ok(ch->c, ch->id);
    free(ch->data);
    free(ch);
  }
  if (p->fds[0] < 0) return;
  pipe_set_events(p, 0, 0);
  if (p->stdin_close_pending) {
    pipe_close(p, 0);
    p->stdin_close_pending = 0;
    if (p->close_c != NULL) reply_ok(p->close_c, p->close_id);
    p->close_c = NULL;
  }
}

int stdin_queue(proc *p, conn *c, uint32_t id, const uint8_t *data, size_t len) {
  stdin_chunk *ch = calloc(1, sizeof *ch);
  uint8_t *copy = malloc(len ? len : 1);
  if (ch == NULL || copy == NULL) {
    free(ch);
    free(copy);
    return -ENOMEM;
  }
  memcpy(copy, data, len);
  *ch = (stdin_chunk){.c = c, .id = id, .data = copy, .len = len};
  stdin_chunk **pp = &p->stdin_head;
  while (*pp != NULL) pp = &(*pp)->next;
  *pp = ch;
  stdin_write_some(p);
  return 0;
}

/* ---- Pipe events, reaping, timers --------------------------------------- */

static void read_output(proc *p, int i) {
  ring *r = &p->out[i];
  for (;;) {
    size_t room = ring_space(r, OUTPUT_EVENT_MAX, &p->out_alloc[i]);
    if (room == 0) break;
    ssize_t n = read(p->fds[i], r->data + ring_len(r), room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      pipe_close(p, i);
      break;
    }
    r->end += (uint64_t)n;
    if ((size_t)n < room) break;
  }
  if (p->fds[i] >= 0) output_update_interest(p, i);
  pump_and_flush(p);
}

void proc_on_pipe(proc *p, int i, uint32_t events) {
  if (i == 0) {
    if (events & (EPOLLERR | EPOLLHUP))
      stdin_fail_all(p, EPIPE);
    else
      stdin_write_some(p);
    return;
  }
  read_output(p, i);
}

static void notify_waiters(proc *p) {
  while (p->waiters != NULL) {
    waiter *w = p->waiters;
    p->waiters = w->next;
    send_exit(w->c, w->id, p);
    conn_flush(w->c);
    free(w);
  }
}

static void on_exit_status(proc *p, int status) {
  p->running = 0;
  p->status = status;
  p->deadline_ms = 0;
  SL_DEBUG("agent.proc.exit", "proc=%lld pid=%d status=%d", (long long)p->id, (int)p->pid,
           status);
  /* After a timeout, output pipes still held open by escaped descendants
   * must not keep the request open. */
  if (p->timed_out) {
    read_output(p, 1);
    read_output(p, 2);
    pipe_close(p, 1);
    pipe_close(p, 2);
  }
  notify_waiters(p);
  pump_and_flush(p);
}

void procs_reap_children(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    proc *p = g_agent.procs;
    while (p != NULL && !(p->pid == pid && p->running)) p = p->next;
    if (p == NULL) {
      SL_DEBUG("agent.reap", "pid=%d status=%d orphan=1", (int)pid, status);
      continue;
    }
    on_exit_status(p, status);
  }
}

static void kill_for_timeout(proc *p) {
  SL_INFO("agent.proc.timeout", "proc=%lld pid=%d", (long long)p->id, (int)p->pid);
  p->timed_out = 1;
  p->deadline_ms = 0;
  kill(-p->pid, SIGKILL);
  kill(p->pid, SIGKILL);
}

static void expire_waiters(proc *p, int64_t now, int64_t *next) {
  waiter **pp = &p->waiters;
  while (*pp != NULL) {
    waiter *w = *pp;
    if (w->deadline_ms == 0 || w->deadline_ms > now) {
      if (w->deadline_ms && (*next < 0 || w->deadline_ms < *next)) *next = w->deadline_ms;
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    reply_error(w->c, w->id, ETIMEDOUT, "wait for process %lld timed out", (long long)p->id);
    conn_flush(w->c);
    free(w);
  }
}

void procs_check_timers(int64_t now, int64_t *next) {
  for (proc *p = g_agent.procs; p != NULL; p = p->next) {
    if (p->dead) continue;
    if (p->running && p->deadline_ms) {
      if (p->deadline_ms <= now)
        kill_for_timeout(p);
      else if (*next < 0 || p->deadline_ms < *next)
        *next = p->deadline_ms;
    }
    expire_waiters(p, now, next);
  }
}

void procs_forget_conn(conn *c) {
  for (proc *p = g_agent.procs; p != NULL; p = p->next) {
    if (p->att == c) p->att = NULL;
    if (p->close_c == c) p->close_c = NULL;
    for (stdin_chunk *ch = p->stdin_head; ch != NULL; ch = ch->next)
      if (ch->c == c) ch->c = NULL;
    waiter **pp = &p->waiters;
    while (*pp != NULL) {
      waiter *w = *pp;
      if (w->c != c) {
        pp = &w->next;
        continue;
      }
      *pp = w->next;
      free(w);
    }
  }
}

static void proc_free(proc *p) {
  for (int i = 0; i < 3; i++) pipe_close(p, i);
  stdin_fail_all(p, ECANCELED);
  while (p->waiters != NULL) {
    waiter *w = p->waiters;
    p->waiters = w->next;
    free(w);
  }
  free(p->out[1].data);
  free(p->out[2].data);
  sl_strv_free(p->argv);
  free(p);
}

void procs_free_dead(void) {
  proc **pp = &g_agent.procs;
  while (*pp != NULL) {
    proc *p = *pp;
    if (!p->dead) {
      pp = &p->next;
      continue;
    }
    *pp = p->next;
    proc_free(p);
  }
}

void procs_terminate_all(int sig) {
  for (proc *p = g_agent.procs; p != NULL; p = p->next)
    if (p->running) kill(-p->pid, sig);
}
