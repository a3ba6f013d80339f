/* Process handles (metatable "sandlot.process"): a process in a sandbox
 * that the host follows through the agent client, with its output kept
 * for readers.
 *
 * The C part (lproc) lives apart from the userdata, because the agent
 * client may still call back after the userdata is gone (an exec killed
 * on release is followed until its exit arrives). It is freed when the
 * userdata and the followed exec have both let go of it.
 *
 * Tasks wait on a handle with a list of waits (start, read, line, all,
 * exit, chunk). Every event (start, output, exit, failure) completes the
 * waits that it can complete, in the order they were made. */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "lagent.h"
#include "lcore.h"
#include "log.h"
#include "task.h"

/* Flow control of STREAM handles. Past FLOW_HIGH unread bytes on one
 * stream, the handle stops following the process. The agent then keeps
 * the output, and once its own buffer is full it stops reading the pipe,
 * so the writer blocks. Below FLOW_LOW on both streams, the handle
 * follows again from where it stopped. A task waiting for the exit or for
 * all output keeps the handle following, because the exit arrives only
 * after all output. */
#define FLOW_HIGH ((size_t)4 << 20)
#define FLOW_LOW ((size_t)1 << 20)

/* Bytes read from a STREAM handle between two acknowledgements. */
#define ACK_STEP 65536

/* Default byte count of p:read(). */
#define READ_DEFAULT 65536

typedef enum { P_STARTING, P_RUNNING, P_EXITED, P_FAILED } proc_state;

static const char *const state_names[] = {"starting", "running", "exited", "failed"};

typedef enum { W_START, W_READ, W_LINE, W_ALL, W_EXIT, W_CHUNK } wait_kind;

typedef struct lproc lproc;

typedef struct pwait {
  struct pwait *next;
  lproc *p;
  sl_waiter *waiter;
  wait_kind kind;
  int fd;
  size_t max;
  uv_timer_t *timer; /* W_EXIT with a timeout */
  double timeout;
} pwait;

struct lproc {
  lagent *agent;
  sl_agent_exec *x;      /* the exec being followed; NULL when not following */
  int refs;              /* held by the userdata and by the followed exec */
  int64_t proc, pid;
  char *name;
  sl_output_mode mode;
  sl_buf out[3];         /* [1] stdout, [2] stderr: output for readers (STREAM)
                            or chunk readers (CAPTURE, chunk_mask) */
  size_t head[3];        /* first byte of out[fd] not yet read */
  sl_buf kept[3];        /* CAPTURE: the result's output, at most `limit` bytes */
  size_t limit;          /* CAPTURE: bytes kept per stream; SIZE_MAX: all */
  int keep_mask;         /* CAPTURE: 1 << fd for each stream kept */
  int chunk_mask;        /* CAPTURE: 1 << fd for each stream for chunk readers */
  int truncated[3];      /* CAPTURE: output past `limit` was dropped */
  uv_timer_t *deadline;  /* CAPTURE: fails the waits when no exit arrives */
  double deadline_s;
  uint64_t received[3];  /* stream offset of the end of out[fd] */
  uint64_t acked[3];     /* stream offset up to which readers' reads were acknowledged */
  proc_state state;
  int released;          /* the userdata let go */
  int kill_when_started; /* released before the process ran */
  int flow_paused;
  int failed_connection; /* the failure is the connection's, not the agent's */
  sl_exit_status status;
  sl_error err;
  uint64_t start_ns, end_ns;
  pwait *waits;
  int self_ref;          /* registry anchor of the userdata while W_START waits */
  int pump_ref;          /* Lua function that passes output to callbacks */
  int pump_mask;         /* 1 << fd for each stream that has a callback */
  int pump_running;
  sl_listener pump_listener;
};

typedef struct {
  lproc *p;
} process_ud;

/* The main thread, for registry access and for starting pump tasks from
 * agent callbacks. */
static lua_State *main_thread;

static void check_waits(lproc *p);
static void flow_check(lproc *p);

/* ---- Lifetime ---- */

static lproc *proc_new(lagent *a, sl_output_mode mode, const char *name) {
  lproc *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->name = strdup(name ? name : "?");
  if (p->name == NULL) {
    free(p);
    return NULL;
  }
  p->agent = a;
  lagent_retain(a);
  p->mode = mode;
  p->self_ref = LUA_NOREF;
  p->pump_ref = LUA_NOREF;
  p->start_ns = uv_hrtime();
  return p;
}

