/* The agent binary over its unix socket, driven by the blocking client:
 * exec, output, stdin, timeouts, errors, quiesce and malformed input. */
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>

#include "agent_harness.h"
#include "error.h"
#include "test.h"

static harness H;

/* The agent's maximum quiesce hold (AGENT_QUIESCE_HOLD_MAX_MS). */
#define AGENT_HOLD_MAX_MS (60 * 60 * 1000)

static int open_conn(sl_agent_conn *c, sl_error *err) {
  return sl_agent_conn_open(c, H.sock, 10000, 0, err);
}

/* Run argv (or a shell command) with streaming and collect its output;
 * `exit` receives the EXIT frame, parsed from `reply`. */
static int run(sl_agent_conn *c, const char *const *argv, const char *command,
               const void *stdin_data, size_t stdin_len, int64_t timeout_ms, collected *out,
               sl_buf *reply, sl_frame *exit, sl_error *err) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&b, SL_F_ARGV, argv);
  if (command != NULL) sl_frame_put_str(&b, SL_F_COMMAND, command);
  if (stdin_data != NULL) sl_frame_put_bytes(&b, SL_F_STDIN, stdin_data, stdin_len);
  if (timeout_ms > 0) sl_frame_put_i64(&b, SL_F_TIMEOUT_MS, timeout_ms);
  sl_frame_put_i64(&b, SL_F_STREAM, 1);
  sl_frame_end(&b, start, NULL);
  int rc = sl_agent_conn_call(c, &b, collect_event, out, reply, exit, err);
  sl_buf_free(&b);
  return rc;
}

static void hello_reports_versions(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_HELLO, 0), NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  CHECK_INT(f.type, ==, SL_MSG_OK);
  CHECK_INT(field_i64(&f, SL_F_VERSION, 0), ==, SL_PROTO_VERSION);
  CHECK_INT(field_i64(&f, SL_F_PID, 0), ==, H.pid);
  CHECK_INT(field_i64(&f, SL_F_MAX_FRAME, 0), ==, SL_PROTO_MAX_FRAME);
  char *version = NULL;
  CHECK_INT(sl_frame_get_str(&f, SL_F_AGENT_VERSION, &version, &err), ==, 1);
  CHECK(version[0] != '\0');
  free(version);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void exec_reports_exit_codes(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  static const struct {
    const char *command;
    int64_t code;
  } cases[] = {{"true", 0}, {"false", 1}, {"exit 7", 7}, {"exit 255", 255}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    collected out = {0};
    sl_buf reply = {0};
    sl_frame f;
    CHECK_OK(run(&c, NULL, cases[i].command, NULL, 0, 0, &out, &reply, &f, &err), &err);
    CHECK_INT(f.type, ==, SL_MSG_EXIT);
    CHECK_INT(field_i64(&f, SL_F_EXIT_CODE, -1), ==, cases[i].code);
    CHECK_INT(field_i64(&f, SL_F_SIGNAL, 0), ==, 0);
    CHECK_INT(field_i64(&f, SL_F_TIMED_OUT, -1), ==, 0);
    collected_free(&out);
    sl_buf_free(&reply);
  }
  sl_agent_conn_close(&c);
}

