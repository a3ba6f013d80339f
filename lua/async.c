#include "async.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdlib.h>

#include "lcore.h"
#include "task.h"

uv_loop_t *sl_loop(void) { return uv_default_loop(); }

int sl_async_can_suspend(lua_State *L) {
  sl_task *t = sl_task_of(L);
  return t != NULL && sl_task_status_of(t) == SL_TASK_RUNNING && lua_isyieldable(L);
}

void sl_async_check(lua_State *L, const char *fname) {
  if (sl_async_can_suspend(L)) return;
  if (sl_task_of(L) != NULL)
    sl_raise(L,
             "%s: cannot suspend across a C call boundary (a metamethod, iterator or "
             "callback called from C, such as a table.sort comparator); call it "
             "outside that function",
             fname);
  if (lua_pushthread(L)) {
    lua_pop(L, 1);
    sl_raise(L,
             "%s: cannot suspend outside a task (luv callbacks run outside tasks); "
             "run the code in a task with sandlot.spawn(function() ... end)",
             fname);
  }
  lua_pop(L, 1);
  sl_raise(L,
           "%s: cannot suspend in a coroutine that is not a sandlot task; start it "
           "with sandlot.spawn instead of coroutine.create or coroutine.wrap",
           fname);
}

/* ---- Threadpool work ---- */

typedef struct {
  uv_work_t req;
  sl_waiter *waiter;
  void *data;
  sl_work_fn work;
  sl_push_fn push;
  sl_free_fn free_data;
} pool_request;

static void pool_work(uv_work_t *req) {
  pool_request *r = req->data;
  r->work(r->data);
}

static void pool_after(uv_work_t *req, int status) {
  pool_request *r = req->data;
  lua_State *T = sl_waiter_thread(r->waiter);
  int n = 0;
  if (T != NULL) {
    if (status == 0)
      n = r->push(T, r->data);
    else
      n = sl_push_fail(T, -status, "threadpool work failed: %s", uv_strerror(status));
  }
  sl_waiter_resume(r->waiter, n);
  r->free_data(r->data);
  free(r);
}

/* Remove the work from the queue when it has not started; when it runs
 * already, uv_cancel fails and pool_after frees it once it ends. */
static void pool_cancel(sl_waiter *w, void *data) {
  pool_request *r = data;
  uv_cancel((uv_req_t *)&r->req);
}

int sl_async_work(lua_State *L, void *data, sl_work_fn work, sl_push_fn push,
                  sl_free_fn free_data) {
  pool_request *r = calloc(1, sizeof *r);
  if (r == NULL) {
    free_data(data);
    return sl_push_fail(L, ENOMEM, "threadpool work failed: out of memory");
  }
  r->req.data = r;
  r->data = data;
  r->work = work;
  r->push = push;
  r->free_data = free_data;
  r->waiter = sl_waiter_new(L, pool_cancel, r);
  int rc = uv_queue_work(sl_loop(), &r->req, pool_work, pool_after);
  if (rc < 0) {
    sl_waiter_free(r->waiter);
    free_data(data);
    free(r);
    return sl_push_fail(L, -rc, "threadpool work failed: %s", uv_strerror(rc));
  }
  return sl_waiter_suspend(L, r->waiter);
}

/* ---- Fail tuples ---- */

int sl_push_error(lua_State *L, const sl_error *err) {
  const char *name = sl_errname(err->code);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", name, err->msg);
  lua_pushstring(L, name);
  return 3;
}

int sl_push_fail(lua_State *L, int code, const char *fmt, ...) {
  sl_error err;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err.msg, sizeof err.msg, fmt, ap);
  va_end(ap);
  err.code = code > 0 ? code : EIO;
  return sl_push_error(L, &err);
}
