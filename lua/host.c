#include "host.h"

#include <lauxlib.h>
#include <luv/luv.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "lcore.h"
#include "log.h"
#include "task.h"

static struct {
  lua_State *L;
  sl_host_mode mode;
  sl_host_repl_hooks repl;
  uv_async_t sigint_async;
  volatile sig_atomic_t sigint_count;
  volatile sig_atomic_t interruptible; /* the REPL's chunk id, 0 at the prompt */
  volatile sig_atomic_t sigint_chunk;  /* `interruptible` when SIGINT came */
  volatile sig_atomic_t sigint_pending; /* not yet handled on the loop */
  struct sigaction old_sigint;
  sl_listener main_listener;
  int main_ref;              /* registry anchor of the main task, for its results */
  int exit_status;
  /* Log records from threads other than the loop's, written by the loop. */
  uv_thread_t loop_thread;
  uv_async_t log_async;
  pthread_mutex_t log_lock;
  char *log_queue;
  size_t log_queue_length;
} H;

/* ---- Output ---- */

void sl_host_write(FILE *stream, const char *text, size_t length) {
  if (H.repl.hide != NULL) H.repl.hide();
  fwrite(text, 1, length, stream);
  fflush(stream);
  if (H.repl.show != NULL) H.repl.show();
}

void sl_host_set_repl_hooks(const sl_host_repl_hooks *hooks) {
  if (hooks != NULL)
    H.repl = *hooks;
  else
    memset(&H.repl, 0, sizeof H.repl);
}

static void write_line(FILE *stream, const char *text) {
  size_t length = strlen(text);
  char *line = malloc(length + 2);
  if (line == NULL) return;
  memcpy(line, text, length);
  line[length] = '\n';
  sl_host_write(stream, line, length + 1);
  free(line);
}

/* Write the records queued by other threads, in the order they came. */
static void flush_log_queue(void) {
  pthread_mutex_lock(&H.log_lock);
  char *text = H.log_queue;
  size_t length = H.log_queue_length;
  H.log_queue = NULL;
  H.log_queue_length = 0;
  pthread_mutex_unlock(&H.log_lock);
  if (text != NULL) sl_host_write(stderr, text, length);
  free(text);
}

static void log_async_cb(uv_async_t *handle) { flush_log_queue(); }

/* Core code logs from threadpool threads too. Only the loop thread may
 * write, because writing redraws the REPL prompt through readline, so
 * other threads queue their record and wake the loop. */
static void log_sink(sl_log_level level, const char *line, void *data) {
  uv_thread_t self = uv_thread_self();
  if (uv_thread_equal(&self, &H.loop_thread)) {
    flush_log_queue();
    write_line(stderr, line);
    return;
  }
  size_t length = strlen(line);
  pthread_mutex_lock(&H.log_lock);
  char *grown = realloc(H.log_queue, H.log_queue_length + length + 1);
  if (grown != NULL) {
    H.log_queue = grown;
    memcpy(H.log_queue + H.log_queue_length, line, length);
    H.log_queue[H.log_queue_length + length] = '\n';
    H.log_queue_length += length + 1;
  }
  pthread_mutex_unlock(&H.log_lock);
  uv_async_send(&H.log_async);
}

static void install_log_sink(void) {
  H.loop_thread = uv_thread_self();
  pthread_mutex_init(&H.log_lock, NULL);
  uv_async_init(sl_loop(), &H.log_async, log_async_cb);
  uv_unref((uv_handle_t *)&H.log_async);
  sl_log_set_sink(log_sink, NULL);
}

/* print() through sl_host_write, so that it never breaks the prompt. */
static int host_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t length;
  const char *text = lua_tolstring(L, -1, &length);
  sl_host_write(stdout, text, length);
  return 0;
}

/* ---- Failures ---- */

static void report_task_failure(sl_task *task, const char *label, const char *text) {
  lua_State *L = H.L;
  if (label != NULL)
    lua_pushfstring(L, "sandlot: %s failed: %s", label, text);
  else
    lua_pushfstring(L, "sandlot: %s", text);
  write_line(stderr, lua_tostring(L, -1));
  lua_pop(L, 1);
}

static int traceback_handler(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* luv calls every Lua callback through this hook. An error is printed with
 * its traceback and the host keeps running; luv's default hook would exit
 * the process. Returns the number of results, or -status on error. */
static int luv_callback_pcall(lua_State *L, int nargs, int nresults, int flags) {
  int base = lua_gettop(L) - nargs; /* the function */
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nresults, base);
  if (rc != LUA_OK) {
    lua_pushfstring(L, "sandlot: luv callback failed: %s", lua_tostring(L, -1));
    write_line(stderr, lua_tostring(L, -1));
    lua_settop(L, base - 1);
    return -rc;
  }
  lua_remove(L, base);
  return nresults == LUA_MULTRET ? lua_gettop(L) - base + 1 : nresults;
}

/* ---- luv ---- */

