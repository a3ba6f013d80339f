/* Stream mode (--stream-fd) over a socketpair, the way the agent serves a
 * virtio-serial port. Sessions start with a sync marker, and a new session
 * may follow stale bytes of an old one. Malformed input resynchronises
 * instead of dropping the stream. After a hangup the agent keeps serving
 * its other socket, with no busy loop. Several streams (a VM's agent
 * ports) serve independent sessions at once. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "agent_harness.h"
#include "error.h"
#include "test.h"
#include "vm_util.h"

static harness H;
static int host_end = -1;
static sl_agent_conn S; /* over the stream */

static sl_buf reply;
static sl_frame F;
static sl_error E;

static int simple(sl_agent_conn *c, uint8_t type, uint8_t key, int64_t value) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, type, 0);
  if (key != 0) sl_frame_put_i64(&b, key, value);
  sl_frame_end(&b, start, NULL);
  sl_error_clear(&E);
  int rc = sl_agent_conn_call(c, &b, NULL, NULL, &reply, &F, &E);
  sl_buf_free(&b);
  return rc;
}

static int64_t start_quiet(sl_agent_conn *c, const char *command) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, command);
  sl_frame_end(&b, start, NULL);
  int rc = sl_agent_conn_call(c, &b, NULL, NULL, &reply, &F, &E);
  sl_buf_free(&b);
  return rc < 0 ? -1 : field_i64(&F, SL_F_PROC, -1);
}

/* Resynchronise the host side of the stream as a new session would. */
static int new_session(void) {
  sl_parser_free(&S.in);
  return sl_agent_conn_attach_fd(&S, host_end, 5000, 1, &E);
}

static int64_t proc_id;

static void session_starts_with_sync(void) {
  CHECK_OK(sl_agent_conn_attach_fd(&S, host_end, 5000, 1, &E), &E);
  CHECK_OK(simple(&S, SL_MSG_HELLO, 0, 0), &E);
  CHECK_INT(field_i64(&F, SL_F_PID, 0), ==, H.pid);
  proc_id = start_quiet(&S, "sleep 0.2; echo from the stream");
  CHECK_INT(proc_id, >, 0);
}

static void new_session_after_stale_partial_frame(void) {
  /* The previous host died in the middle of a frame: its header promises
   * more bytes than ever come. */
  const uint8_t partial[] = {60, 0, 0, 0, SL_MSG_EXEC, 1, 0, 0, 0, SL_F_COMMAND, 40, 0, 0, 0,
                             'e', 'c'};
  CHECK_INT(send(host_end, partial, sizeof partial, MSG_NOSIGNAL), ==, (long)sizeof partial);
  CHECK_OK(new_session(), &E);
  CHECK_OK(simple(&S, SL_MSG_PING, 0, 0), &E);
  /* Processes outlive sessions. */
  CHECK_OK(simple(&S, SL_MSG_WAIT, SL_F_PROC, proc_id), &E);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_READ, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc_id);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&S, &b, NULL, NULL, &reply, &F, &E), &E);
  sl_buf_free(&b);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&F, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 16);
  CHECK(memcmp(data, "from the stream\n", 16) == 0);
}

static void malformed_input_resynchronises(void) {
  const uint8_t junk[] = {3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_INT(send(host_end, junk, sizeof junk, MSG_NOSIGNAL), ==, (long)sizeof junk);
  /* The agent ignores frames until the next sync marker. */
  sl_buf b = {0};
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_PING, 77), NULL);
  CHECK_INT(send(host_end, b.data, b.len, MSG_NOSIGNAL), ==, (long)b.len);
  sl_buf_free(&b);
  CHECK_OK(new_session(), &E);
  CHECK_OK(simple(&S, SL_MSG_PING, 0, 0), &E);
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
  /* Fields after the command: state is 3rd, utime 14th, stime 15th. */
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                          &stime) != 2)
    return -1;
  return utime + stime;
}

static void hangup_keeps_agent_serving(void) {
  int64_t proc = start_quiet(&S, "sleep 0.3; echo after the hangup");
  CHECK_INT(proc, >, 0);
  close(host_end);
  host_end = -1;
  sl_parser_free(&S.in);
  S.fd = -1;
  long before = cpu_ticks(H.pid);
  sleep_ms(1000);
  long after = cpu_ticks(H.pid);
  CHECK_INT(before, >=, 0);
  /* A loop spinning on the hung-up fd would use most of the second
   * (about 100 ticks); an idle agent uses next to none. */
  CHECK_INT(after - before, <, 30);
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  CHECK_OK(simple(&c, SL_MSG_WAIT, SL_F_PROC, proc), &E);
  CHECK_INT(field_i64(&F, SL_F_EXIT_CODE, -1), ==, 0);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_READ, 0);
  sl_frame_put_i64(&b, SL_F_PROC, proc);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &F, &E), &E);
  sl_buf_free(&b);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&F, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 17);
  CHECK(memcmp(data, "after the hangup\n", 17) == 0);
  sl_agent_conn_close(&c);
}