static void proc_unref(lproc *p) {
  if (--p->refs > 0) return;
  sl_listener_unlink(&p->pump_listener);
  for (int fd = 1; fd <= 2; fd++) {
    sl_buf_free(&p->out[fd]);
    sl_buf_free(&p->kept[fd]);
  }
  lagent_release(p->agent);
  free(p->name);
  free(p);
}

static void drop_pump(lproc *p) {
  if (p->pump_ref != LUA_NOREF && main_thread != NULL)
    luaL_unref(main_thread, LUA_REGISTRYINDEX, p->pump_ref);
  p->pump_ref = LUA_NOREF;
  p->pump_mask = 0;
}

static void drop_self_ref(lproc *p) {
  if (p->self_ref != LUA_NOREF && main_thread != NULL)
    luaL_unref(main_thread, LUA_REGISTRYINDEX, p->self_ref);
  p->self_ref = LUA_NOREF;
}

static int ended(const lproc *p) { return p->state == P_EXITED || p->state == P_FAILED; }

static size_t unread(const lproc *p, int fd) { return p->out[fd].len - p->head[fd]; }

/* Tell the agent that readers took the output before the current read
 * positions, so it releases them and a handle attached later (by another
 * sandlot process, say) starts after them. */
static void ack_consumed(lproc *p, int fd) {
  uint64_t consumed = p->received[fd] - unread(p, fd);
  /* One ACK per ACK_STEP bytes read, and one when a reader caught up. */
  int due = consumed - p->acked[fd] >= ACK_STEP || (unread(p, fd) == 0 && consumed > p->acked[fd]);
  if (!due || p->agent->client == NULL || p->proc <= 0) return;
  p->acked[fd] = consumed;
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_ACK, 0);
  sl_frame_put_i64(&b, SL_F_PROC, p->proc);
  sl_frame_put_i64(&b, fd == 1 ? SL_F_STDOUT_OFFSET : SL_F_STDERR_OFFSET, (int64_t)consumed);
  if (sl_frame_end(&b, start, NULL) == 0) sl_agent_request(p->agent->client, &b, NULL, NULL, NULL);
  sl_buf_free(&b);
}

/* Drop `n` read bytes of a STREAM buffer, moving the rest to the front
 * once the read part is large. */
static void consume(lproc *p, int fd, size_t n) {
  sl_buf *b = &p->out[fd];
  p->head[fd] += n;
  /* An exec's client acknowledges output as it arrives. */
  if (p->state == P_RUNNING && p->mode == SL_OUTPUT_STREAM) ack_consumed(p, fd);
  if (p->head[fd] == b->len) {
    p->head[fd] = b->len = 0;
  } else if (p->head[fd] >= 65536 && p->head[fd] * 2 >= b->len) {
    memmove(b->data, b->data + p->head[fd], b->len - p->head[fd]);
    b->len -= p->head[fd];
    p->head[fd] = 0;
  }
}

static void send_kill(lproc *p) {
  if (p->agent->client != NULL && p->proc > 0)
    sl_agent_signal(p->agent->client, p->proc, SIGKILL, NULL, NULL, NULL);
}

/* ---- Deadline (CAPTURE) ---- */

static void timer_closed(uv_handle_t *handle) { free(handle); }

static void stop_deadline(lproc *p) {
  if (p->deadline == NULL) return;
  uv_close((uv_handle_t *)p->deadline, timer_closed);
  p->deadline = NULL;
}

/* No exit arrived in time because the agent does not reply (a frozen
 * sandbox, a hung agent). The waits fail with ETIMEDOUT. The kill is sent
 * now, or when the process starts, so it does not run on after a thaw. */
static void deadline_expired(uv_timer_t *timer) {
  lproc *p = timer->data;
  if (ended(p)) {
    stop_deadline(p);
    return;
  }
  /* Output callbacks that lag behind hold the process back (flow
   * control): the host is slow, not the agent, so wait for them. */
  if (p->flow_paused || p->pump_running || unread(p, 1) > 0 || unread(p, 2) > 0) {
    uv_timer_start(p->deadline, deadline_expired, 1000, 0);
    return;
  }
  stop_deadline(p);
  sl_error_set(&p->err, ETIMEDOUT,
               "the agent reported no exit within %g s (is the sandbox frozen?): %s",
               p->deadline_s, p->name);
  if (p->state == P_STARTING) p->kill_when_started = 1;
  send_kill(p);
  p->state = P_FAILED;
  p->failed_connection = 0;
  check_waits(p);
}