static void exec_reports_signal(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  CHECK_OK(run(&c, NULL, "kill -TERM $$", NULL, 0, 0, &out, &reply, &f, &err), &err);
  CHECK_INT(field_i64(&f, SL_F_SIGNAL, 0), ==, SIGTERM);
  CHECK_INT(field_i64(&f, SL_F_EXIT_CODE, -1), ==, -1);
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void exec_separates_stdout_and_stderr(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  const char *argv[] = {"/bin/sh", "-c", "printf 'out 1\\n'; printf 'err 1\\n' >&2; printf out2",
                        NULL};
  CHECK_OK(run(&c, argv, NULL, NULL, 0, 0, &out, &reply, &f, &err), &err);
  CHECK(bytes_equal(&out.out[1], "out 1\nout2", 10));
  CHECK(bytes_equal(&out.out[2], "err 1\n", 6));
  CHECK_INT(field_i64(&f, SL_F_STDOUT_OFFSET, 0), ==, 10);
  CHECK_INT(field_i64(&f, SL_F_STDERR_OFFSET, 0), ==, 6);
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void exec_passes_binary_bytes(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  uint8_t all[4096];
  for (size_t i = 0; i < sizeof all; i++) all[i] = (uint8_t)(i * 7 + i / 256);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  const char *argv[] = {"cat", NULL};
  CHECK_OK(run(&c, argv, NULL, all, sizeof all, 0, &out, &reply, &f, &err), &err);
  CHECK(bytes_equal(&out.out[1], all, sizeof all));
  CHECK_INT(field_i64(&f, SL_F_EXIT_CODE, -1), ==, 0);
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

/* Stdin larger than a pipe's buffer is written as the child reads it. */
static void large_stdin_reaches_process(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  size_t size = 3u << 20;
  uint8_t *data = malloc(size);
  CHECK(data != NULL);
  for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(i % 251);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  CHECK_OK(run(&c, (const char *[]){"cat", NULL}, NULL, data, size, 0, &out, &reply, &f, &err),
           &err);
  CHECK(bytes_equal(&out.out[1], data, size));
  free(data);
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void invalid_options_exit_2(void) {
  static const char *const cases[][4] = {
      {"--buffer-size", "1", NULL},
      {"--stream-fd", "x", NULL},
      {"--no-such-option", "1", NULL},
      {"--listen", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      const char *argv[5] = {agent_binary(), cases[i][0], cases[i][1], NULL};
      execv(argv[0], (char **)argv);
      _exit(127);
    }
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), ==, pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), ==, 2);
  }
}

static void exec_uses_env_and_cwd(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  collected out = {0};
  const char *env[] = {"SANDLOT_TEST_VAR=a b", NULL};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "printf '%s|%s' \"$SANDLOT_TEST_VAR\" \"$(pwd)\"");
  sl_frame_put_strv(&b, SL_F_ENV, env);
  sl_frame_put_str(&b, SL_F_CWD, "/tmp");
  sl_frame_put_i64(&b, SL_F_STREAM, 1);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, collect_event, &out, &reply, &f, &err), &err);
  CHECK(bytes_equal(&out.out[1], "a b|/tmp", 8));
  collected_free(&out);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void missing_program_is_enoent(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  const char *argv[] = {"sandlot-no-such-program", NULL};
  CHECK_INT(run(&c, argv, NULL, NULL, 0, 0, &out, &reply, &f, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "program not found: sandlot-no-such-program");
  const char *by_path[] = {"/no/such/dir/prog", NULL};
  CHECK_INT(run(&c, by_path, NULL, NULL, 0, 0, &out, &reply, &f, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "program not found: /no/such/dir/prog");
  char plain[256];
  snprintf(plain, sizeof plain, "%s/plain-file", H.dir);
  int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  close(fd);
  const char *not_exec[] = {plain, NULL};
  CHECK_INT(run(&c, not_exec, NULL, NULL, 0, 0, &out, &reply, &f, &err), ==, -EACCES);
  CHECK(strstr(err.msg, "permission denied: ") != NULL);
  CHECK_INT(out.events, ==, 0);
  /* The connection keeps working after failures. */
  CHECK_OK(run(&c, NULL, "true", NULL, 0, 0, &out, &reply, &f, &err), &err);
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void missing_cwd_is_enoent(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "true");
  sl_frame_put_str(&b, SL_F_CWD, "/no/such/folder");
  sl_frame_end(&b, start, NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "no such directory: /no/such/folder");
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void invalid_exec_requests_are_einval(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_EXEC, 0), NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -EINVAL);
  b.len = 0;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "true");
  sl_frame_put_strv(&b, SL_F_ENV, (const char *[]){"NOEQUALS", NULL});
  sl_frame_end(&b, start, NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "NOEQUALS") != NULL);
  b.len = 0;
  start = sl_frame_begin(&b, SL_MSG_SIGNAL, 0);
  sl_frame_put_i64(&b, SL_F_PROC, 999999);
  sl_frame_put_i64(&b, SL_F_SIGNAL, 9);
  sl_frame_end(&b, start, NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "no such process: 999999");
  b.len = 0;
  sl_frame_end(&b, sl_frame_begin(&b, 0x7e, 0), NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -ENOSYS);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void timeout_kills_process_group(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  collected out = {0};
  sl_buf reply = {0};
  sl_frame f;
  /* The background sleep keeps stdout open; the timeout must end it too. */
  CHECK_OK(run(&c, NULL, "sleep 60 & echo started; sleep 60", NULL, 0, 300, &out, &reply, &f,
               &err),
           &err);
  CHECK_INT(field_i64(&f, SL_F_TIMED_OUT, 0), ==, 1);
  CHECK_INT(field_i64(&f, SL_F_SIGNAL, 0), ==, SIGKILL);
  CHECK(bytes_equal(&out.out[1], "started\n", 8));
  collected_free(&out);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

/* Start a process without streaming; returns its process id. */
static int64_t start_quiet(sl_agent_conn *c, const char *command, int stdin_open,
                           sl_error *err) {
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, command);
  if (stdin_open) sl_frame_put_i64(&b, SL_F_STDIN_OPEN, 1);
  sl_frame_end(&b, start, NULL);
  int64_t proc = -1;
  if (sl_agent_conn_call(c, &b, NULL, NULL, &reply, &f, err) == 0)
    proc = field_i64(&f, SL_F_PROC, -1);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  return proc;
}

