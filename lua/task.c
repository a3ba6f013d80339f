#include "task.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "async.h"
#include "error.h"

#define CANCELLED_MT "sandlot.cancelled"

/* Uservalue slots of a task userdata. */
enum { UV_THREAD = 1, UV_RESULT = 2 };

struct sl_task {
  lua_State *co;
  sl_task_status status;
  unsigned long id;
  int started;
  int nargs;             /* values waiting on co's stack for the next resume */
  int cancel_pending;    /* cancel() while running: raise at the next suspension */
  int plain_report;
  sl_waiter *waiter;     /* while suspended */
  lua_KFunction after;   /* continuation of an internal wait */
  unsigned long ready_seq;
  sl_task *ready_prev, *ready_next;
  sl_task *live_prev, *live_next; /* the list of tasks that have not ended */
  int cancel_all_mark;
  sl_listener listeners; /* sentinel of a circular list */
  int ref;               /* registry anchor while the task has not ended */
  char errname[24];      /* fail tuple name once failed or cancelled */
  char label[128];
};

typedef enum { WAITER_PREPARED, WAITER_SUSPENDED, WAITER_DONE_EARLY } waiter_state;

struct sl_waiter {
  sl_task *task; /* NULL once abandoned */
  waiter_state state;
  int nresults;  /* WAITER_DONE_EARLY */
  sl_cancel_fn cancel;
  void *data;
};

static struct {
  lua_State *L;
  uv_idle_t idle;
  int idle_open;
  int closing;
  sl_task *ready_head, *ready_tail;
  sl_task *live_head;
  unsigned long ready_seq;
  unsigned long next_id;
  int live;
  sl_task_report_fn report;
  void (*all_ended)(void);
} S;

lua_State *volatile sl_sched_running_thread;

/* A unique address pushed as the only resume value of a cancelled task. */
static const char cancel_marker = 0;

/* The extra space of a thread contains its task. lua_newthread copies the main
 * thread's extra space (NULL) into plain coroutines. */
static sl_task **task_slot(lua_State *L) { return (sl_task **)lua_getextraspace(L); }

sl_task *sl_task_of(lua_State *L) { return *task_slot(L); }

static void idle_cb(uv_idle_t *handle);

/* ---- Ready queue ---- */

static void ready_push(sl_task *t) {
  t->status = SL_TASK_READY;
  t->ready_seq = ++S.ready_seq;
  t->ready_next = NULL;
  t->ready_prev = S.ready_tail;
  if (S.ready_tail != NULL)
    S.ready_tail->ready_next = t;
  else
    S.ready_head = t;
  S.ready_tail = t;
  if (S.idle_open && !uv_is_active((uv_handle_t *)&S.idle)) uv_idle_start(&S.idle, idle_cb);
}

static int ready_contains(const sl_task *t) {
  return t->ready_prev != NULL || S.ready_head == t;
}

static void ready_remove(sl_task *t) {
  if (!ready_contains(t)) return;
  if (t->ready_prev != NULL)
    t->ready_prev->ready_next = t->ready_next;
  else
    S.ready_head = t->ready_next;
  if (t->ready_next != NULL)
    t->ready_next->ready_prev = t->ready_prev;
  else
    S.ready_tail = t->ready_prev;
  t->ready_prev = t->ready_next = NULL;
}

static void live_add(sl_task *t) {
  t->live_prev = NULL;
  t->live_next = S.live_head;
  if (S.live_head != NULL) S.live_head->live_prev = t;
  S.live_head = t;
  S.live++;
}

static void live_remove(sl_task *t) {
  if (t->live_prev != NULL)
    t->live_prev->live_next = t->live_next;
  else if (S.live_head == t)
    S.live_head = t->live_next;
  else
    return;
  if (t->live_next != NULL) t->live_next->live_prev = t->live_prev;
  t->live_prev = t->live_next = NULL;
  S.live--;
}