static void start_deadline(lproc *p, double seconds) {
  if (seconds <= 0 || (p->deadline = malloc(sizeof *p->deadline)) == NULL) return;
  uv_timer_init(sl_loop(), p->deadline);
  p->deadline->data = p;
  p->deadline_s = seconds;
  uv_timer_start(p->deadline, deadline_expired, (uint64_t)(seconds * 1000 + 0.5), 0);
}

/* ---- Callbacks ---- */

static void pump_start(lproc *p);

static int pump_has_data(const lproc *p) {
  for (int fd = 1; fd <= 2; fd++)
    if ((p->pump_mask & (1 << fd)) && unread(p, fd) > 0) return 1;
  return 0;
}

/* Ends the pump's hold once nothing more can reach the callbacks. */
static void pump_maybe_finish(lproc *p) {
  if (p->pump_ref != LUA_NOREF && !p->pump_running && ended(p) && !pump_has_data(p))
    drop_pump(p);
}

static void pump_ended(sl_listener *listener, sl_task *task) {
  lproc *p = (lproc *)((char *)listener - offsetof(lproc, pump_listener));
  p->pump_running = 0;
  sl_task_status status = sl_task_status_of(task);
  if (status == SL_TASK_FAILED || status == SL_TASK_CANCELLED)
    drop_pump(p); /* a raising callback stops the callbacks of this process */
  else
    pump_start(p); /* output that arrived while the pump finished */
  pump_maybe_finish(p);
  check_waits(p);
}

/* Run the pump function as a task when output for a callback waits. The
 * task takes chunks with p:_take() until none is left, so callbacks run
 * in order, may suspend, and fail only their own task. */
static void pump_start(lproc *p) {
  if (p->pump_ref == LUA_NOREF || p->pump_running || main_thread == NULL) return;
  if (!pump_has_data(p)) return;
  lua_rawgeti(main_thread, LUA_REGISTRYINDEX, p->pump_ref);
  sl_task *t = sl_task_spawn(main_thread, 0);
  lua_pop(main_thread, 1);
  p->pump_running = 1;
  p->pump_listener.fn = pump_ended;
  sl_task_listen(t, &p->pump_listener);
}

static void on_start(sl_agent_exec *x, int64_t proc, int64_t pid, void *data) {
  (void)x;
  lproc *p = data;
  p->proc = proc;
  p->pid = pid;
  if (p->state == P_STARTING) p->state = P_RUNNING;
  if (p->kill_when_started) send_kill(p);
  check_waits(p);
}

/* CAPTURE: keep output for the result up to the limit; the rest is
 * dropped and marked. */
static void keep_output(lproc *p, int fd, const uint8_t *bytes, size_t len) {
  if (!(p->keep_mask & (1 << fd))) return;
  size_t before = p->kept[fd].len;
  size_t n = p->limit - before < len ? p->limit - before : len;
  if (n < len) p->truncated[fd] = 1;
  if (n > 0) sl_buf_append(&p->kept[fd], bytes, n);
  if (p->kept[fd].failed) {
    /* Out of memory: the result keeps what it had and is marked cut. */
    p->kept[fd].failed = 0;
    p->kept[fd].len = before;
    p->truncated[fd] = 1;
  }
}

static void on_output(sl_agent_exec *x, int fd, const uint8_t *bytes, size_t len, void *data) {
  (void)x;
  lproc *p = data;
  p->received[fd] += len;
  /* A released exec is followed only until its kill ends it. */
  if (p->released) return;
  if (p->mode == SL_OUTPUT_CAPTURE) {
    keep_output(p, fd, bytes, len);
    if (!(p->chunk_mask & (1 << fd))) {
      check_waits(p);
      return;
    }
  }
  sl_buf_append(&p->out[fd], bytes, len);
  if (p->out[fd].failed) {
    /* NOTE: out of memory drops this chunk; the stream offsets stay
     * right, so a later chunk is not misplaced, but the bytes are lost. */
    p->out[fd].failed = 0;
    p->out[fd].len = p->head[fd];
  }
  pump_start(p);
  check_waits(p);
  flow_check(p);
}

static int is_connection_code(int code) {
  return code == ECONNRESET || code == ECONNREFUSED || code == ETIMEDOUT || code == EPIPE;
}

