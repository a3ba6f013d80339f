/* The C API that Lua bindings of the core use to suspend the calling task.
 *
 * Every Lua function that waits runs inside a task: a coroutine driven by
 * the host's scheduler on the one libuv loop (uv_default_loop()). A binding
 * suspends the task, and something on the loop thread resumes it later
 * with values that become the binding's return values in Lua. There are
 * two patterns.
 *
 * (a) Blocking core work on the uv threadpool:
 *
 *     static int l_create(lua_State *L) {
 *       sl_async_check(L, "Sandbox.create");        // raises before allocating
 *       struct create_req *req = calloc(1, sizeof *req);
 *       ... copy arguments into req (no Lua values) ...
 *       return sl_async_work(L, req, create_work, create_push, create_free);
 *     }
 *     static void create_work(void *data) {          // pool thread, no Lua
 *       struct create_req *req = data;
 *       req->rc = sl_sandbox_create(&req->opts, &req->sandbox, &req->err);
 *     }
 *     static int create_push(lua_State *T, void *data) {  // loop thread
 *       struct create_req *req = data;
 *       if (req->rc < 0) return sl_push_error(T, &req->err);
 *       ... push the sandbox userdata on T ...
 *       return 1;
 *     }
 *
 * (b) Waiting for a loop-native C callback (the agent client's response,
 *     a uv_timer, a child process exit):
 *
 *     sl_async_check(L, "sandbox:exec");
 *     struct exec_op *op = calloc(1, sizeof *op);
 *     op->waiter = sl_waiter_new(L, exec_cancel, op);
 *     if (start_request(op) < 0) {                 // could not start
 *       sl_waiter_free(op->waiter); free(op);
 *       return sl_push_fail(L, EIO, "exec failed: %s", why);
 *     }
 *     return sl_waiter_suspend(L, op->waiter);
 *
 *     // later, in the native callback on the loop thread:
 *     lua_State *T = sl_waiter_thread(op->waiter);
 *     int n = 0;
 *     if (T != NULL) { lua_pushinteger(T, status); n = 1; }
 *     sl_waiter_resume(op->waiter, n);            // exactly once, frees it
 *     free(op);
 *
 * Cancellation. task:cancel() on a suspended task raises the cancellation
 * error in the task at its suspension point, on the next loop iteration,
 * without waiting for the operation. For (a) the work is removed from the
 * pool queue if it has not started; otherwise it runs to completion, the
 * push function is skipped and free is called. For (b) the waiter's cancel
 * callback runs first (stop the operation if it can be stopped), and the
 * waiter is abandoned: sl_waiter_thread() returns NULL from then on, and the
 * binding still calls sl_waiter_resume(w, 0) once to free it. The same
 * holds for every waiter still pending while the host shuts down.
 *
 * All functions here run on the loop thread only. */
#ifndef SANDLOT_ASYNC_H
#define SANDLOT_ASYNC_H

#include <lua.h>
#include <uv.h>

#include "error.h"

/* The loop the host runs; the same loop luv uses. */
uv_loop_t *sl_loop(void);

/* Raise a Lua error unless the running code can suspend: it must run in a
 * task (sandlot.spawn, the main script, a REPL chunk) and not behind a C
 * call boundary (metamethod called from C, table.sort comparator, luv
 * callback, plain coroutine). `fname` names the Lua function in the
 * message ("sandlot.sleep"), and the position is the first caller outside
 * sandlot's Lua modules (sl_raise). Call it before allocating anything,
 * because it does not return when it raises. */
void sl_async_check(lua_State *L, const char *fname);

/* Returns 1 when sl_async_check() would not raise. */
int sl_async_can_suspend(lua_State *L);

/* Pattern (a): the threadpool. */

/* Runs on a pool thread. It must not touch Lua or the loop. */
typedef void (*sl_work_fn)(void *data);
/* Runs on the loop thread after the work, with T the task's thread; pushes
 * the results on T and returns how many. Skipped when the task was
 * cancelled or the host is shutting down. */
typedef int (*sl_push_fn)(lua_State *T, void *data);
/* Releases `data`. Called exactly once, after the work (or instead of it
 * when the work was removed from the queue), whether or not push ran. */
typedef void (*sl_free_fn)(void *data);

/* Queue `work` on the uv threadpool and suspend the calling task until it
 * finishes; use as `return sl_async_work(L, data, work, push, free_data);`
 * after sl_async_check(). `data` belongs to the request from here on. When
 * the work cannot be queued, free_data(data) runs and the function returns
 * the fail tuple without suspending. */
int sl_async_work(lua_State *L, void *data, sl_work_fn work, sl_push_fn push,
                  sl_free_fn free_data);

/* Pattern (b): a waiter resumed from a loop-native callback. */

typedef struct sl_waiter sl_waiter;

/* Called on the loop thread when the waiting task is cancelled or the host
 * shuts down, before the waiter is abandoned. It should stop the pending
 * operation if it can; it must not free the waiter. May be NULL. */
typedef void (*sl_cancel_fn)(sl_waiter *w, void *data);

/* Create a waiter for the task running on L. Call sl_async_check() first.
 * The binding owns the waiter until it calls sl_waiter_resume() or, when it
 * never suspended, sl_waiter_free(). */
sl_waiter *sl_waiter_new(lua_State *L, sl_cancel_fn cancel, void *data);

/* Suspend the task until sl_waiter_resume(); use as
 * `return sl_waiter_suspend(L, w);`. The values passed to resume become the
 * Lua function's results. If resume already happened (the callback ran
 * synchronously before this call), returns those values without
 * suspending. */
int sl_waiter_suspend(lua_State *L, sl_waiter *w);

/* The thread to push results on, or NULL when the task no longer waits
 * (cancelled, or the host is shutting down). */
lua_State *sl_waiter_thread(sl_waiter *w);

/* Resume the task with the `nresults` values on top of the thread returned
 * by sl_waiter_thread() (0 when it returned NULL) and free the waiter. The
 * task runs on a later loop iteration, never inside this call. */
void sl_waiter_resume(sl_waiter *w, int nresults);

/* Free a waiter that was never passed to sl_waiter_suspend(). */
void sl_waiter_free(sl_waiter *w);

/* Failures. */

/* Push the fail tuple `nil, "ENAME: message", "ENAME"` for `err`; returns 3.
 * `err->msg` already reads "message: subject". */
int sl_push_error(lua_State *L, const sl_error *err);

/* Like sl_push_error() for an error built from `code` and a format. */
int sl_push_fail(lua_State *L, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