static int proc_call(sl_agent_conn *c, uint8_t type, int64_t proc, sl_buf *reply, sl_frame *f,
                     sl_error *err, uint8_t key, int64_t value) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, type, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  if (key != 0) sl_frame_put_i64(&b, key, value);
  sl_frame_end(&b, start, NULL);
  int rc = sl_agent_conn_call(c, &b, NULL, NULL, reply, f, err);
  sl_buf_free(&b);
  return rc;
}

static void stdin_streams_through_cat(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  int64_t proc = start_quiet(&c, "cat", 1, &err);
  CHECK_INT(proc, >, 0);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  const char *parts[] = {"first line\n", "second\n", "third"};
  for (int i = 0; i < 3; i++) {
    b.len = 0;
    size_t start = sl_frame_begin(&b, SL_MSG_WRITE_STDIN, 0);
    sl_frame_put_i64(&b, SL_F_PROC, proc);
    sl_frame_put_str(&b, SL_F_DATA, parts[i]);
    sl_frame_end(&b, start, NULL);
    CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  }
  CHECK_OK(proc_call(&c, SL_MSG_CLOSE_STDIN, proc, &reply, &f, &err, 0, 0), &err);
  CHECK_OK(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  CHECK_INT(f.type, ==, SL_MSG_EXIT);
  CHECK_INT(field_i64(&f, SL_F_EXIT_CODE, -1), ==, 0);
  CHECK_OK(proc_call(&c, SL_MSG_READ, proc, &reply, &f, &err, SL_F_FD, 1), &err);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&f, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 23);
  CHECK(memcmp(data, "first line\nsecond\nthird", 23) == 0);
  CHECK_INT(field_i64(&f, SL_F_EOF, 0), ==, 1);
  /* Writing after close is EPIPE. */
  b.len = 0;
  size_t start = sl_frame_begin(&b, SL_MSG_WRITE_STDIN, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  sl_frame_put_str(&b, SL_F_DATA, "late");
  sl_frame_end(&b, start, NULL);
  CHECK_INT(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), ==, -EPIPE);
  CHECK_OK(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), &err);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

typedef struct kept_offsets {
  int64_t proc;
  int64_t stdout_start, stdout_end, stderr_start;
} kept_offsets;

static void on_listed_offsets(const sl_frame *ev, void *data) {
  kept_offsets *k = data;
  if (ev->type != SL_MSG_PROCESS || field_i64(ev, SL_F_PROC, 0) != k->proc) return;
  k->stdout_start = field_i64(ev, SL_F_STDOUT_START, -1);
  k->stdout_end = field_i64(ev, SL_F_STDOUT_OFFSET, -1);
  k->stderr_start = field_i64(ev, SL_F_STDERR_START, -1);
}

static void read_releases_earlier_output(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  int64_t proc = start_quiet(&c, "printf 0123456789", 0, &err);
  CHECK_INT(proc, >, 0);
  sl_buf reply = {0};
  sl_frame f;
  CHECK_OK(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_READ, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  sl_frame_put_i64(&b, SL_F_OFFSET, 4);
  sl_frame_put_i64(&b, SL_F_LENGTH, 3);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&f, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 3);
  CHECK(memcmp(data, "456", 3) == 0);
  CHECK_INT(field_i64(&f, SL_F_EOF, 1), ==, 0);
  /* Offset 4 released bytes 0-3. */
  CHECK_INT(proc_call(&c, SL_MSG_READ, proc, &reply, &f, &err, SL_F_OFFSET, 2), ==, -ERANGE);
  CHECK_INT(proc_call(&c, SL_MSG_READ, proc, &reply, &f, &err, SL_F_OFFSET, 11), ==, -EINVAL);
  CHECK_OK(proc_call(&c, SL_MSG_READ, proc, &reply, &f, &err, SL_F_OFFSET, 10), &err);
  CHECK_INT(field_i64(&f, SL_F_EOF, 0), ==, 1);
  /* LIST reports where the kept output starts and ends. */
  kept_offsets kept = {.proc = proc};
  b.len = 0;
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_LIST, 0), NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, on_listed_offsets, &kept, &reply, &f, &err), &err);
  CHECK_INT(kept.stdout_start, ==, 10);
  CHECK_INT(kept.stdout_end, ==, 10);
  CHECK_INT(kept.stderr_start, ==, 0);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