/* ---- Listeners ---- */

static void listeners_init(sl_listener *head) { head->next = head->prev = head; }

void sl_task_listen(sl_task *t, sl_listener *l) {
  l->prev = t->listeners.prev;
  l->next = &t->listeners;
  t->listeners.prev->next = l;
  t->listeners.prev = l;
}

void sl_listener_unlink(sl_listener *l) {
  if (l->next == NULL || l->next == l) return;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}

static void listeners_notify(sl_task *t) {
  while (t->listeners.next != &t->listeners) {
    sl_listener *l = t->listeners.next;
    sl_listener_unlink(l);
    l->fn(l, t);
  }
}

/* ---- Ending a task ---- */

/* Store `nres` values from the top of co as the task's result table. */
static void store_results(sl_task *t, int nres) {
  lua_State *L = S.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_createtable(L, nres, 1);
  lua_xmove(t->co, L, nres);
  for (int i = nres; i >= 1; i--) lua_rawseti(L, -(i + 1), i);
  lua_pushinteger(L, nres);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, -2, UV_RESULT);
  lua_pop(L, 1);
}

/* Store the fail tuple message, keeping an "ENAME: " prefix that names a
 * known errno (as assert(nil, "ENOENT: ...") raises) and otherwise
 * prefixing "ETASK: ". */