static void on_process_exit(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err, void *data) {
  (void)x;
  lproc *p = data;
  p->x = NULL;
  if (st == NULL && p->flow_paused && err->code == ECANCELED) {
    proc_unref(p); /* flow_check stopped following on purpose */
    return;
  }
  stop_deadline(p);
  p->end_ns = uv_hrtime();
  if (st != NULL) {
    p->state = P_EXITED;
    p->status = *st;
  } else if (err->code == ECANCELED && p->agent->ended.code != 0) {
    p->state = P_FAILED; /* with the reason agent:shutdown() gave */
    p->err = p->agent->ended;
  } else {
    /* Once the process ran, every failure comes from the connection
     * (lost, closed, or taken over by another client). */
    p->failed_connection = p->state == P_RUNNING || is_connection_code(err->code);
    p->state = P_FAILED;
    p->err = *err;
  }
  check_waits(p);
  pump_maybe_finish(p);
  proc_unref(p);
}

static const sl_exec_callbacks exec_callbacks = {on_start, on_output, on_process_exit};

/* ---- Flow control ---- */

static int has_wait(const lproc *p, wait_kind kind) {
  for (const pwait *w = p->waits; w != NULL; w = w->next)
    if (w->kind == kind) return 1;
  return 0;
}

static void follow_again(lproc *p) {
  SL_DEBUG("process.flow_resume", "proc=%lld stdout_offset=%llu stderr_offset=%llu",
           (long long)p->proc, (unsigned long long)p->received[1],
           (unsigned long long)p->received[2]);
  p->flow_paused = 0;
  sl_error err = {0};
  if (p->agent->client == NULL && p->agent->ended.code != 0) {
    err = p->agent->ended;
  } else if (p->agent->client == NULL) {
    sl_error_set(&err, ECANCELED, "agent connection closed");
  } else if (sl_agent_exec_attach(p->agent->client, p->proc, p->received[1], p->received[2],
                                  &exec_callbacks, p, &p->x, &err) == 0) {
    p->refs++;
    return;
  }
  p->state = P_FAILED;
  p->err = err;
  p->failed_connection = 1;
  check_waits(p);
}

static void flow_check(lproc *p) {
  if (p->state != P_RUNNING || p->released) return;
  if (p->mode == SL_OUTPUT_CAPTURE && p->chunk_mask == 0) return;
  int want_end = has_wait(p, W_EXIT) || has_wait(p, W_ALL);
  int over = unread(p, 1) > FLOW_HIGH || unread(p, 2) > FLOW_HIGH;
  int under = unread(p, 1) < FLOW_LOW && unread(p, 2) < FLOW_LOW;
  if (p->x != NULL && !p->flow_paused && over && !want_end) {
    SL_DEBUG("process.flow_pause", "proc=%lld stdout_unread=%zu stderr_unread=%zu",
             (long long)p->proc, unread(p, 1), unread(p, 2));
    p->flow_paused = 1;
    sl_agent_exec_cancel(p->x); /* calls on_process_exit, which keeps the state */
  } else if (p->flow_paused && (under || want_end)) {
    follow_again(p);
  }
}

/* ---- Completing waits ---- */

static int push_failure(lua_State *T, const lproc *p) {
  sl_push_error(T, &p->err);
  if (!p->failed_connection) return 3;
  lua_pushliteral(T, "connection");
  return 4;
}

/* Push what a read returns at the end of the output: nil, or the
 * failure. */
static int push_end(lua_State *T, const lproc *p) {
  if (p->state == P_FAILED) return push_failure(T, p);
  lua_pushnil(T);
  return 1;
}

static void push_status(lua_State *T, const lproc *p) {
  const sl_exit_status *st = &p->status;
  lua_createtable(T, 0, 8);
  /* Shell convention: a process killed by signal N reports 128 + N. */
  lua_pushinteger(T, st->exited ? st->exit_code : 128 + st->signal);
  lua_setfield(T, -2, "exit_code");
  if (!st->exited) {
    lua_pushinteger(T, st->signal);
    lua_setfield(T, -2, "signal");
  }
  lua_pushboolean(T, st->timed_out);
  lua_setfield(T, -2, "timed_out");
  lua_pushnumber(T, (double)(p->end_ns - p->start_ns) / 1e9);
  lua_setfield(T, -2, "duration");
  lua_pushinteger(T, p->proc);
  lua_setfield(T, -2, "id");
  lua_pushinteger(T, p->pid);
  lua_setfield(T, -2, "pid");
  if (p->mode == SL_OUTPUT_CAPTURE) {
    static const char *const names[3][2] = {
        {NULL, NULL}, {"stdout", "stdout_truncated"}, {"stderr", "stderr_truncated"}};
    for (int fd = 1; fd <= 2; fd++) {
      if (p->keep_mask & (1 << fd)) {
        lua_pushlstring(T, (const char *)p->kept[fd].data, p->kept[fd].len);
        lua_setfield(T, -2, names[fd][0]);
      }
      lua_pushboolean(T, p->truncated[fd]);
      lua_setfield(T, -2, names[fd][1]);
    }
  }
}