/* --serial on a pty, standing in for a console: the agent switches the
 * tty to raw mode, so every byte value passes unchanged both ways. */
static void serial_tty_passes_all_bytes(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  CHECK(master >= 0);
  CHECK_INT(grantpt(master), ==, 0);
  CHECK_INT(unlockpt(master), ==, 0);
  const char *slave = ptsname(master);
  CHECK(slave != NULL);
  harness tty;
  CHECK_INT(harness_start_with(&tty, (const char *[]){"--serial", slave, NULL}, -1), ==, 0);
  /* The socket appears after the tty was opened and set up. */
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_attach_fd(&c, master, 5000, 1, &E), &E);
  uint8_t all[512];
  for (size_t i = 0; i < sizeof all; i++) all[i] = (uint8_t)i;
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&b, SL_F_ARGV, (const char *[]){"cat", NULL});
  sl_frame_put_bytes(&b, SL_F_STDIN, all, sizeof all);
  sl_frame_put_i64(&b, SL_F_STREAM, 1);
  sl_frame_end(&b, start, NULL);
  collected out = {0};
  CHECK_OK(sl_agent_conn_call(&c, &b, collect_event, &out, &reply, &F, &E), &E);
  sl_buf_free(&b);
  CHECK_INT(F.type, ==, SL_MSG_EXIT);
  CHECK(bytes_equal(&out.out[1], all, sizeof all));
  collected_free(&out);
  sl_agent_conn_close(&c);
  harness_stop(&tty);
}

typedef struct waiting_call {
  sl_agent_conn *conn;
  int64_t proc;
  int rc;
  int64_t exit_code;
  sl_error err;
} waiting_call;

static void *wait_on_stream(void *arg) {
  waiting_call *w = arg;
  sl_buf b = {0}, r = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_WAIT, 0);
  sl_frame_put_i64(&b, SL_F_PROC, w->proc);
  sl_frame_end(&b, start, NULL);
  sl_frame f;
  w->rc = sl_agent_conn_call(w->conn, &b, NULL, NULL, &r, &f, &w->err);
  w->exit_code = w->rc == 0 ? field_i64(&f, SL_F_EXIT_CODE, -1) : -1;
  sl_buf_free(&b);
  sl_buf_free(&r);
  return NULL;
}

/* Two streams, as two agent ports of a VM: a WAIT pending on one while
 * the other starts a session (sync marker), writes the process's stdin
 * and closes it. The pending WAIT survives the other stream's sync. */
static void streams_serve_sessions_at_once(void) {
  int a[2], b[2];
  CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), ==, 0);
  CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), ==, 0);
  harness two;
  CHECK_INT(harness_init(&two), ==, 0);
  int agent_ends[2] = {a[1], b[1]};
  CHECK_INT(harness_launch_fds(&two, (const char *[]){"--stream-fd", "3", "--stream-fd", "4",
                                                      NULL}, agent_ends, 2), ==, 0);
  close(a[1]);
  close(b[1]);
  sl_agent_conn first, second;
  CHECK_OK(sl_agent_conn_attach_fd(&first, a[0], 5000, 1, &E), &E);
  CHECK_OK(sl_agent_conn_attach_fd(&second, b[0], 5000, 1, &E), &E);

  sl_buf req = {0};
  size_t start = sl_frame_begin(&req, SL_MSG_EXEC, 0);
  sl_frame_put_str(&req, SL_F_COMMAND, "read line; test \"$line\" = ping");
  sl_frame_put_i64(&req, SL_F_STDIN_OPEN, 1);
  sl_frame_end(&req, start, NULL);
  CHECK_OK(sl_agent_conn_call(&first, &req, NULL, NULL, &reply, &F, &E), &E);
  sl_buf_free(&req);
  waiting_call w = {.conn = &second, .proc = field_i64(&F, SL_F_PROC, -1)};
  CHECK_INT(w.proc, >, 0);
  pthread_t waiter;
  CHECK_INT(pthread_create(&waiter, NULL, wait_on_stream, &w), ==, 0);
  sleep_ms(100); /* let the WAIT reach the agent */

  sl_parser_free(&first.in);
  int rc = sl_agent_conn_attach_fd(&first, first.fd, 5000, 1, &E);
  if (rc == 0) {
    start = sl_frame_begin(&req, SL_MSG_WRITE_STDIN, 0);
    sl_frame_put_i64(&req, SL_F_PROC, w.proc);
    sl_frame_put_bytes(&req, SL_F_DATA, "ping\n", 5);
    sl_frame_end(&req, start, NULL);
    rc = sl_agent_conn_call(&first, &req, NULL, NULL, &reply, &F, &E);
    sl_buf_free(&req);
  }
  if (rc == 0) rc = simple(&first, SL_MSG_CLOSE_STDIN, SL_F_PROC, w.proc);
  pthread_join(waiter, NULL);
  sl_agent_conn_close(&first);
  sl_agent_conn_close(&second);
  harness_stop(&two);
  CHECK_OK(rc, &E);
  CHECK_OK(w.rc, &w.err);
  CHECK_INT(w.exit_code, ==, 0);
}