static void store_failure(sl_task *t, const char *msg) {
  lua_State *L = S.L;
  const char *colon = strstr(msg, ": ");
  char name[sizeof t->errname] = "";
  if (msg[0] == 'E' && colon != NULL && (size_t)(colon - msg) < sizeof name) {
    memcpy(name, msg, (size_t)(colon - msg));
    name[colon - msg] = '\0';
    if (sl_errcode(name) == 0) name[0] = '\0';
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  if (name[0] != '\0') {
    snprintf(t->errname, sizeof t->errname, "%s", name);
    lua_pushstring(L, msg);
  } else {
    snprintf(t->errname, sizeof t->errname, "ETASK");
    lua_pushfstring(L, "ETASK: %s", msg);
  }
  lua_setiuservalue(L, -2, UV_RESULT);
  lua_pop(L, 1);
}

static void task_end(sl_task *t, sl_task_status status) {
  t->status = status;
  lua_settop(t->co, 0);
  listeners_notify(t);
  luaL_unref(S.L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
  live_remove(t);
  if (S.live == 0 && S.all_ended != NULL) S.all_ended();
}

static void end_cancelled(sl_task *t) {
  snprintf(t->errname, sizeof t->errname, "ECANCELED");
  lua_rawgeti(S.L, LUA_REGISTRYINDEX, t->ref);
  lua_pushliteral(S.L, "ECANCELED: task cancelled");
  lua_setiuservalue(S.L, -2, UV_RESULT);
  lua_pop(S.L, 1);
  task_end(t, SL_TASK_CANCELLED);
}

/* The error object is on top of co. Print the traceback, close pending
 * to-be-closed variables, and end the task. */
static void end_with_error(sl_task *t) {
  lua_State *co = t->co;
  if (sl_is_cancelled(co, -1)) {
    lua_resetthread(co);
    end_cancelled(t);
    return;
  }
  lua_State *L = S.L;
  lua_pushstring(L, luaL_tolstring(co, -1, NULL));
  const char *msg = lua_tostring(L, -1);
  luaL_traceback(L, co, msg, 0);
  store_failure(t, msg);
  if (S.report != NULL) S.report(t, t->plain_report ? NULL : t->label, lua_tostring(L, -1));
  lua_pop(L, 1);
  /* Lua does not unwind the stack of a coroutine that raised: resetting it
   * runs the pending __close handlers, which cannot suspend. */
  if (lua_resetthread(co) != LUA_OK && !sl_is_cancelled(co, -1) && S.report != NULL) {
    const char *close_err = lua_tostring(co, -1);
    if (close_err != NULL && strcmp(close_err, msg) != 0) S.report(t, t->label, close_err);
  }
  lua_pop(L, 1);
  task_end(t, SL_TASK_FAILED);
}

static void end_with_stray_yield(sl_task *t, int nres) {
  lua_pop(t->co, nres);
  lua_pushliteral(t->co,
                  "coroutine.yield() called in the body of a task; suspend with "
                  "sandlot.sleep() or another sandlot function instead");
  end_with_error(t);
}

/* ---- Running ---- */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  sl_push_cancelled(L);
  lua_error(L);
}

/* Async-signal-safe: lua_sethook may be called from a signal handler. */
void sl_sched_interrupt(void) {
  lua_State *co = sl_sched_running_thread;
  if (co != NULL) lua_sethook(co, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void task_step(sl_task *t) {
  lua_State *co = t->co;
  int nargs = t->nargs, nres = 0;
  t->nargs = 0;
  t->started = 1;
  t->status = SL_TASK_RUNNING;
  sl_sched_running_thread = co;
  int rc = lua_resume(co, S.L, nargs, &nres);
  sl_sched_running_thread = NULL;
  if (lua_gethook(co) == interrupt_hook) lua_sethook(co, NULL, 0, 0); /* did not fire */

  if (rc == LUA_YIELD) {
    if (t->status == SL_TASK_RUNNING) end_with_stray_yield(t, nres);
    return;
  }
  if (rc == LUA_OK) {
    store_results(t, nres);
    task_end(t, SL_TASK_DONE);
    return;
  }
  end_with_error(t);
}

/* Drain the tasks that were ready when this iteration began; tasks woken
 * meanwhile run on the next iteration. */
static void idle_cb(uv_idle_t *handle) {
  unsigned long last = S.ready_seq;
  while (S.ready_head != NULL && S.ready_head->ready_seq <= last) {
    sl_task *t = S.ready_head;
    ready_remove(t);
    task_step(t);
  }
  if (S.ready_head == NULL) uv_idle_stop(handle);
}

/* ---- Spawning ---- */

static void set_label(sl_task *t, lua_State *L, int fidx) {
  lua_Debug ar;
  lua_pushvalue(L, fidx);
  if (lua_getinfo(L, ">S", &ar) && ar.what[0] != 'C')
    snprintf(t->label, sizeof t->label, "task %lu (%s:%d)", t->id, ar.short_src, ar.linedefined);
  else
    snprintf(t->label, sizeof t->label, "task %lu", t->id);
}

sl_task *sl_task_spawn(lua_State *L, int nargs) {
  int fidx = lua_gettop(L) - nargs;
  luaL_checktype(L, fidx, LUA_TFUNCTION);
  luaL_checkstack(L, 4, NULL);

  sl_task *t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  listeners_init(&t->listeners);
  t->ref = LUA_NOREF;
  t->status = SL_TASK_READY;
  t->id = ++S.next_id;
  luaL_setmetatable(L, SL_TASK_MT);

  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, -2, UV_THREAD);
  t->co = co;
  *task_slot(co) = t;
  set_label(t, L, fidx);

  lua_insert(L, fidx); /* task f args... */
  lua_xmove(L, co, nargs + 1);
  t->nargs = nargs;

  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  live_add(t);
  ready_push(t);
  return t;
}

/* ---- Suspending and waking ---- */

/* Continuation of every suspension: raise the cancellation error, or hand
 * the resume values to the wait's own continuation or to the caller. */
static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)ctx;
  int n = lua_gettop(L) - base;
  if (n == 1 && lua_touserdata(L, -1) == &cancel_marker) {
    lua_pop(L, 1);
    sl_push_cancelled(L);
    return lua_error(L);
  }
  sl_task *t = sl_task_of(L);
  lua_KFunction after = t->after;
  t->after = NULL;
  if (after != NULL) return after(L, status, ctx);
  return n;
}