typedef struct finder {
  int64_t proc;
  int found;
  char state[32];
} finder;

static void on_process(const sl_frame *ev, void *data) {
  finder *fd = data;
  if (ev->type != SL_MSG_PROCESS || field_i64(ev, SL_F_PROC, 0) != fd->proc) return;
  fd->found = 1;
  char *state = NULL;
  if (sl_frame_get_str(ev, SL_F_STATE, &state, NULL) == 1)
    snprintf(fd->state, sizeof fd->state, "%s", state);
  free(state);
}

/* 1 when LIST shows `proc` (its state copied into `state`), 0 when not. */
static int list_has(sl_agent_conn *c, int64_t proc, char *state, size_t state_len) {
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  sl_error err = {0};
  finder found = {.proc = proc};
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_LIST, 0), NULL);
  int rc = sl_agent_conn_call(c, &b, on_process, &found, &reply, &f, &err);
  snprintf(state, state_len, "%s", found.state);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  return rc < 0 ? -1 : found.found;
}

static void list_and_release(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  int64_t proc = start_quiet(&c, "sleep 30", 0, &err);
  CHECK_INT(proc, >, 0);
  char state[32] = "";
  CHECK_INT(list_has(&c, proc, state, sizeof state), ==, 1);
  CHECK_STR(state, "running");
  sl_buf reply = {0};
  sl_frame f;
  CHECK_INT(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), ==, -EBUSY);
  CHECK_OK(proc_call(&c, SL_MSG_SIGNAL, proc, &reply, &f, &err, SL_F_SIGNAL, SIGKILL), &err);
  CHECK_OK(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  CHECK_INT(field_i64(&f, SL_F_SIGNAL, 0), ==, SIGKILL);
  CHECK_INT(list_has(&c, proc, state, sizeof state), ==, 1);
  CHECK_STR(state, "exited");
  CHECK_INT(proc_call(&c, SL_MSG_SIGNAL, proc, &reply, &f, &err, SL_F_SIGNAL, SIGKILL), ==,
            -ESRCH);
  CHECK_OK(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), &err);
  CHECK_INT(list_has(&c, proc, state, sizeof state), ==, 0);
  CHECK_INT(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), ==, -ENOENT);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void wait_times_out(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  int64_t proc = start_quiet(&c, "sleep 30", 0, &err);
  sl_buf reply = {0};
  sl_frame f;
  CHECK_INT(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, SL_F_TIMEOUT_MS, 100), ==,
            -ETIMEDOUT);
  CHECK_OK(proc_call(&c, SL_MSG_SIGNAL, proc, &reply, &f, &err, SL_F_SIGNAL, SIGKILL), &err);
  CHECK_OK(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, 0, 0), &err);
  CHECK_OK(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), &err);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static void output_kept_while_disconnected(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  int64_t proc = start_quiet(&c, "sleep 0.2; echo written while nobody listened", 0, &err);
  CHECK_INT(proc, >, 0);
  sl_agent_conn_close(&c);
  sleep_ms(500);
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf reply = {0};
  sl_frame f;
  CHECK_OK(proc_call(&c, SL_MSG_READ, proc, &reply, &f, &err, SL_F_FD, 1), &err);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&f, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 30);
  CHECK(memcmp(data, "written while nobody listened\n", 30) == 0);
  CHECK_OK(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), &err);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

/* A full buffer stops the agent reading the pipe, so the writer blocks and
 * nothing is dropped; reading drains it in order. */