static void repeated_stream_fd_rejected(void) {
  harness dup;
  CHECK_INT(harness_init(&dup), ==, 0);
  const char *argv[] = {agent_binary(), "--stream-fd", "3", "--stream-fd", "3", NULL};
  char *out = NULL;
  sl_error_clear(&E);
  int rc = sl_run_output(argv, &out, &E);
  free(out);
  harness_stop(&dup);
  CHECK_INT(rc, <, 0);
  CHECK(strstr(E.msg, "given twice") != NULL);
}

/* The defaults a VM's /init passes: the environment from a file of
 * NUL-separated entries (values may hold spaces and newlines) and a
 * working directory that is created when missing. */
static void env_file_and_cwd_apply(void) {
  char dir[] = "/tmp/sandlot-agent-env-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char env[128], cwd[128];
  snprintf(env, sizeof env, "%s/env", dir);
  snprintf(cwd, sizeof cwd, "%s/work/here", dir);
  static const char entries[] = "GREETING=hello world\0MULTI=a\nb\0PATH=/bin:/usr/bin";
  sl_error err = {0};
  CHECK_OK(sl_write_file_atomic(env, entries, sizeof entries - 1, 0600, &err), &err);
  harness h;
  CHECK_INT(harness_start_with(&h, (const char *[]){"--env-file", env, "--cwd", cwd, NULL}, -1),
            ==, 0);
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, h.sock, 5000, 0, &E), &E);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "pwd; echo \"$GREETING\"; echo \"$MULTI\"; echo $PATH");
  sl_frame_put_i64(&b, SL_F_STREAM, 1);
  sl_frame_end(&b, start, NULL);
  collected out = {0};
  int rc = sl_agent_conn_call(&c, &b, collect_event, &out, &reply, &F, &E);
  sl_buf_free(&b);
  sl_agent_conn_close(&c);
  harness_stop(&h);
  CHECK_OK(rc, &E);
  char want[256];
  snprintf(want, sizeof want, "%s\nhello world\na\nb\n/bin:/usr/bin\n", cwd);
  CHECK(bytes_equal(&out.out[1], want, strlen(want)));
  collected_free(&out);

  /* A malformed entry stops the agent at start. */
  static const char bad[] = "NO_EQUALS_SIGN";
  CHECK_OK(sl_write_file_atomic(env, bad, sizeof bad - 1, 0600, &err), &err);
  char sock[160];
  snprintf(sock, sizeof sock, "%s/unused.sock", dir);
  const char *argv[] = {agent_binary(), "--listen", sock, "--env-file", env, NULL};
  CHECK_INT(sl_run_output(argv, NULL, &err), <, 0);
  CHECK(strstr(err.msg, "invalid entry") != NULL);
  sl_remove_tree(dir, NULL);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) return 1;
  if (harness_start_with(&H, (const char *[]){"--stream-fd", "3", NULL}, sp[1]) < 0) return 1;
  close(sp[1]);
  host_end = sp[0];
  RUN(session_starts_with_sync);
  RUN(new_session_after_stale_partial_frame);
  RUN(malformed_input_resynchronises);
  RUN(hangup_keeps_agent_serving);
  RUN(serial_tty_passes_all_bytes);
  RUN(streams_serve_sessions_at_once);
  RUN(repeated_stream_fd_rejected);
  RUN(env_file_and_cwd_apply);
  if (S.fd >= 0) sl_agent_conn_close(&S);
  sl_buf_free(&reply);
  harness_stop(&H);
  TEST_EXIT();
}
