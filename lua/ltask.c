/* sandlot.core functions for tasks: spawn, sleep, wait, cancel, wait_any. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "lcore.h"
#include "task.h"

static int task_ended(const sl_task *t) { return sl_task_status_of(t) >= SL_TASK_DONE; }

/* ---- sandlot.spawn(fn, ...) ---- */

/* Raise unless argument 1 of the public function `fname` has type `type`,
 * naming `fname` (the same function is also reachable as sandlot.core.X,
 * which Lua's own messages might name). */
static void check_arg_type(lua_State *L, const char *fname, int type, const char *expected) {
  if (lua_type(L, 1) != type)
    sl_arg_error(L, fname, 1, lua_pushfstring(L, "expected %s, got %s", expected, luaL_typename(L, 1)));
}

static int l_spawn(lua_State *L) {
  check_arg_type(L, "sandlot.spawn", LUA_TFUNCTION, "a function");
  sl_task_spawn(L, lua_gettop(L) - 1);
  return 1;
}

static int l_current(lua_State *L) {
  sl_task_push(L, sl_task_of(L));
  return 1;
}

/* ---- sandlot.sleep(ms): a uv_timer resumes the task ---- */

typedef struct {
  uv_timer_t timer;
  sl_waiter *waiter;
} sleep_op;

static void sleep_closed(uv_handle_t *handle) { free(handle->data); }

static void sleep_fired(uv_timer_t *timer) {
  sleep_op *op = timer->data;
  sl_waiter_resume(op->waiter, 0);
  uv_close((uv_handle_t *)timer, sleep_closed);
}

static void sleep_cancel(sl_waiter *w, void *data) {
  sleep_op *op = data;
  uv_timer_stop(&op->timer);
  sl_waiter_resume(w, 0);
  uv_close((uv_handle_t *)&op->timer, sleep_closed);
}

static int l_sleep(lua_State *L) {
  check_arg_type(L, "sandlot.sleep", LUA_TNUMBER, "milliseconds");
  lua_Number ms = lua_tonumber(L, 1);
  if (!(ms >= 0 && ms <= 1e12))
    sl_arg_error(L, "sandlot.sleep", 1,
                 lua_pushfstring(L, "expected milliseconds from 0 to 1e12, got %s",
                                 luaL_tolstring(L, 1, NULL)));
  sl_async_check(L, "sandlot.sleep");
  sleep_op *op = calloc(1, sizeof *op);
  if (op == NULL) return luaL_error(L, "not enough memory");
  uv_timer_init(sl_loop(), &op->timer);
  op->timer.data = op;
  op->waiter = sl_waiter_new(L, sleep_cancel, op);
  uv_timer_start(&op->timer, sleep_fired, (uint64_t)ceil(ms), 0);
  return sl_waiter_suspend(L, op->waiter);
}

/* ---- Waiting for tasks to end ---- */

struct any_wait;

typedef struct {
  sl_listener listener; /* first member: the listener points to its link */
  struct any_wait *owner;
  int index;
} any_link;

typedef struct any_wait {
  sl_waiter *waiter;
  int count;
  any_link links[];
} any_wait;

static void any_unlink_all(any_wait *a) {
  for (int i = 0; i < a->count; i++) sl_listener_unlink(&a->links[i].listener);
}

/* The first task that ends resumes the waiter with (task, index). */
static void any_ended(sl_listener *listener, sl_task *ended) {
  any_link *link = (any_link *)listener;
  any_wait *a = link->owner;
  any_unlink_all(a);
  lua_State *T = sl_waiter_thread(a->waiter);
  int n = 0;
  if (T != NULL) {
    sl_task_push(T, ended);
    lua_pushinteger(T, link->index);
    n = 2;
  }
  sl_waiter_resume(a->waiter, n);
  free(a);
}

static void any_cancel(sl_waiter *w, void *data) {
  any_wait *a = data;
  any_unlink_all(a);
  sl_waiter_resume(w, 0);
  free(a);
}

/* Suspend until one of the `count` tasks at stack indexes first.. ends. */
static int wait_for_any(lua_State *L, int first, int count, lua_KFunction after) {
  any_wait *a = calloc(1, sizeof *a + (size_t)count * sizeof a->links[0]);
  if (a == NULL) return luaL_error(L, "not enough memory");
  a->count = count;
  for (int i = 0; i < count; i++) {
    a->links[i].listener.fn = any_ended;
    a->links[i].owner = a;
    a->links[i].index = i + 1;
    sl_task_listen(sl_task_check(L, first + i), &a->links[i].listener);
  }
  a->waiter = sl_waiter_new(L, any_cancel, a);
  return sl_waiter_suspend_k(L, a->waiter, after);
}

static int wait_after(lua_State *L, int status, lua_KContext ctx) {
  lua_settop(L, 1);
  return sl_task_push_results(L, 1);
}

/* task:wait() returns the task's results (true when it returned none), or
 * the fail tuple when it failed or was cancelled. */
static int task_wait(lua_State *L) {
  sl_task *t = sl_task_check(L, 1);
  lua_settop(L, 1);
  if (task_ended(t)) return sl_task_push_results(L, 1);
  sl_async_check(L, "task:wait");
  if (sl_task_of(L) == t) return luaL_error(L, "task:wait: a task cannot wait for itself");
  return wait_for_any(L, 1, 1, wait_after);
}

static int wait_any_after(lua_State *L, int status, lua_KContext ctx) { return 2; }

/* sandlot.wait_any{t1, t2, ...} returns the first task to end and its
 * index; when several have ended already, the one with the lowest index. */