static void backpressure_keeps_all_output(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "seq 1 400000");
  sl_frame_put_i64(&b, SL_F_BUFFER_SIZE, 65536);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  int64_t proc = field_i64(&f, SL_F_PROC, -1);
  sleep_ms(300);
  char state[32] = "";
  CHECK_INT(list_has(&c, proc, state, sizeof state), ==, 1);
  CHECK_STR(state, "running"); /* blocked on the full pipe, not finished */

  sl_buf got = {0};
  for (int eof = 0; !eof;) {
    b.len = 0;
    start = sl_frame_begin(&b, SL_MSG_READ, 0);
    sl_frame_put_i64(&b, SL_F_PROC, proc);
    sl_frame_put_i64(&b, SL_F_OFFSET, (int64_t)got.len);
    sl_frame_end(&b, start, NULL);
    CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
    const uint8_t *data;
    size_t len = 0;
    sl_frame_get_bytes(&f, SL_F_DATA, &data, &len);
    sl_buf_append(&got, data, len);
    eof = (int)field_i64(&f, SL_F_EOF, 0);
    if (len == 0 && !eof) sleep_ms(1);
  }
  sl_buf expected = {0};
  char line[16];
  for (int i = 1; i <= 400000; i++) sl_buf_append(&expected, line, (size_t)snprintf(line, sizeof line, "%d\n", i));
  CHECK_INT(got.len, ==, expected.len);
  CHECK(memcmp(got.data, expected.data, got.len) == 0);
  CHECK_OK(proc_call(&c, SL_MSG_WAIT, proc, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  CHECK_INT(field_i64(&f, SL_F_EXIT_CODE, -1), ==, 0);
  CHECK_OK(proc_call(&c, SL_MSG_RELEASE, proc, &reply, &f, &err, 0, 0), &err);
  sl_buf_free(&got);
  sl_buf_free(&expected);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
}

static int raw_connect(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* 1 when the peer closed the connection within the timeout. */
static int closed_by_peer(int fd, int timeout_ms) {
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return 1;
    if (n < 0) return 0;
  }
}

static int ping(sl_agent_conn *c, sl_error *err) {
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_PING, 0), NULL);
  int rc = sl_agent_conn_call(c, &b, NULL, NULL, &reply, &f, err);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  return rc;
}

static void malformed_frame_drops_only_that_connection(void) {
  sl_agent_conn good;
  sl_error err = {0};
  CHECK_OK(open_conn(&good, &err), &err);
  static const struct {
    const char *what;
    uint8_t bytes[16];
    size_t len;
  } bad[] = {
      {"length below the header", {2, 0, 0, 0, 1, 2}, 6},
      {"length above the maximum", {0xff, 0xff, 0xff, 0x7f, 1}, 5},
      {"field past the frame", {10, 0, 0, 0, 2, 1, 0, 0, 0, 29, 0xff, 0, 0, 0}, 14},
      {"zero length without sync", {0, 0, 0, 0, 'n', 'o', 'p', 'e', '!', '!', '!', '!'}, 12},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int fd = raw_connect(H.sock);
    CHECK(fd >= 0);
    CHECK_INT(send(fd, bad[i].bytes, bad[i].len, MSG_NOSIGNAL), ==, (long)bad[i].len);
    int closed = closed_by_peer(fd, 3000);
    if (!closed) fprintf(stderr, "connection not closed after: %s\n", bad[i].what);
    CHECK(closed);
    close(fd);
    CHECK_OK(ping(&good, &err), &err);
  }
  /* A truncated frame followed by a hangup leaves the agent serving. */
  int fd = raw_connect(H.sock);
  CHECK(fd >= 0);
  CHECK_INT(send(fd, "\x40\x00\x00\x00\x02\x01", 6, MSG_NOSIGNAL), ==, 6);
  close(fd);
  CHECK_OK(ping(&good, &err), &err);
  sl_agent_conn_close(&good);
}

static void malformed_frame_closes_connection(void) {
  int fd = raw_connect(H.sock);
  CHECK(fd >= 0);
  CHECK_INT(send(fd, "\x02\x00\x00\x00\x01\x02", 6, MSG_NOSIGNAL), ==, 6);
  CHECK(closed_by_peer(fd, 3000));
  close(fd);
}

static void random_bytes_never_stop_the_agent(void) {
  uint64_t state = 12345;
  for (int round = 0; round < 200; round++) {
    int fd = raw_connect(H.sock);
    CHECK(fd >= 0);
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      junk[i] = (uint8_t)state;
    }
    send(fd, junk, (size_t)(state % sizeof junk) + 1, MSG_NOSIGNAL);
    close(fd);
  }
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
}

static void quiesce_closes_every_connection(void) {
  int other = raw_connect(H.sock);
  CHECK(other >= 0);
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  CHECK_OK(sl_agent_quiesce(H.sock, 5000, &err), &err);
  CHECK(closed_by_peer(other, 3000));
  int rc = ping(&c, &err);
  CHECK(rc == -ECONNRESET || rc == -EPIPE);
  close(other);
  sl_agent_conn_close(&c);
  /* New connections work after a quiesce. */
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
}

/* Append a frame of `type` with request id `id` (and an exec command
 * when `command` is set) to `b`. */
