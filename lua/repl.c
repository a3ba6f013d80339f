/* The interactive REPL.
 *
 * On a terminal, readline's callback interface reads keys when a uv_poll on
 * stdin reports input, so timers and tasks keep running while the prompt
 * waits. Other stdin (a pipe, a file) is read with uv_fs_read and runs
 * line by line without prompts. Either way each complete chunk runs as a
 * task, and input pauses until that task ends. Compiling chunks and
 * printing values is Lua code in sandlot/repl.lua. */
#include "repl.h"

#include <errno.h>
#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "async.h"
#include "host.h"
#include "sandlot_config.h"
#include "task.h"

#define PROMPT "> "
#define CONTINUATION_PROMPT ">> "
#define HISTORY_MAX 1000

static struct {
  lua_State *L;
  int tty;
  int reading;      /* readline shows the prompt and owns the terminal */
  int finished;
  int module_ref;   /* the sandlot.repl table */
  char *chunk;      /* lines of an incomplete chunk, joined by "\n" */
  size_t chunk_length;
  sl_task *running; /* the chunk's task while it runs */
  int chunk_id;     /* id of the running or last chunk, from 1 */
  int failed;       /* input is not a terminal and a chunk raised or did
                       not compile: exit 1 at the end */
  sl_listener chunk_listener;
  char *history_path;
  uv_poll_t poll;
  uv_signal_t winch;
  /* Non-terminal input. */
  uv_fs_t read_req;
  char read_buffer[4096];
  char *pending;
  size_t pending_length;
  int eof;
  int read_active;
  /* The line being edited while output is written above the prompt. */
  char *saved_line;
  int saved_point;
  int hidden;
} R;

static void start_reading(const char *prompt);
static void process_pending(void);

/* ---- Calls into sandlot/repl.lua ---- */

/* Call repl[name](args...) on the main thread and print its error if it
 * raises; returns -1 then. */
