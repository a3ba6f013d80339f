/* The host process: one Lua state, one libuv loop, the task scheduler,
 * output that stays clear of the REPL prompt, SIGINT handling and an
 * orderly shutdown. Internal to lua/; bindings use async.h. */
#ifndef SANDLOT_HOST_H
#define SANDLOT_HOST_H

#include <lua.h>
#include <stddef.h>
#include <stdio.h>

/* Threads in the uv threadpool unless UV_THREADPOOL_SIZE is set. Sixteen
 * slow core operations (CRIU dumps, restores, copies) in parallel, plus as
 * many for luv's file system and DNS requests and the REPL's reads from a
 * non-terminal stdin, so that neither kind queues behind the other. */
#define SL_THREADPOOL_SIZE "32"

/* Exit statuses of the sandlot program. */
enum {
  SL_EXIT_OK = 0,
  SL_EXIT_FAILED = 1,      /* the main script raised or could not load */
  SL_EXIT_USAGE = 2,
  SL_EXIT_INTERRUPTED = 130, /* SIGINT cancelled the tasks */
};

typedef enum { SL_HOST_SCRIPT, SL_HOST_REPL } sl_host_mode;

/* Set UV_THREADPOOL_SIZE when the user did not; must run before anything
 * queues work on the pool. */
void sl_host_size_threadpool(void);

/* Create the Lua state with luv on the default loop, the scheduler,
 * require "sandlot" and the log sink. Returns NULL on failure. */
lua_State *sl_host_open(sl_host_mode mode);

/* Run the function below `nargs` arguments on top of L as the main task and
 * run the loop until every task has ended. Returns the exit status. */
int sl_host_run_main(lua_State *L, int nargs);

/* Exit with `status` when the main task ends without failing (a host
 * command that reports its own errors). */
void sl_host_set_exit_status(int status);

/* Run the loop until sl_host_stop() (the REPL). */
void sl_host_run_loop(void);
void sl_host_stop(void);

/* Cancel what still runs, free the state, close the loop. */
void sl_host_close(lua_State *L);

/* Write text for the user. While the REPL shows a prompt, the prompt is
 * hidden around the write and drawn again after it. */
void sl_host_write(FILE *stream, const char *text, size_t length);

/* Hooks the REPL installs so that sl_host_write can hide its prompt. */
typedef struct {
  void (*hide)(void);
  void (*show)(void);
  /* SIGINT while the REPL runs. `chunk` is the id given to
   * sl_host_set_interruptible() when the signal arrived, 0 when no chunk
   * ran then; that chunk may have ended since. */
  void (*interrupt)(int chunk);
} sl_host_repl_hooks;
void sl_host_set_repl_hooks(const sl_host_repl_hooks *hooks);

/* Make SIGINT interrupt Lua code that never suspends while `chunk` is not
 * 0. Scripts are always interruptible. The REPL passes the id of the chunk
 * that runs and 0 at the prompt, so that Ctrl-C at the prompt never hits a
 * background task. */
void sl_host_set_interruptible(int chunk);

/* In the REPL, run the interrupt hook now if a SIGINT arrived and was not
 * handled yet; returns 1 if it did. The REPL calls it before reading keys,
 * so that keys typed after Ctrl-C never reach the line Ctrl-C dropped. */
int sl_host_handle_sigint(void);

#endif