static void put_request(sl_buf *b, uint8_t type, uint32_t id, const char *command) {
  size_t start = sl_frame_begin(b, type, id);
  if (command != NULL) sl_frame_put_str(b, SL_F_COMMAND, command);
  sl_frame_end(b, start, NULL);
  sl_frame_set_id(b->data + start, id);
}

/* Read `fd` until the peer closes it and count the final replies, by
 * type, of the requests with ids 1 to 9. */
typedef struct replies {
  int ok[10];
  int errors;
  int64_t closing_count; /* of the CLOSING message, -1 when none came */
  int closed;
} replies;

static void read_until_closed(int fd, int timeout_ms, replies *out) {
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sl_parser parser;
  sl_parser_init(&parser, SL_PROTO_MAX_FRAME);
  memset(out, 0, sizeof *out);
  out->closing_count = -1;
  for (;;) {
    uint8_t *space = sl_parser_space(&parser, 65536);
    ssize_t n = space ? recv(fd, space, 65536, 0) : -1;
    if (n == 0 || (n < 0 && errno == ECONNRESET)) out->closed = 1;
    if (n <= 0) break;
    sl_parser_commit(&parser, (size_t)n);
    sl_frame f;
    while (sl_parser_next(&parser, &f, NULL) == 1) {
      if (f.type == SL_MSG_OK && f.id < 10) out->ok[f.id]++;
      if (f.type == SL_MSG_ERROR) out->errors++;
      if (f.type == SL_MSG_CLOSING) out->closing_count = field_i64(&f, SL_F_COUNT, -2);
    }
  }
  sl_parser_free(&parser);
}

/* Requests that reached the agent before a quiesce get their replies
 * before the agent closes their connection. */
static void quiesce_replies_to_sent_requests(void) {
  int other = raw_connect(H.sock);
  CHECK(other >= 0);
  sl_buf b = {0};
  put_request(&b, SL_MSG_PING, 1, NULL);
  put_request(&b, SL_MSG_EXEC, 2, "true");
  put_request(&b, SL_MSG_PING, 3, NULL);
  CHECK_INT(send(other, b.data, b.len, MSG_NOSIGNAL), ==, (long)b.len);
  sl_buf_free(&b);
  sl_error err = {0};
  CHECK_OK(sl_agent_quiesce(H.sock, 5000, &err), &err);
  replies r;
  read_until_closed(other, 5000, &r);
  close(other);
  CHECK_INT(r.ok[1], ==, 1);
  CHECK_INT(r.ok[2], ==, 1);
  CHECK_INT(r.ok[3], ==, 1);
  CHECK_INT(r.errors, ==, 0);
  CHECK_INT(r.closing_count, ==, 3);
  CHECK(r.closed);
}

typedef struct late_half {
  int fd;
  const uint8_t *bytes;
  size_t len;
} late_half;

static void *send_late_half(void *arg) {
  late_half *half = arg;
  sleep_ms(200);
  send(half->fd, half->bytes, half->len, MSG_NOSIGNAL);
  return NULL;
}

/* A request the client was still sending when the quiesce arrived is
 * read to its end and gets its reply. */
static void quiesce_waits_for_partial_request(void) {
  int other = raw_connect(H.sock);
  CHECK(other >= 0);
  sl_buf b = {0};
  put_request(&b, SL_MSG_EXEC, 4, "echo partial");
  size_t first = b.len / 2;
  CHECK_INT(send(other, b.data, first, MSG_NOSIGNAL), ==, (long)first);
  /* A ping on another connection lets the agent read the first half
   * before the quiesce arrives. */
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
  late_half half = {other, b.data + first, b.len - first};
  pthread_t thread;
  CHECK_INT(pthread_create(&thread, NULL, send_late_half, &half), ==, 0);
  int rc = sl_agent_quiesce(H.sock, 5000, &err);
  pthread_join(thread, NULL);
  sl_buf_free(&b);
  CHECK_OK(rc, &err);
  replies r;
  read_until_closed(other, 5000, &r);
  close(other);
  CHECK_INT(r.ok[4], ==, 1);
  CHECK_INT(r.closing_count, ==, 1);
  CHECK(r.closed);
}

/* 1 when a reply arrives on `fd` within `timeout_ms`. */
static int reply_within(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, timeout_ms) == 1;
}

/* With a hold, a connection made after the quiesce waits unaccepted
 * until the end signal. Without a hold, new connections are served at
 * once. */