static int push_bytes(lua_State *T, lproc *p, int fd, size_t n, size_t skip) {
  lua_pushlstring(T, (const char *)p->out[fd].data + p->head[fd], n);
  consume(p, fd, n + skip);
  return 1;
}

static int complete_line(lproc *p, pwait *w, lua_State *T) {
  size_t n = unread(p, w->fd);
  const char *start = (const char *)p->out[w->fd].data + p->head[w->fd];
  const char *newline = n > 0 ? memchr(start, '\n', n) : NULL;
  if (newline != NULL) return push_bytes(T, p, w->fd, (size_t)(newline - start), 1);
  if (!ended(p)) return -1;
  if (n > 0) return push_bytes(T, p, w->fd, n, 0);
  return push_end(T, p);
}

static int complete_chunk(lproc *p, lua_State *T) {
  for (int fd = 1; fd <= 2; fd++) {
    size_t n = unread(p, fd);
    if (n == 0) continue;
    lua_pushinteger(T, fd);
    return 1 + push_bytes(T, p, fd, n, 0);
  }
  if (!ended(p)) return -1;
  return push_end(T, p);
}

static int pump_busy(const lproc *p) {
  return p->pump_ref != LUA_NOREF && (p->pump_running || pump_has_data(p));
}

/* Push the results of `w` on T and return their count, or -1 when `w`
 * cannot complete yet. */
static int try_complete(lproc *p, pwait *w, lua_State *T) {
  size_t n;
  switch (w->kind) {
  case W_START:
    if (p->state == P_STARTING) return -1;
    if (p->state == P_FAILED) {
      drop_self_ref(p); /* no task receives the handle: let __gc release it */
      return push_failure(T, p);
    }
    lua_rawgeti(T, LUA_REGISTRYINDEX, p->self_ref);
    drop_self_ref(p);
    return 1;
  case W_READ:
    n = unread(p, w->fd);
    if (n > 0) return push_bytes(T, p, w->fd, n < w->max ? n : w->max, 0);
    return ended(p) ? push_end(T, p) : -1;
  case W_LINE:
    return complete_line(p, w, T);
  case W_ALL:
    if (!ended(p)) return -1;
    if (p->state == P_FAILED) return push_failure(T, p);
    return push_bytes(T, p, w->fd, unread(p, w->fd), 0);
  case W_EXIT:
    if (!ended(p) || pump_busy(p)) return -1;
    if (p->state == P_FAILED) return push_failure(T, p);
    push_status(T, p);
    return 1;
  case W_CHUNK:
    return complete_chunk(p, T);
  }
  return -1;
}

static void wait_free(pwait *w) {
  if (w->timer != NULL) uv_close((uv_handle_t *)w->timer, timer_closed);
  free(w);
}

static void wait_unlink(lproc *p, pwait *target) {
  for (pwait **pp = &p->waits; *pp != NULL; pp = &(*pp)->next)
    if (*pp == target) {
      *pp = target->next;
      return;
    }
}

static void check_waits(lproc *p) {
  pwait *w = p->waits;
  while (w != NULL) {
    pwait *next = w->next;
    lua_State *T = sl_waiter_thread(w->waiter);
    int n = T != NULL ? try_complete(p, w, T) : 0;
    if (n >= 0) {
      wait_unlink(p, w);
      sl_waiter_resume(w->waiter, n);
      wait_free(w);
    }
    w = next;
  }
}

static void wait_cancel(sl_waiter *waiter, void *data) {
  pwait *w = data;
  lproc *p = w->p;
  wait_unlink(p, w);
  if (w->kind == W_START) {
    /* No task receives the handle, so the process must not stay behind. */
    drop_self_ref(p);
    if (p->state == P_STARTING) p->kill_when_started = 1;
    if (p->state == P_RUNNING) send_kill(p);
  }
  sl_waiter_resume(waiter, 0);
  wait_free(w);
  flow_check(p);
}

static void wait_timed_out(uv_timer_t *timer) {
  pwait *w = timer->data;
  lproc *p = w->p;
  lua_State *T = sl_waiter_thread(w->waiter);
  int n = 0;
  if (T != NULL)
    n = sl_push_fail(T, ETIMEDOUT, "process %lld did not exit within %g s", (long long)p->proc,
                     w->timeout);
  wait_unlink(p, w);
  sl_waiter_resume(w->waiter, n);
  wait_free(w);
  flow_check(p);
}

/* ---- Creating handles ---- */