static int luv_disabled(lua_State *L) {
  return luaL_error(L, "%s", lua_tostring(L, lua_upvalueindex(1)));
}

static void disable_luv_function(lua_State *L, const char *name, const char *message) {
  lua_pushstring(L, message);
  lua_pushcclosure(L, luv_disabled, 1);
  lua_setfield(L, -2, name);
}

/* Open luv on the host's loop and register it as package.loaded.luv, so
 * require "luv" returns this binding. Functions that would run, close or
 * walk the shared loop from Lua raise instead, because the loop also contains C
 * handles that luv's walk cannot represent. */
static void open_luv(lua_State *L) {
  luv_set_loop(L, sl_loop());
  luv_set_callback(L, luv_callback_pcall);
  luaL_requiref(L, "luv", luaopen_luv, 0);
  disable_luv_function(L, "run",
                      "uv.run: the sandlot host runs the loop; suspend a task with "
                      "sandlot.sleep or task:wait instead");
  disable_luv_function(L, "walk", "uv.walk: not available in sandlot (the loop contains C handles)");
  disable_luv_function(L, "loop_close", "uv.loop_close: the sandlot host closes the loop");
  lua_pop(L, 1);
}

/* ---- SIGINT ---- */

/* First SIGINT: interrupt Lua code that never suspends and cancel tasks
 * (the REPL cancels only its running chunk). In a script, a second SIGINT
 * while the tasks still unwind ends the process. */
static void on_sigint(int signo) {
  H.sigint_count++;
  if (H.mode == SL_HOST_SCRIPT && H.sigint_count > 1) {
    sigaction(SIGINT, &H.old_sigint, NULL);
    raise(SIGINT);
    return;
  }
  H.sigint_chunk = H.interruptible;
  H.sigint_pending = 1;
  if (H.interruptible) sl_sched_interrupt();
  uv_async_send(&H.sigint_async);
}

void sl_host_set_interruptible(int chunk) { H.interruptible = chunk; }

int sl_host_handle_sigint(void) {
  if (!H.sigint_pending) return 0;
  H.sigint_pending = 0;
  H.sigint_count = 0;
  if (H.repl.interrupt != NULL) H.repl.interrupt(H.sigint_chunk);
  return 1;
}

static void sigint_async_cb(uv_async_t *handle) {
  if (H.mode == SL_HOST_REPL) {
    sl_host_handle_sigint();
    return;
  }
  H.sigint_pending = 0;
  H.exit_status = SL_EXIT_INTERRUPTED;
  sl_sched_cancel_all();
}

static void install_sigint(void) {
  uv_async_init(sl_loop(), &H.sigint_async, sigint_async_cb);
  uv_unref((uv_handle_t *)&H.sigint_async);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &H.old_sigint);
}

static void on_sigpipe(int signo) { (void)signo; }

/* A write to a socket whose peer is gone (an agent that ended, the port
 * of a VM that was paused or killed) must fail with EPIPE, not kill the
 * host: libuv leaves SIGPIPE to the program. A handler rather than
 * SIG_IGN, because exec resets handled signals to their default, so the
 * host's child processes get the usual SIGPIPE. */
static void install_sigpipe(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigpipe;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);
}

/* ---- Setup ---- */

void sl_host_size_threadpool(void) { setenv("UV_THREADPOOL_SIZE", SL_THREADPOOL_SIZE, 0); }

static void all_tasks_ended(void) {
  if (H.mode == SL_HOST_SCRIPT) uv_stop(sl_loop());
}

static void check_log_level(void) {
  const char *value = getenv("SANDLOT_LOG");
  if (value != NULL && sl_log_parse_level(value) < 0)
    fprintf(stderr,
            "sandlot: invalid SANDLOT_LOG=%s (expected debug, info, warn, error or off); "
            "using warn\n",
            value);
}

lua_State *sl_host_open(sl_host_mode mode) {
  memset(&H, 0, sizeof H);
  H.mode = mode;
  H.interruptible = mode == SL_HOST_SCRIPT;
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  H.L = L;
  sl_sched_init(L, report_task_failure, all_tasks_ended);
  luaL_openlibs(L);
  open_luv(L);
  sl_install_modules(L);
  lua_register(L, "print", host_print);
  check_log_level();
  install_log_sink();
  install_sigint();
  install_sigpipe();
  return L;
}

/* ---- Running ---- */

/* Whether the main task returned a fail tuple (nil, "ENAME: message"),
 * which the host treats like a raised error: the message is printed. */
static int returned_failure(void) {
  lua_State *L = H.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, H.main_ref);
  int top = lua_gettop(L);
  int n = sl_task_push_results(L, top);
  int failed = n >= 2 && lua_isnil(L, top + 1) && lua_type(L, top + 2) == LUA_TSTRING;
  if (failed) {
    const char *message = lua_tostring(L, top + 2);
    char text[2048];
    int length = snprintf(text, sizeof text, "sandlot: %s\n", message);
    sl_host_write(stderr, text, length < (int)sizeof text ? (size_t)length : sizeof text - 1);
  }
  lua_settop(L, top - 1);
  return failed;
}