static void quiesce_hold_waits_for_end_signal(void) {
  sl_error err = {0};
  CHECK_OK(sl_agent_quiesce_hold(H.sock, 5000, 60000, &err), &err);
  int late = raw_connect(H.sock);
  CHECK(late >= 0);
  sl_buf b = {0};
  put_request(&b, SL_MSG_PING, 5, NULL);
  CHECK_INT(send(late, b.data, b.len, MSG_NOSIGNAL), ==, (long)b.len);
  sl_buf_free(&b);
  int early = reply_within(late, 300);
  CHECK_OK(sl_agent_end_quiesce(H.pid, 0, &err), &err);
  int answered = reply_within(late, 5000);
  close(late);
  CHECK(!early);
  CHECK(answered);
  /* Without a hold the agent accepts at once. */
  CHECK_OK(sl_agent_quiesce(H.sock, 5000, &err), &err);
  sl_agent_conn c;
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
}

/* A hold ends by itself after its time, so an agent whose host died
 * during a dump serves again. */
static void quiesce_hold_ends_after_timeout(void) {
  sl_error err = {0};
  CHECK_OK(sl_agent_quiesce_hold(H.sock, 5000, 200, &err), &err);
  sl_agent_conn c;
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
}

static void quiesce_rejects_invalid_hold(void) {
  sl_agent_conn c;
  sl_error err = {0};
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  const int64_t bad[] = {-1, (int64_t)AGENT_HOLD_MAX_MS + 1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_OK(open_conn(&c, &err), &err);
    b.len = 0;
    size_t start = sl_frame_begin(&b, SL_MSG_QUIESCE, 0);
    sl_frame_put_i64(&b, SL_F_TIMEOUT_MS, bad[i]);
    sl_frame_end(&b, start, NULL);
    int rc = sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err);
    CHECK_INT(rc, ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid quiesce timeout") != NULL);
    /* Nothing was quiesced: the connection still serves. */
    CHECK_OK(ping(&c, &err), &err);
    sl_agent_conn_close(&c);
  }
  sl_buf_free(&b);
  sl_buf_free(&reply);
}

/* The end signal without a quiesce changes nothing. */
static void end_signal_without_quiesce(void) {
  sl_error err = {0};
  CHECK_OK(sl_agent_end_quiesce(H.pid, 0, &err), &err);
  sl_agent_conn c;
  CHECK_OK(open_conn(&c, &err), &err);
  CHECK_OK(ping(&c, &err), &err);
  sl_agent_conn_close(&c);
  /* Another start time than the agent's, or a pid that has ended, is
   * not an error: there is no quiesce of that agent left to end. */
  CHECK_OK(sl_agent_end_quiesce(H.pid, 1, &err), &err);
  pid_t child = fork();
  if (child == 0) _exit(0);
  CHECK(child > 0);
  waitpid(child, NULL, 0);
  CHECK_OK(sl_agent_end_quiesce(child, 0, &err), &err);
}

static void two_connections_at_once(void) {
  sl_agent_conn a, b;
  sl_error err = {0};
  CHECK_OK(open_conn(&a, &err), &err);
  CHECK_OK(open_conn(&b, &err), &err);
  int64_t pa = start_quiet(&a, "read line; echo a:$line", 1, &err);
  int64_t pb = start_quiet(&b, "read line; echo b:$line", 1, &err);
  CHECK_INT(pa, >, 0);
  CHECK_INT(pb, >, 0);
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_WRITE_STDIN, 0);
  sl_frame_put_i64(&req, SL_F_PROC, pb);
  sl_frame_put_str(&req, SL_F_DATA, "x\n");
  sl_frame_end(&req, start, NULL);
  /* Connection a drives b's process: processes are not tied to connections. */
  CHECK_OK(sl_agent_conn_call(&a, &req, NULL, NULL, &reply, &f, &err), &err);
  req.len = 0;
  start = sl_frame_begin(&req, SL_MSG_WRITE_STDIN, 0);
  sl_frame_put_i64(&req, SL_F_PROC, pa);
  sl_frame_put_str(&req, SL_F_DATA, "y\n");
  sl_frame_end(&req, start, NULL);
  CHECK_OK(sl_agent_conn_call(&b, &req, NULL, NULL, &reply, &f, &err), &err);
  CHECK_OK(proc_call(&a, SL_MSG_WAIT, pa, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  CHECK_OK(proc_call(&b, SL_MSG_WAIT, pb, &reply, &f, &err, SL_F_TIMEOUT_MS, 5000), &err);
  const uint8_t *data;
  size_t len;
  CHECK_OK(proc_call(&a, SL_MSG_READ, pa, &reply, &f, &err, SL_F_FD, 1), &err);
  CHECK(sl_frame_get_bytes(&f, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 4);
  CHECK(memcmp(data, "a:y\n", 4) == 0);
  CHECK_OK(proc_call(&b, SL_MSG_READ, pb, &reply, &f, &err, SL_F_FD, 1), &err);
  CHECK(sl_frame_get_bytes(&f, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 4);
  CHECK(memcmp(data, "b:x\n", 4) == 0);
  sl_buf_free(&req);
  sl_buf_free(&reply);
  sl_agent_conn_close(&a);
  sl_agent_conn_close(&b);
}

static void missing_agent_is_reported(void) {
  sl_agent_conn c;
  sl_error err = {0};
  char path[100];
  snprintf(path, sizeof path, "%s/no-such.sock", H.dir);
  CHECK_INT(sl_agent_conn_open(&c, path, 1000, 0, &err), ==, -ENOENT);
  /* A socket file that no process listens on. */
  snprintf(path, sizeof path, "%s/dead.sock", H.dir);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  CHECK_INT(bind(fd, (struct sockaddr *)&addr, sizeof addr), ==, 0);
  close(fd);
  CHECK_INT(sl_agent_conn_open(&c, path, 1000, 0, &err), ==, -ECONNREFUSED);
  CHECK(strstr(err.msg, "dead.sock") != NULL);
}

static long cpu_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  long utime = 0, stime = 0;
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                          &stime) != 2)
    return -1;
  return utime + stime;
}