static void cancel_suspended(sl_task *t) {
  sl_waiter *w = t->waiter;
  t->waiter = NULL;
  if (w != NULL) {
    w->task = NULL; /* abandoned: the binding frees it with sl_waiter_resume */
    if (w->cancel != NULL) w->cancel(w, w->data);
  }
  lua_pushlightuserdata(t->co, (void *)&cancel_marker);
  t->nargs = 1;
  ready_push(t);
}

int sl_task_cancel(sl_task *t) {
  switch (t->status) {
  case SL_TASK_DONE:
  case SL_TASK_FAILED:
  case SL_TASK_CANCELLED:
    return 0;
  case SL_TASK_RUNNING:
    t->cancel_pending = 1;
    return 1;
  case SL_TASK_SUSPENDED:
    cancel_suspended(t);
    return 1;
  case SL_TASK_READY:
    break;
  }
  if (!t->started) {
    ready_remove(t);
    end_cancelled(t);
    return 1;
  }
  /* Woken but not yet resumed: replace the resume values. */
  lua_pop(t->co, t->nargs);
  lua_pushlightuserdata(t->co, (void *)&cancel_marker);
  t->nargs = 1;
  return 1;
}

/* Cancelling may end tasks and run listeners that spawn or end others, so
 * the walk restarts from the head after each cancellation. The mark makes
 * sure each task is cancelled once. */
int sl_sched_cancel_all(void) {
  int count = 0;
  for (sl_task *t = S.live_head; t != NULL; t = t->live_next) t->cancel_all_mark = 0;
  sl_task *t = S.live_head;
  while (t != NULL) {
    if (t->cancel_all_mark) {
      t = t->live_next;
      continue;
    }
    t->cancel_all_mark = 1;
    count += sl_task_cancel(t);
    t = S.live_head;
  }
  return count;
}

static sl_waiter *waiter_alloc(sl_task *t, sl_cancel_fn cancel, void *data) {
  sl_waiter *w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  w->task = t;
  w->state = WAITER_PREPARED;
  w->cancel = cancel;
  w->data = data;
  return w;
}

sl_waiter *sl_waiter_new(lua_State *L, sl_cancel_fn cancel, void *data) {
  sl_task *t = sl_task_of(L);
  if (t == NULL || t->status != SL_TASK_RUNNING)
    luaL_error(L, "sl_waiter_new: not called from the running task (call sl_async_check first)");
  sl_waiter *w = waiter_alloc(t, cancel, data);
  if (w == NULL) luaL_error(L, "not enough memory");
  return w;
}

int sl_waiter_suspend_k(lua_State *L, sl_waiter *w, lua_KFunction after) {
  if (w->state == WAITER_DONE_EARLY) {
    int n = w->nresults;
    free(w);
    return n;
  }
  sl_task *t = w->task;
  if (t->cancel_pending) {
    t->cancel_pending = 0;
    w->task = NULL;
    if (w->cancel != NULL) w->cancel(w, w->data);
    sl_push_cancelled(L);
    return lua_error(L);
  }
  w->state = WAITER_SUSPENDED;
  t->waiter = w;
  t->after = after;
  t->status = SL_TASK_SUSPENDED;
  return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), resume_k);
}

int sl_waiter_suspend(lua_State *L, sl_waiter *w) { return sl_waiter_suspend_k(L, w, NULL); }

lua_State *sl_waiter_thread(sl_waiter *w) {
  if (w->task == NULL || S.closing) return NULL;
  lua_State *T = w->task->co;
  if (!lua_checkstack(T, LUA_MINSTACK)) return NULL;
  return T;
}