static void main_ended(sl_listener *listener, sl_task *task) {
  switch (sl_task_status_of(task)) {
  case SL_TASK_DONE:
    if (!returned_failure()) return;
    H.exit_status = SL_EXIT_FAILED;
    break;
  case SL_TASK_CANCELLED:
    if (H.exit_status == SL_EXIT_OK) H.exit_status = SL_EXIT_FAILED;
    break;
  default:
    H.exit_status = SL_EXIT_FAILED;
    break;
  }
  sl_sched_cancel_all();
}

/* List each task that has not ended: its label (where its function is
 * defined) and the line where it waits. */
static void print_stuck_tasks(void) {
  for (sl_task *t = sl_sched_live_first(); t != NULL; t = sl_task_live_next(t)) {
    char where[256];
    if (sl_user_position(sl_task_thread(t), where, sizeof where))
      fprintf(stderr, "  %s, waiting at %s\n", sl_task_label(t), where);
    else
      fprintf(stderr, "  %s\n", sl_task_label(t));
  }
}

/* Run the loop until no task is left. Tasks that wait for something that
 * nothing on the loop can deliver are cancelled once, with a warning. */
static void run_until_tasks_end(void) {
  int cancelled_stuck = 0;
  while (sl_sched_live_count() > 0) {
    uv_run(sl_loop(), UV_RUN_DEFAULT);
    if (sl_sched_live_count() == 0 || uv_loop_alive(sl_loop())) continue;
    if (cancelled_stuck) {
      fprintf(stderr, "sandlot: %d task(s) ignored cancellation and can never resume\n",
              sl_sched_live_count());
      return;
    }
    fprintf(stderr, "sandlot: %d task(s) wait for something that nothing will deliver; "
                    "cancelling them:\n",
            sl_sched_live_count());
    print_stuck_tasks();
    cancelled_stuck = 1;
    sl_sched_cancel_all();
  }
}

int sl_host_run_main(lua_State *L, int nargs) {
  sl_task *main_task = sl_task_spawn(L, nargs);
  H.main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sl_task_set_plain_report(main_task);
  H.main_listener.fn = main_ended;
  sl_task_listen(main_task, &H.main_listener);
  run_until_tasks_end();
  return H.exit_status;
}

void sl_host_set_exit_status(int status) { H.exit_status = status; }

void sl_host_run_loop(void) { uv_run(sl_loop(), UV_RUN_DEFAULT); }

void sl_host_stop(void) { uv_stop(sl_loop()); }

/* ---- Shutdown ---- */

/* Call handle:close() on every luv handle that is still open. luv anchors
 * each handle in the registry until it is closed, and registry.uv_handle
 * contains luv's handle metatables as keys. This must happen before
 * lua_close: luv's __gc for an open handle closes it with a callback that
 * unrefs in the (then freed) state. */
static void close_luv_handles(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "uv_handle") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  int metatables = lua_gettop(L);
  lua_newtable(L);
  int handles = metatables + 1, count = 0;
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX) != 0) {
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_getmetatable(L, -1)) {
      if (lua_rawget(L, metatables) != LUA_TNIL) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, handles, ++count);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  for (int i = 1; i <= count; i++) {
    lua_rawgeti(L, handles, i);
    lua_getfield(L, -1, "is_closing");
    lua_pushvalue(L, -2);
    int closing = lua_pcall(L, 1, 1, 0) != LUA_OK || lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!closing) {
      lua_getfield(L, -1, "close");
      lua_insert(L, -2);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
}

static void close_leftover(uv_handle_t *handle, void *arg) {
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

void sl_host_close(lua_State *L) {
  H.mode = SL_HOST_SCRIPT; /* stop the loop once the last task ends */
  if (sl_sched_live_count() > 0) {
    sl_sched_cancel_all();
    run_until_tasks_end();
  }
  /* Let pending requests (pool work, luv fs calls) and close callbacks
   * finish while their Lua state still exists.
   * NOTE: a request that never completes, such as a luv read from a
   * pipe whose writer neither writes nor closes it, keeps the host from
   * exiting here. */
  while (sl_loop()->active_reqs.count > 0) uv_run(sl_loop(), UV_RUN_ONCE);
  close_luv_handles(L);
  uv_run(sl_loop(), UV_RUN_NOWAIT);

  sl_sched_close();
  sigaction(SIGINT, &H.old_sigint, NULL);
  uv_close((uv_handle_t *)&H.sigint_async, NULL);
  sl_log_set_sink(NULL, NULL);
  flush_log_queue();
  uv_close((uv_handle_t *)&H.log_async, NULL);
  pthread_mutex_destroy(&H.log_lock);
  lua_close(L);
  H.L = NULL;

  uv_walk(sl_loop(), close_leftover, NULL);
  uv_run(sl_loop(), UV_RUN_DEFAULT);
  uv_loop_close(sl_loop());
}