static int call_repl(const char *name, int nargs, int nresults) {
  lua_State *L = R.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, R.module_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 1));
  if (lua_pcall(L, nargs, nresults, 0) != LUA_OK) {
    fprintf(stderr, "sandlot: repl.%s failed: %s\n", name, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- The chunk buffer ---- */

static void chunk_reset(void) {
  free(R.chunk);
  R.chunk = NULL;
  R.chunk_length = 0;
}

static void chunk_append(const char *line) {
  size_t add = strlen(line);
  char *grown = realloc(R.chunk, R.chunk_length + add + 2);
  if (grown == NULL) return;
  R.chunk = grown;
  if (R.chunk_length > 0) R.chunk[R.chunk_length++] = '\n';
  memcpy(R.chunk + R.chunk_length, line, add + 1);
  R.chunk_length += add;
}

/* ---- History ---- */

static void history_open(void) {
  const char *path = getenv("SANDLOT_HISTORY");
  const char *home = getenv("HOME");
  if (path != NULL) {
    if (path[0] != '\0') R.history_path = strdup(path);
  } else if (home != NULL && home[0] != '\0') {
    size_t length = strlen(home) + sizeof "/.sandlot_history";
    R.history_path = malloc(length);
    snprintf(R.history_path, length, "%s/.sandlot_history", home);
  }
  using_history();
  stifle_history(HISTORY_MAX);
  if (R.history_path != NULL) read_history(R.history_path);
}

/* Append one entry to the file right away, so that it survives a crash. */
static void history_add(const char *entry) {
  add_history(entry);
  if (R.history_path == NULL) return;
  if (append_history(1, R.history_path) != 0 && write_history(R.history_path) != 0)
    fprintf(stderr, "sandlot: cannot write history file %s: %s\n", R.history_path,
            strerror(errno));
}

static void history_close(void) {
  if (R.history_path != NULL) history_truncate_file(R.history_path, HISTORY_MAX);
  free(R.history_path);
  R.history_path = NULL;
  clear_history();
}

/* ---- Running chunks ---- */

static void resume_input(void) {
  if (R.finished) return;
  if (R.tty)
    start_reading(R.chunk_length > 0 ? CONTINUATION_PROMPT : PROMPT);
  else
    process_pending();
}

static void chunk_ended(sl_listener *listener, sl_task *task) {
  R.running = NULL;
  sl_host_set_interruptible(0);
  /* Ctrl-C cancels chunks, and the terminal echoed ^C: start a new line. */
  if (R.tty && sl_task_status_of(task) == SL_TASK_CANCELLED) fputs("\n", stdout);
  if (!R.tty && sl_task_status_of(task) == SL_TASK_FAILED) R.failed = 1;
  sl_task_push(R.L, task);
  call_repl("show", 1, 0);
  resume_input();
}

static void stop_reading(void) {
  if (!R.tty || !R.reading) return;
  R.reading = 0;
  uv_poll_stop(&R.poll);
  rl_callback_handler_remove();
}

/* The function on top of L is a complete chunk: run it as a task. */
static void run_chunk(void) {
  stop_reading();
  R.running = sl_task_spawn(R.L, 0);
  lua_pop(R.L, 1);
  sl_task_set_plain_report(R.running);
  R.chunk_listener.fn = chunk_ended;
  sl_task_listen(R.running, &R.chunk_listener);
  sl_host_set_interruptible(++R.chunk_id);
}

/* Add a line to the chunk; run the chunk once it compiles. */
static void handle_line(const char *line) {
  if (R.chunk_length == 0 && line[strspn(line, " \t\r")] == '\0') return;
  chunk_append(line);
  lua_pushlstring(R.L, R.chunk, R.chunk_length);
  if (call_repl("compile", 1, 2) < 0) {
    chunk_reset();
    return;
  }
  if (lua_isfunction(R.L, -2)) {
    lua_pop(R.L, 1);
    if (R.tty) history_add(R.chunk);
    chunk_reset();
    run_chunk();
    return;
  }
  const char *err = lua_tostring(R.L, -1);
  if (err != NULL && strcmp(err, "incomplete") != 0) {
    fprintf(stderr, "%s\n", err);
    if (!R.tty) R.failed = 1;
    if (R.tty) history_add(R.chunk);
    chunk_reset();
  }
  lua_pop(R.L, 2);
}

static void finish(void) {
  R.finished = 1;
  sl_host_stop();
}

/* ---- Terminal input through readline ---- */

static void on_line(char *line) {
  if (line == NULL) { /* Ctrl-D */
    stop_reading();
    fputs("\n", stdout);
    fflush(stdout);
    finish();
    return;
  }
  /* Readline calls the next prompt's setup after this returns, unless the
   * handler was removed: remove it, and install it again with the right
   * prompt when the input resumes. */
  stop_reading();
  handle_line(line);
  free(line);
  if (R.running == NULL) resume_input();
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  if (status < 0) {
    stop_reading();
    finish();
    return;
  }
  sl_host_handle_sigint();
  if (R.reading) rl_callback_read_char();
}

static void start_reading(const char *prompt) {
  if (R.reading) return;
  R.reading = 1;
  rl_callback_handler_install(prompt, on_line);
  uv_poll_start(&R.poll, UV_READABLE, on_readable);
}

static void on_winch(uv_signal_t *handle, int signum) { rl_resize_terminal(); }

/* Output hooks: clear the prompt line, let the host write, draw it again. */
static void hide_prompt(void) {
  if (!R.reading || R.hidden) return;
  R.hidden = 1;
  R.saved_point = rl_point;
  R.saved_line = rl_copy_text(0, rl_end);
  rl_save_prompt();
  rl_replace_line("", 0);
  rl_redisplay();
}

static void show_prompt(void) {
  if (!R.hidden) return;
  R.hidden = 0;
  rl_restore_prompt();
  rl_replace_line(R.saved_line != NULL ? R.saved_line : "", 0);
  rl_point = R.saved_point;
  rl_redisplay();
  free(R.saved_line);
  R.saved_line = NULL;
}

/* Ctrl-C: cancel the chunk that ran when the signal arrived, or drop the
 * line being edited. If that chunk has ended since (the interrupt hook may
 * have cancelled it), the signal is spent. Without a terminal and with no
 * chunk running, end the process the way SIGINT ends other filters,
 * because the pending read of stdin cannot be cancelled. */
static void on_interrupt(int chunk) {
  if (chunk != 0) {
    if (R.running != NULL && chunk == R.chunk_id) sl_task_cancel(R.running);
    return;
  }
  if (R.running != NULL) return;
  if (!R.tty) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  if (!R.reading) return;
  chunk_reset();
  rl_free_line_state();
  rl_callback_sigcleanup();
  rl_replace_line("", 0);
  stop_reading();
  fputs("\n", stdout);
  fflush(stdout);
  start_reading(PROMPT);
}

/* ---- Other input: uv_fs_read on fd 0 ---- */

static void read_more(void);

/* Run complete lines while no chunk runs. At end of input, run the last
 * line and finish. */
static void process_pending(void) {
  while (R.running == NULL && !R.finished) {
    char *newline = memchr(R.pending, '\n', R.pending_length);
    if (newline == NULL && !R.eof) return;
    if (newline == NULL && R.pending_length == 0) {
      if (R.chunk_length > 0) fprintf(stderr, "sandlot: incomplete chunk at end of input\n");
      finish();
      return;
    }
    size_t length = newline != NULL ? (size_t)(newline - R.pending) : R.pending_length;
    char *line = strndup(R.pending, length);
    size_t used = newline != NULL ? length + 1 : length;
    memmove(R.pending, R.pending + used, R.pending_length - used);
    R.pending_length -= used;
    handle_line(line);
    free(line);
  }
}

static void on_read(uv_fs_t *req) {
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  R.read_active = 0;
  if (n > 0) {
    char *grown = realloc(R.pending, R.pending_length + (size_t)n);
    if (grown != NULL) {
      R.pending = grown;
      memcpy(R.pending + R.pending_length, R.read_buffer, (size_t)n);
      R.pending_length += (size_t)n;
    }
    read_more();
  } else {
    if (n < 0) fprintf(stderr, "sandlot: cannot read stdin: %s\n", uv_strerror((int)n));
    R.eof = 1;
  }
  process_pending();
}

static void read_more(void) {
  uv_buf_t buf = uv_buf_init(R.read_buffer, sizeof R.read_buffer);
  R.read_active = 1;
  int rc = uv_fs_read(sl_loop(), &R.read_req, 0, &buf, 1, -1, on_read);
  if (rc < 0) {
    R.read_active = 0;
    R.eof = 1;
    fprintf(stderr, "sandlot: cannot read stdin: %s\n", uv_strerror(rc));
  }
}

/* ---- Entry ---- */

static int load_repl_module(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sandlot.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "sandlot: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  R.module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return call_repl("set_globals", 0, 0);
}

/* Print the module's one-line hint about the predefined globals. */
static void print_hint(void) {
  lua_rawgeti(R.L, LUA_REGISTRYINDEX, R.module_ref);
  lua_getfield(R.L, -1, "hint");
  const char *hint = lua_tostring(R.L, -1);
  if (hint != NULL) printf("%s\n", hint);
  lua_pop(R.L, 2);
}

static void start_terminal(void) {
  rl_readline_name = "sandlot";
  rl_catch_signals = 0; /* the host handles SIGINT */
  rl_catch_sigwinch = 0;
  history_open();
  uv_poll_init(sl_loop(), &R.poll, STDIN_FILENO);
  uv_signal_init(sl_loop(), &R.winch);
  uv_signal_start(&R.winch, on_winch, SIGWINCH);
  uv_unref((uv_handle_t *)&R.winch);
  static const sl_host_repl_hooks hooks = {hide_prompt, show_prompt, on_interrupt};
  sl_host_set_repl_hooks(&hooks);
  printf("sandlot %s on %s; Ctrl-C cancels, Ctrl-D exits.\n", SANDLOT_VERSION, LUA_RELEASE);
  print_hint();
  start_reading(PROMPT);
}

static void stop_terminal(void) {
  stop_reading();
  sl_host_set_repl_hooks(NULL);
  uv_close((uv_handle_t *)&R.poll, NULL);
  uv_close((uv_handle_t *)&R.winch, NULL);
  history_close();
}

int sl_repl_run(lua_State *L) {
  memset(&R, 0, sizeof R);
  R.L = L;
  R.tty = isatty(STDIN_FILENO);
  if (load_repl_module(L) < 0) return SL_EXIT_FAILED;
  if (R.tty) {
    start_terminal();
  } else {
    static const sl_host_repl_hooks hooks = {NULL, NULL, on_interrupt};
    sl_host_set_repl_hooks(&hooks);
    read_more();
  }
  while (!R.finished) {
    sl_host_run_loop();
    if (R.finished || uv_loop_alive(sl_loop())) continue;
    if (R.running == NULL) {
      finish();
    } else {
      fprintf(stderr, "sandlot: the chunk waits for something that nothing will deliver; "
                      "cancelling it\n");
      sl_task_cancel(R.running);
    }
  }

  if (R.tty) stop_terminal();
  sl_host_set_repl_hooks(NULL);
  chunk_reset();
  free(R.pending);
  luaL_unref(L, LUA_REGISTRYINDEX, R.module_ref);
  return R.failed ? SL_EXIT_FAILED : SL_EXIT_OK;
}