static process_ud *push_handle(lua_State *L, int agent_index, lproc *p) {
  agent_index = lua_absindex(L, agent_index);
  process_ud *ud = lua_newuserdatauv(L, sizeof *ud, 1);
  ud->p = NULL;
  luaL_setmetatable(L, SL_PROCESS_MT);
  lua_pushvalue(L, agent_index);
  lua_setiuservalue(L, -2, 1);
  ud->p = p;
  p->refs++;
  return ud;
}

int sl_process_start(lua_State *L, int agent_index, const sl_exec_spec *spec,
                     sl_output_mode mode, const sl_capture *capture, const char *name) {
  lagent *a = lagent_check(L, agent_index);
  sl_async_check(L, "sandbox:exec");
  lproc *p = proc_new(a, mode, name);
  if (p != NULL && mode == SL_OUTPUT_CAPTURE) {
    p->limit = capture->limit;
    p->keep_mask = capture->keep_mask;
    p->chunk_mask = capture->chunk_mask;
  }
  pwait *w = calloc(1, sizeof *w);
  if (p == NULL || w == NULL) {
    if (p != NULL) proc_unref(p);
    free(w);
    return luaL_error(L, "not enough memory");
  }
  push_handle(L, agent_index, p);
  sl_error err = {0};
  if (sl_agent_exec_start(a->client, spec, &exec_callbacks, p, &p->x, &err) < 0) {
    free(w);
    p->state = P_FAILED;
    p->err = err;
    return push_failure(L, p);
  }
  p->refs++; /* the followed exec */
  if (mode == SL_OUTPUT_CAPTURE) start_deadline(p, capture->deadline);
  lua_pushvalue(L, -1);
  p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  w->p = p;
  w->kind = W_START;
  w->waiter = sl_waiter_new(L, wait_cancel, w);
  w->next = p->waits;
  p->waits = w;
  return sl_waiter_suspend(L, w->waiter);
}

int sl_process_attach(lua_State *L, int agent_index, int64_t proc, int64_t pid,
                      uint64_t stdout_offset, uint64_t stderr_offset, const char *name) {
  lagent *a = lagent_check(L, agent_index);
  lproc *p = proc_new(a, SL_OUTPUT_STREAM, name);
  if (p == NULL) return luaL_error(L, "not enough memory");
  push_handle(L, agent_index, p);
  p->proc = proc;
  p->pid = pid;
  p->state = P_RUNNING;
  p->received[1] = stdout_offset;
  p->received[2] = stderr_offset;
  sl_error err = {0};
  if (sl_agent_exec_attach(a->client, proc, stdout_offset, stderr_offset, &exec_callbacks, p,
                           &p->x, &err) < 0) {
    p->state = P_FAILED;
    p->err = err;
    return push_failure(L, p);
  }
  p->refs++;
  return 1;
}

/* ---- Methods ---- */

/* The handle at index 1, for method `fname`; raises on a closed one with
 * the message liolib uses for closed files. */
static lproc *check_proc(lua_State *L, const char *fname) {
  process_ud *ud = luaL_testudata(L, 1, SL_PROCESS_MT);
  if (ud == NULL)
    sl_raise(L, "%s: expected a process handle as self (call it with a colon), got %s", fname,
             luaL_typename(L, 1));
  if (ud->p == NULL) sl_raise(L, "attempt to use a closed process handle");
  return ud->p;
}

/* The fd of the stream named at `index` ("stdout", the default, or
 * "stderr"); `arg` is its position in the user's call. */
static int stream_arg(lua_State *L, int index, const char *fname, int arg) {
  if (lua_isnoneornil(L, index)) return 1;
  const char *name = lua_tostring(L, index);
  if (lua_type(L, index) == LUA_TSTRING && strcmp(name, "stdout") == 0) return 1;
  if (lua_type(L, index) == LUA_TSTRING && strcmp(name, "stderr") == 0) return 2;
  if (lua_type(L, index) != LUA_TSTRING)
    return sl_arg_error(L, fname, arg, lua_pushfstring(L, "expected \"stdout\" or \"stderr\", got %s",
                                                       luaL_typename(L, index)));
  return sl_arg_error(L, fname, arg, lua_pushfstring(L, "expected \"stdout\" or \"stderr\", got \"%s\"",
                                                     name));
}

/* Suspend until a wait of `kind` completes, or return its results at
 * once when it can complete now. */
