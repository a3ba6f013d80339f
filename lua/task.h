/* The task scheduler: coroutines resumed on the one libuv loop.
 *
 * A task is a full userdata (metatable "sandlot.task") that owns a Lua
 * thread. The scheduler keeps every task that has not ended anchored in the
 * registry, so a task is never collected while it runs or waits. A task is
 * resumed only from the loop, where a uv_idle handle drains the ready queue
 * in wake order. It never runs inside the call that woke it, so waking is
 * safe at any stack depth and chains of waits do not grow the C stack.
 *
 * Internal to the host; bindings use async.h. */
#ifndef SANDLOT_TASK_H
#define SANDLOT_TASK_H

#include <lua.h>

#define SL_TASK_MT "sandlot.task"

typedef enum {
  SL_TASK_READY,     /* spawned or woken, waiting for its turn on the loop */
  SL_TASK_RUNNING,   /* executing now */
  SL_TASK_SUSPENDED, /* waiting for an operation */
  SL_TASK_DONE,      /* returned */
  SL_TASK_FAILED,    /* raised an error */
  SL_TASK_CANCELLED, /* ended by cancellation */
} sl_task_status;

typedef struct sl_task sl_task;

/* A node in a task's list of end listeners. `fn` runs on the loop thread
 * once, when the task ends, after the node was unlinked. */
typedef struct sl_listener {
  struct sl_listener *next, *prev;
  void (*fn)(struct sl_listener *listener, sl_task *ended);
} sl_listener;

/* How the scheduler reports a failed task: `text` is the error message
 * with its traceback; `label` is "task 3 (demo.lua:10)". */
typedef void (*sl_task_report_fn)(sl_task *task, const char *label, const char *text);

/* Set up the scheduler on the main state L (metatables, the idle handle).
 * Call it right after creating L, before any coroutine exists, because
 * new threads copy the main thread's task slot.
 * `report` prints failures; `all_ended` runs whenever the number of tasks
 * that have not ended drops to zero. */
void sl_sched_init(lua_State *L, sl_task_report_fn report, void (*all_ended)(void));

/* Start shutting down: waiters report no thread from now on, so no task is
 * resumed again. Closes the idle handle. */
void sl_sched_close(void);

/* Start a task running the function below `nargs` arguments on top of L.
 * Pops them and pushes the task userdata. The task first runs on a later
 * loop iteration. */
sl_task *sl_task_spawn(lua_State *L, int nargs);

/* The task whose thread is L (also when L is a suspended task thread), or
 * NULL when L is the main thread or a plain coroutine. */
sl_task *sl_task_of(lua_State *L);
sl_task *sl_task_check(lua_State *L, int index);

/* Request cancellation; returns 0 when the task had already ended. */
int sl_task_cancel(sl_task *task);
/* Cancel every task that has not ended; returns how many. */
int sl_sched_cancel_all(void);

/* Push the userdata of a task that has not ended, or nil. */
void sl_task_push(lua_State *L, sl_task *task);

sl_task_status sl_task_status_of(const sl_task *task);
const char *sl_task_status_name(sl_task_status status);
const char *sl_task_label(const sl_task *task);

/* Report failures of this task as the bare traceback, without the
 * "task N (...) failed" label (the main script, REPL chunks). */
void sl_task_set_plain_report(sl_task *task);

/* Add a listener that runs when the task ends; the task must not have
 * ended. Remove it with sl_listener_unlink(). */
void sl_task_listen(sl_task *task, sl_listener *listener);
void sl_listener_unlink(sl_listener *listener);

/* Push what task:wait() returns for an ended task; returns the count. */
int sl_task_push_results(lua_State *L, int index);

/* Number of tasks that have not ended. */
int sl_sched_live_count(void);

/* The tasks that have not ended, newest first: the first one (NULL when
 * none), then each one's successor. The list must not change while it is
 * walked. */
sl_task *sl_sched_live_first(void);
sl_task *sl_task_live_next(const sl_task *task);

/* The coroutine of the task. */
lua_State *sl_task_thread(const sl_task *task);

/* The thread of the task executing Lua code now, or NULL. Read by the
 * SIGINT handler, so it is a plain volatile pointer. */
extern lua_State *volatile sl_sched_running_thread;

/* Make the task executing Lua code now, if any, raise the cancellation
 * error at its next instruction. Safe to call from a signal handler; it
 * stops loops that never suspend. */
void sl_sched_interrupt(void);

/* Push the unique cancellation error value (sandlot.cancelled). */
void sl_push_cancelled(lua_State *L);
int sl_is_cancelled(lua_State *L, int index);

/* Suspend the running task on an internal wait: like sl_waiter_suspend()
 * but, once resumed normally, `after` runs as the continuation with the
 * resume values on top of the original stack (ctx is the stack top at the
 * time of the call). */
typedef struct sl_waiter sl_waiter;
int sl_waiter_suspend_k(lua_State *L, sl_waiter *w, lua_KFunction after);

#endif