/* Out of fds, the agent pauses accepting instead of spinning on the
 * readable listener, and serves again once fds are free. */
static void fd_limit_pauses_accept(void) {
  struct rlimit old, low = {16, 16};
  CHECK_INT(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
  CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
  harness small;
  int started = harness_start(&small);
  setrlimit(RLIMIT_NOFILE, &old);
  CHECK_INT(started, ==, 0);
  int fds[24];
  for (int i = 0; i < 24; i++) fds[i] = raw_connect(small.sock);
  long before = cpu_ticks(small.pid);
  sleep_ms(1000);
  long after = cpu_ticks(small.pid);
  /* A spinning loop would use about 100 ticks in that second. */
  CHECK_INT(after - before, <, 30);
  for (int i = 0; i < 24; i++)
    if (fds[i] >= 0) close(fds[i]);
  sl_agent_conn c;
  sl_error err = {0};
  int rc = -1;
  for (int i = 0; i < 50 && rc < 0; i++) {
    rc = sl_agent_conn_open(&c, small.sock, 2000, 0, &err);
    if (rc == 0 && ping(&c, &err) < 0) {
      sl_agent_conn_close(&c);
      rc = -1;
    }
    if (rc < 0) sleep_ms(100);
  }
  CHECK_OK(rc, &err);
  sl_agent_conn_close(&c);
  harness_stop(&small);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (harness_start(&H) < 0) {
    fprintf(stderr, "could not start %s\n", agent_binary());
    return 1;
  }
  RUN(hello_reports_versions);
  RUN(exec_reports_exit_codes);
  RUN(exec_reports_signal);
  RUN(exec_separates_stdout_and_stderr);
  RUN(exec_passes_binary_bytes);
  RUN(exec_uses_env_and_cwd);
  RUN(large_stdin_reaches_process);
  RUN(invalid_options_exit_2);
  RUN(missing_program_is_enoent);
  RUN(missing_cwd_is_enoent);
  RUN(invalid_exec_requests_are_einval);
  RUN(timeout_kills_process_group);
  RUN(stdin_streams_through_cat);
  RUN(read_releases_earlier_output);
  RUN(list_and_release);
  RUN(wait_times_out);
  RUN(output_kept_while_disconnected);
  RUN(backpressure_keeps_all_output);
  RUN(malformed_frame_closes_connection);
  RUN(malformed_frame_drops_only_that_connection);
  RUN(random_bytes_never_stop_the_agent);
  RUN(quiesce_closes_every_connection);
  RUN(quiesce_replies_to_sent_requests);
  RUN(quiesce_waits_for_partial_request);
  RUN(quiesce_hold_waits_for_end_signal);
  RUN(quiesce_hold_ends_after_timeout);
  RUN(quiesce_rejects_invalid_hold);
  RUN(end_signal_without_quiesce);
  RUN(two_connections_at_once);
  RUN(fd_limit_pauses_accept);
  RUN(missing_agent_is_reported);
  int status = harness_stop(&H);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "agent did not exit cleanly on SIGTERM: status %d\n", status);
    test_failures++;
  }
  TEST_EXIT();
}