static int wait_for(lua_State *L, lproc *p, const char *fname, wait_kind kind, int fd,
                    size_t max, double timeout) {
  sl_async_check(L, fname);
  pwait *w = calloc(1, sizeof *w);
  if (w == NULL) return luaL_error(L, "not enough memory");
  *w = (pwait){.p = p, .kind = kind, .fd = fd, .max = max, .timeout = timeout};
  int n = p->waits == NULL ? try_complete(p, w, L) : -1;
  if (n >= 0) {
    free(w);
    flow_check(p);
    return n;
  }
  w->waiter = sl_waiter_new(L, wait_cancel, w);
  pwait **tail = &p->waits;
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = w;
  if (timeout > 0) {
    w->timer = malloc(sizeof *w->timer);
    if (w->timer != NULL) {
      uv_timer_init(sl_loop(), w->timer);
      w->timer->data = w;
      uv_timer_start(w->timer, wait_timed_out, (uint64_t)(timeout * 1000 + 0.5), 0);
    }
  }
  flow_check(p);
  check_waits(p);
  return sl_waiter_suspend(L, w->waiter);
}

static void require_mode(lua_State *L, lproc *p, sl_output_mode mode, const char *fname) {
  if (p->mode != mode)
    sl_raise(L, "%s: not available on this handle (%s)", fname,
             mode == SL_OUTPUT_STREAM ? "its output is captured" : "its output is streamed");
  if (mode == SL_OUTPUT_STREAM && p->pump_mask != 0)
    sl_raise(L, "%s: output goes to the on_stdout/on_stderr callbacks of this process", fname);
}

/* p:read([max [, stream]]): up to `max` bytes once any are there; nil at
 * the end. */
static int l_read(lua_State *L) {
  lproc *p = check_proc(L, "process:read");
  lua_Integer max = READ_DEFAULT;
  if (!lua_isnoneornil(L, 2)) {
    int is_integer = 0;
    max = lua_tointegerx(L, 2, &is_integer);
    if (!is_integer || max <= 0)
      sl_arg_error(L, "process:read", 1,
                   lua_pushfstring(L, "expected a byte count > 0, got %s", luaL_tolstring(L, 2, NULL)));
  }
  int fd = stream_arg(L, 3, "process:read", 2);
  require_mode(L, p, SL_OUTPUT_STREAM, "process:read");
  return wait_for(L, p, "process:read", W_READ, fd, (size_t)max, 0);
}

static int l_read_line(lua_State *L) {
  lproc *p = check_proc(L, "process:read_line");
  int fd = stream_arg(L, 2, "process:read_line", 1);
  require_mode(L, p, SL_OUTPUT_STREAM, "process:read_line");
  return wait_for(L, p, "process:read_line", W_LINE, fd, 0, 0);
}

static int l_read_all(lua_State *L) {
  lproc *p = check_proc(L, "process:read_all");
  int fd = stream_arg(L, 2, "process:read_all", 1);
  require_mode(L, p, SL_OUTPUT_STREAM, "process:read_all");
  return wait_for(L, p, "process:read_all", W_ALL, fd, 0, 0);
}

static int l_wait(lua_State *L) {
  lproc *p = check_proc(L, "process:wait");
  lua_Number timeout = 0;
  if (!lua_isnoneornil(L, 2)) {
    int is_number = 0;
    timeout = lua_tonumberx(L, 2, &is_number);
    if (!is_number || !(timeout >= 0 && timeout <= 1e9))
      sl_arg_error(L, "process:wait", 1,
                   lua_pushfstring(L, "expected seconds from 0 to 1e9, got %s", luaL_tolstring(L, 2, NULL)));
  }
  return wait_for(L, p, "process:wait", W_EXIT, 0, 0, timeout);
}

/* p:_next_chunk(): fd and bytes of the next output (CAPTURE handles), nil
 * at the end. */
static int l_next_chunk(lua_State *L) {
  lproc *p = check_proc(L, "process:_next_chunk");
  require_mode(L, p, SL_OUTPUT_CAPTURE, "process:_next_chunk");
  return wait_for(L, p, "sandbox:exec", W_CHUNK, 0, 0, 0);
}

/* p:_set_pump(fn, stdout, stderr): run fn as a task whenever output of a
 * chosen stream arrives; fn takes it with p:_take(). */
static int l_set_pump(lua_State *L) {
  lproc *p = check_proc(L, "process:_set_pump");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int mask = (lua_toboolean(L, 3) ? 1 << 1 : 0) | (lua_toboolean(L, 4) ? 1 << 2 : 0);
  drop_pump(p);
  if (mask == 0) return 0;
  lua_pushvalue(L, 2);
  p->pump_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->pump_mask = mask;
  pump_start(p);
  return 0;
}