void sl_waiter_resume(sl_waiter *w, int nresults) {
  sl_task *t = w->task;
  if (t == NULL || S.closing) {
    if (t != NULL) t->waiter = NULL;
    free(w);
    return;
  }
  if (w->state == WAITER_PREPARED) {
    w->state = WAITER_DONE_EARLY; /* sl_waiter_suspend returns the values */
    w->nresults = nresults;
    return;
  }
  t->waiter = NULL;
  t->nargs = nresults;
  free(w);
  ready_push(t);
}

void sl_waiter_free(sl_waiter *w) { free(w); }

/* ---- Queries ---- */

sl_task *sl_task_check(lua_State *L, int index) { return luaL_checkudata(L, index, SL_TASK_MT); }

sl_task_status sl_task_status_of(const sl_task *t) { return t->status; }

const char *sl_task_label(const sl_task *t) { return t->label; }

void sl_task_set_plain_report(sl_task *t) { t->plain_report = 1; }

int sl_sched_live_count(void) { return S.live; }

sl_task *sl_sched_live_first(void) { return S.live_head; }

sl_task *sl_task_live_next(const sl_task *task) { return task->live_next; }

lua_State *sl_task_thread(const sl_task *task) { return task->co; }

const char *sl_task_status_name(sl_task_status status) {
  static const char *const names[] = {"ready", "running", "suspended", "done", "failed", "cancelled"};
  return names[status];
}

void sl_task_push(lua_State *L, sl_task *t) {
  if (t == NULL || t->ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
}

int sl_task_push_results(lua_State *L, int index) {
  sl_task *t = sl_task_check(L, index);
  lua_getiuservalue(L, index, UV_RESULT);
  if (t->status != SL_TASK_DONE) {
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushstring(L, t->errname);
    return 3;
  }
  lua_Integer n = (lua_getfield(L, -1, "n"), lua_tointeger(L, -1));
  lua_pop(L, 1);
  if (n == 0) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_checkstack(L, (int)n, "too many results");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, -(int)i, i);
  lua_remove(L, -(int)n - 1);
  return (int)n;
}

/* ---- The cancellation error ---- */

void sl_push_cancelled(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, CANCELLED_MT ".value"); }

int sl_is_cancelled(lua_State *L, int index) {
  return luaL_testudata(L, index, CANCELLED_MT) != NULL;
}

static int cancelled_tostring(lua_State *L) {
  lua_pushliteral(L, "ECANCELED: task cancelled");
  return 1;
}

static void init_cancelled(lua_State *L) {
  luaL_newmetatable(L, CANCELLED_MT);
  lua_pushcfunction(L, cancelled_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "sandlot.cancelled");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  lua_newuserdatauv(L, 0, 0);
  luaL_setmetatable(L, CANCELLED_MT);
  lua_setfield(L, LUA_REGISTRYINDEX, CANCELLED_MT ".value");
}

/* ---- Lifetime ---- */

/* Runs for ended tasks, and for every task while the state closes. */
static int task_gc(lua_State *L) {
  sl_task *t = luaL_checkudata(L, 1, SL_TASK_MT);
  ready_remove(t);
  live_remove(t);
  if (t->waiter != NULL) {
    t->waiter->task = NULL;
    t->waiter = NULL;
  }
  while (t->listeners.next != &t->listeners) sl_listener_unlink(t->listeners.next);
  return 0;
}

void sl_sched_init(lua_State *L, sl_task_report_fn report, void (*all_ended)(void)) {
  memset(&S, 0, sizeof S);
  S.L = L;
  *task_slot(L) = NULL; /* lua_newstate leaves the extra space uninitialized */
  S.report = report;
  S.all_ended = all_ended;
  uv_idle_init(sl_loop(), &S.idle);
  S.idle_open = 1;
  init_cancelled(L);
  luaL_newmetatable(L, SL_TASK_MT);
  lua_pushcfunction(L, task_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

void sl_sched_close(void) {
  S.closing = 1;
  if (S.idle_open) {
    S.idle_open = 0;
    uv_close((uv_handle_t *)&S.idle, NULL);
  }
}