static int l_wait_any(lua_State *L) {
  check_arg_type(L, "sandlot.wait_any", LUA_TTABLE, "a list of tasks");
  lua_settop(L, 1);
  int count = (int)luaL_len(L, 1);
  luaL_argcheck(L, count > 0, 1, "expected a non-empty list of tasks");
  luaL_checkstack(L, count, "too many tasks");
  for (int i = 1; i <= count; i++) {
    lua_rawgeti(L, 1, i);
    if (luaL_testudata(L, -1, SL_TASK_MT) == NULL)
      return luaL_error(L, "sandlot.wait_any: element %d is a %s, expected a task", i,
                        luaL_typename(L, -1));
  }
  for (int i = 1; i <= count; i++) {
    if (task_ended(sl_task_check(L, 1 + i))) {
      lua_pushvalue(L, 1 + i);
      lua_pushinteger(L, i);
      return 2;
    }
  }
  sl_async_check(L, "sandlot.wait_any");
  sl_task *self = sl_task_of(L);
  for (int i = 1; i <= count; i++)
    if (sl_task_check(L, 1 + i) == self)
      return luaL_error(L, "sandlot.wait_any: a task cannot wait for itself (element %d)", i);
  return wait_for_any(L, 2, count, wait_any_after);
}

/* ---- sandlot.await(start): a task waits for a Lua callback ---- */

typedef struct {
  sl_waiter *waiter; /* while the task is suspended */
  int done;
} await_op;

/* The `done` function given to start: stores its arguments and resumes the
 * task. Calls after the first one, and calls after a cancellation, do
 * nothing. */
static int await_done(lua_State *L) {
  await_op *op = lua_touserdata(L, lua_upvalueindex(1));
  if (op->done) return 0;
  op->done = 1;
  int n = lua_gettop(L);
  lua_createtable(L, n, 1);
  lua_insert(L, 1);
  for (int i = n; i >= 1; i--) lua_rawseti(L, 1, i);
  lua_pushinteger(L, n);
  lua_setfield(L, 1, "n");
  lua_setiuservalue(L, lua_upvalueindex(1), 1);
  if (op->waiter != NULL) {
    sl_waiter *w = op->waiter;
    op->waiter = NULL;
    sl_waiter_resume(w, 0);
  }
  return 0;
}

static void await_cancel(sl_waiter *w, void *data) {
  await_op *op = data;
  op->waiter = NULL;
  sl_waiter_resume(w, 0);
}

/* Push the values given to done; the op is at stack index 2. */
static int await_results(lua_State *L, int status, lua_KContext ctx) {
  lua_settop(L, 2);
  lua_getiuservalue(L, 2, 1);
  lua_Integer n = (lua_getfield(L, 3, "n"), lua_tointeger(L, -1));
  lua_pop(L, 1);
  luaL_checkstack(L, (int)n, "too many results");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 3, i);
  return (int)n;
}

/* sandlot.await(start) calls start(done) and suspends until some callback
 * calls done(...), then returns done's arguments. start must not suspend.
 * The op stays on this frame's stack while the task waits, so it stays
 * valid even when `done` is never called. */
static int l_await(lua_State *L) {
  check_arg_type(L, "sandlot.await", LUA_TFUNCTION, "a function");
  sl_async_check(L, "sandlot.await");
  lua_settop(L, 1);
  await_op *op = lua_newuserdatauv(L, sizeof *op, 1);
  op->waiter = NULL;
  op->done = 0;
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, await_done, 1);
  lua_call(L, 1, 0);
  if (op->done) return await_results(L, LUA_OK, 0);
  op->waiter = sl_waiter_new(L, await_cancel, op);
  return sl_waiter_suspend_k(L, op->waiter, await_results);
}

/* ---- The task object ---- */

static int task_cancel(lua_State *L) {
  lua_pushboolean(L, sl_task_cancel(sl_task_check(L, 1)));
  return 1;
}

static int task_close(lua_State *L) {
  sl_task_cancel(sl_task_check(L, 1));
  return 0;
}

static int task_tostring(lua_State *L) {
  sl_task *t = sl_task_check(L, 1);
  lua_pushfstring(L, "sandlot.task: %s, %s", sl_task_label(t),
                  sl_task_status_name(sl_task_status_of(t)));
  return 1;
}

static int task_index(lua_State *L) {
  sl_task *t = sl_task_check(L, 1);
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "status") == 0) {
    lua_pushstring(L, sl_task_status_name(sl_task_status_of(t)));
  } else if (strcmp(key, "label") == 0) {
    lua_pushstring(L, sl_task_label(t));
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

/* The result table {n = count, ...} of a task that returned, for the
 * REPL; nil otherwise. */
static int l_task_values(lua_State *L) {
  sl_task *t = sl_task_check(L, 1);
  if (sl_task_status_of(t) != SL_TASK_DONE) return 0;
  lua_getiuservalue(L, 1, 2);
  return 1;
}

static int l_cancel_all(lua_State *L) {
  lua_pushinteger(L, sl_sched_cancel_all());
  return 1;
}

void sl_open_task(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", task_wait},
      {"cancel", task_cancel},
      {NULL, NULL},
  };
  static const luaL_Reg functions[] = {
      {"spawn", l_spawn},
      {"sleep", l_sleep},
      {"current", l_current},
      {"wait_any", l_wait_any},
      {"await", l_await},
      {"task_values", l_task_values},
      {"cancel_all", l_cancel_all},
      {NULL, NULL},
  };
  luaL_setfuncs(L, functions, 0);
  sl_push_cancelled(L);
  lua_setfield(L, -2, "cancelled");

  luaL_getmetatable(L, SL_TASK_MT);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, task_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, task_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}