/* p:_take(): fd and bytes of output waiting for a callback, or nil. */
static int l_take(lua_State *L) {
  lproc *p = check_proc(L, "process:_take");
  for (int fd = 1; fd <= 2; fd++) {
    if (!(p->pump_mask & (1 << fd)) || unread(p, fd) == 0) continue;
    lua_pushinteger(L, fd);
    push_bytes(L, p, fd, unread(p, fd), 0);
    flow_check(p);
    return 2;
  }
  lua_pushnil(L);
  return 1;
}

static void fail_waits(lproc *p, const char *reason) {
  while (p->waits != NULL) {
    pwait *w = p->waits;
    p->waits = w->next;
    lua_State *T = sl_waiter_thread(w->waiter);
    int n = T != NULL ? sl_push_fail(T, ECANCELED, "%s", reason) : 0;
    sl_waiter_resume(w->waiter, n);
    wait_free(w);
  }
}

/* Let go of the process. An exec's process is killed. A spawned one keeps
 * running in the agent, which keeps its output for a later attach. */
static void release(process_ud *ud) {
  lproc *p = ud->p;
  if (p == NULL) return;
  ud->p = NULL;
  p->released = 1;
  p->refs++;
  fail_waits(p, "process handle closed");
  drop_pump(p);
  drop_self_ref(p);
  stop_deadline(p);
  /* An exec held back by flow control is followed again, to be killed. */
  if (p->mode == SL_OUTPUT_CAPTURE && p->flow_paused && p->x == NULL) follow_again(p);
  if (p->x != NULL) {
    if (p->state == P_STARTING)
      p->kill_when_started = 1;
    else if (p->mode == SL_OUTPUT_CAPTURE)
      send_kill(p); /* keep following until the exit releases it in the agent */
    else
      sl_agent_exec_cancel(p->x);
  }
  /* The guard reference taken above kept `p` alive until here, so the
   * userdata's reference drops without freeing; the guard's goes last. */
  p->refs--;
  proc_unref(p);
}

static int l_close(lua_State *L) {
  release(luaL_checkudata(L, 1, SL_PROCESS_MT));
  return 0;
}

static int l_agent(lua_State *L) {
  check_proc(L, "process:_agent");
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* process:_failure(): the fail tuple of a failed handle, the one its
 * reads return, with a fourth value "connection" when the connection
 * failed. Returns nothing for a handle that has not failed. */
static int l_failure(lua_State *L) {
  lproc *p = check_proc(L, "process:_failure");
  if (p->state != P_FAILED) return 0;
  return push_failure(L, p);
}

static int l_tostring(lua_State *L) {
  process_ud *ud = luaL_checkudata(L, 1, SL_PROCESS_MT);
  lproc *p = ud->p;
  if (p == NULL)
    lua_pushliteral(L, "sandlot.process (closed)");
  else
    lua_pushfstring(L, "sandlot.process (id %I, pid %I, %s: %s)", (lua_Integer)p->proc,
                    (lua_Integer)p->pid, state_names[p->state], p->name);
  return 1;
}

static int l_index(lua_State *L) {
  process_ud *ud = luaL_checkudata(L, 1, SL_PROCESS_MT);
  const char *key = lua_tostring(L, 2);
  lproc *p = ud->p;
  if (key != NULL && strcmp(key, "state") == 0) {
    lua_pushstring(L, p == NULL ? "closed" : state_names[p->state]);
    return 1;
  }
  if (p != NULL && key != NULL) {
    if (strcmp(key, "id") == 0) return lua_pushinteger(L, p->proc), 1;
    if (strcmp(key, "pid") == 0) return lua_pushinteger(L, p->pid), 1;
    if (strcmp(key, "command") == 0) return lua_pushstring(L, p->name), 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int l_gc(lua_State *L) {
  release(luaL_checkudata(L, 1, SL_PROCESS_MT));
  return 0;
}

void sl_open_process(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main_thread = lua_tothread(L, -1);
  lua_pop(L, 1);

  static const luaL_Reg methods[] = {
      {"read", l_read},
      {"read_line", l_read_line},
      {"read_all", l_read_all},
      {"wait", l_wait},
      {"close", l_close},
      {"_next_chunk", l_next_chunk},
      {"_set_pump", l_set_pump},
      {"_take", l_take},
      {"_agent", l_agent},
      {"_failure", l_failure},
      {NULL, NULL},
  };
  luaL_newmetatable(L, SL_PROCESS_MT);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "process_methods"); /* Lua adds write, kill, lines, ... */
  lua_pushcclosure(L, l_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
