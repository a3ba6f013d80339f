/* The libuv agent client against the real agent: streaming exec, many
 * requests on one connection, 20 MB through backpressure, re-attaching
 * after dropped connections, stdin, file transfers, missing agents, and
 * the port locks of a VM's agent ports. */
#include "agent_harness.h"
#include "agent_ports.h"
#include "error.h"
#include "test.h"

static harness H;
static uv_loop_t loop;

typedef struct result {
  int done;
  sl_buf out[3];
  sl_exit_status st;
  sl_error err;
  int has_err;
  int64_t proc;
  /* Drop the connection when stdout passes these byte counts. */
  size_t drop_at[2];
  int drops;
  sl_agent *a;
  const sl_buf *expected; /* compared as output arrives, when set */
  int mismatch;
  int pause_twice;        /* drop by pausing again while reconnecting */
  uv_timer_t pause_timer;
} result;

static void on_start(sl_agent_exec *x, int64_t proc, int64_t pid, void *data) {
  (void)x, (void)pid;
  ((result *)data)->proc = proc;
}

/* Runs once the client has seen the connection close and waits to
 * reconnect: the resume starts a new connection, which the pause right
 * after catches before it is ready (a snapshot right after another one
 * does this). */
static void pause_twice(uv_timer_t *timer) {
  result *r = timer->data;
  sl_agent_pause(r->a);
  sl_agent_resume(r->a);
  sl_agent_pause(r->a);
  sl_agent_resume(r->a);
}

static void drop_connection_now(result *r) {
  sl_error err = {0};
  /* The agent closes every connection, the client's included. */
  if (sl_agent_quiesce(H.sock, 5000, &err) < 0) {
    fprintf(stderr, "quiesce failed: %s\n", err.msg);
    r->mismatch = 1;
  }
  if (r->pause_twice && r->drops == 1) uv_timer_start(&r->pause_timer, pause_twice, 50, 0);
  r->drops++;
}

static void on_output(sl_agent_exec *x, int fd, const uint8_t *bytes, size_t len, void *data) {
  (void)x;
  result *r = data;
  if (r->expected != NULL && fd == 1) {
    size_t at = r->out[1].len;
    if (at + len > r->expected->len || memcmp(r->expected->data + at, bytes, len) != 0)
      r->mismatch = 1;
  }
  sl_buf_append(&r->out[fd], bytes, len);
  if (fd == 1 && r->drops < 2 && r->drop_at[r->drops] > 0 &&
      r->out[1].len >= r->drop_at[r->drops])
    drop_connection_now(r);
}

static void on_exit_cb(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err,
                       void *data) {
  (void)x;
  result *r = data;
  r->done = 1;
  if (st != NULL) r->st = *st;
  if (err != NULL) {
    r->err = *err;
    r->has_err = 1;
  }
}

static const sl_exec_callbacks callbacks = {on_start, on_output, on_exit_cb};

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

/* Run the loop until *flag is set or timeout_ms passes; returns *flag. */
static int run_until(const int *flag, int timeout_ms) {
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, stop_loop, (uint64_t)timeout_ms, 0);
  while (!*flag) {
    uv_run(&loop, UV_RUN_ONCE);
    if (!uv_is_active((uv_handle_t *)&timer)) break;
  }
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return *flag;
}

/* Run the loop until the exec reported its process id (or ended). */
static int run_until_started(result *r, int timeout_ms) {
  for (int waited = 0; r->proc == 0 && !r->done && waited < timeout_ms; waited += 20)
    run_until(&r->done, 20);
  return r->proc > 0;
}

static void result_free(result *r) {
  sl_buf_free(&r->out[1]);
  sl_buf_free(&r->out[2]);
}

/* Close the client and let libuv finish closing its handles. */
static void close_client(sl_agent *a) {
  sl_agent_close(a);
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static void exec_streams_both_outputs(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  CHECK(a != NULL);
  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "printf 'to out'; printf 'to err' >&2; exit 3"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 10000));
  CHECK(!r.has_err);
  CHECK_INT(r.st.exited, ==, 1);
  CHECK_INT(r.st.exit_code, ==, 3);
  CHECK(bytes_equal(&r.out[1], "to out", 6));
  CHECK(bytes_equal(&r.out[2], "to err", 6));
  CHECK_INT(r.st.stdout_bytes, ==, 6);
  CHECK_INT(r.proc, >, 0);
  result_free(&r);
  close_client(a);
}

static void many_execs_share_one_connection(void) {
  enum { N = 40 };
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  CHECK(a != NULL);
  static result r[N];
  memset(r, 0, sizeof r);
  char commands[N][64];
  sl_error err = {0};
  for (int i = 0; i < N; i++) {
    snprintf(commands[i], sizeof commands[i], "sleep 0.0%d; printf 'run %d'; exit %d", i % 10,
             i, i % 5);
    sl_exec_spec spec = {.command = commands[i]};
    CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r[i], NULL, &err), &err);
  }
  for (int i = 0; i < N; i++) CHECK(run_until(&r[i].done, 20000));
  for (int i = 0; i < N; i++) {
    char expected[32];
    int len = snprintf(expected, sizeof expected, "run %d", i);
    CHECK(!r[i].has_err);
    CHECK(bytes_equal(&r[i].out[1], expected, (size_t)len));
    CHECK_INT(r[i].st.exit_code, ==, i % 5);
    result_free(&r[i]);
  }
  close_client(a);
}

static void build_seq(sl_buf *b, int from, int to) {
  char line[16];
  for (int i = from; i <= to; i++)
    sl_buf_append(b, line, (size_t)snprintf(line, sizeof line, "%d\n", i));
}

static void twenty_megabytes_arrive_intact(void) {
  sl_buf expected = {0};
  build_seq(&expected, 1, 2700000);
  CHECK_INT(expected.len, >, 20000000);
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {.expected = &expected};
  sl_error err = {0};
  /* A small agent buffer makes backpressure and acks work hard. */
  sl_exec_spec spec = {.command = "seq 1 2700000", .buffer_size = 65536};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 120000));
  CHECK(!r.has_err);
  CHECK_INT(r.st.exit_code, ==, 0);
  CHECK(!r.mismatch);
  CHECK_INT(r.out[1].len, ==, expected.len);
  CHECK(memcmp(r.out[1].data, expected.data, expected.len) == 0);
  result_free(&r);
  sl_buf_free(&expected);
  close_client(a);
}

static void reattach_after_drops_loses_nothing(void) {
  sl_buf expected = {0};
  build_seq(&expected, 1, 600000);
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {.expected = &expected, .a = a, .drop_at = {100000, 2500000}};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "seq 1 300000; sleep 0.3; seq 300001 600000",
                       .buffer_size = 65536};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 60000));
  if (r.has_err) fprintf(stderr, "exec failed: %s\n", r.err.msg);
  CHECK(!r.has_err);
  CHECK_INT(r.drops, ==, 2);
  CHECK(!r.mismatch);
  CHECK_INT(r.out[1].len, ==, expected.len);
  CHECK(memcmp(r.out[1].data, expected.data, expected.len) == 0);
  CHECK_INT(r.st.exit_code, ==, 0);
  result_free(&r);
  sl_buf_free(&expected);
  close_client(a);
}

static void pause_while_reconnecting_loses_nothing(void) {
  sl_buf expected = {0};
  build_seq(&expected, 1, 400000);
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {.expected = &expected, .a = a, .drop_at = {100000, 1500000}, .pause_twice = 1};
  uv_timer_init(&loop, &r.pause_timer);
  r.pause_timer.data = &r;
  sl_error err = {0};
  sl_exec_spec spec = {.command = "seq 1 200000; sleep 0.3; seq 200001 400000",
                       .buffer_size = 65536};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  int done = run_until(&r.done, 60000);
  uv_close((uv_handle_t *)&r.pause_timer, NULL);
  CHECK(done);
  if (r.has_err) fprintf(stderr, "exec failed: %s\n", r.err.msg);
  CHECK(!r.has_err);
  CHECK_INT(r.drops, ==, 2);
  CHECK(!r.mismatch);
  CHECK_INT(r.out[1].len, ==, expected.len);
  CHECK_INT(r.st.exit_code, ==, 0);
  result_free(&r);
  sl_buf_free(&expected);
  close_client(a);
}

typedef struct reply_state {
  int done;
  int failed;
  sl_error err;
} reply_state;

static void on_reply(sl_agent *a, const sl_frame *msg, const sl_error *err, void *data) {
  (void)a, (void)msg;
  reply_state *s = data;
  s->done = 1;
  if (err != NULL) {
    s->failed = 1;
    s->err = *err;
  }
}

static void ping(sl_agent *a, reply_state *s) {
  sl_buf b = {0};
  sl_error err = {0};
  sl_frame_end(&b, sl_frame_begin(&b, SL_MSG_PING, 0), NULL);
  if (sl_agent_request(a, &b, on_reply, s, &err) < 0) {
    s->done = 1;
    s->failed = 1;
    s->err = err;
  }
  sl_buf_free(&b);
}

/* A paused client keeps its ready connection: an exec started before
 * the pause ends normally on it, and a request made while paused waits
 * in the queue until the resume. */
static void pause_keeps_ready_connection(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  reply_state first = {0}, held = {0};
  ping(a, &first);
  CHECK(run_until(&first.done, 10000));
  CHECK(!first.failed);
  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "sleep 0.2; echo held"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  sl_agent_pause(a);
  ping(a, &held);
  CHECK(run_until(&r.done, 10000));
  int answered_while_paused = held.done;
  sl_agent_resume(a);
  CHECK(run_until(&held.done, 10000));
  CHECK(!r.has_err);
  CHECK_INT(r.st.exit_code, ==, 0);
  CHECK(bytes_equal(&r.out[1], "held\n", 5));
  CHECK(!answered_while_paused);
  CHECK(!held.failed);
  result_free(&r);
  close_client(a);
}

/* Requests written after the agent closed the connection for a quiesce
 * were never read (CLOSING carries the count it read). They go out again
 * on the next connection once the quiesce ends, instead of failing. */
static void unread_requests_are_sent_again(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  reply_state before = {0}, after = {0};
  ping(a, &before);
  CHECK(run_until(&before.done, 10000));
  CHECK(!before.failed);
  sl_error err = {0};
  /* The loop does not run: the client has not seen the close yet. */
  CHECK_OK(sl_agent_quiesce_hold(H.sock, 5000, 60000, &err), &err);
  ping(a, &after);
  result r = {0};
  sl_exec_spec spec = {.command = "echo again"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK_OK(sl_agent_end_quiesce(H.pid, 0, &err), &err);
  CHECK(run_until(&after.done, 10000));
  CHECK(run_until(&r.done, 10000));
  if (after.failed) fprintf(stderr, "ping failed: %s\n", after.err.msg);
  CHECK(!after.failed);
  if (r.has_err) fprintf(stderr, "exec failed: %s\n", r.err.msg);
  CHECK(!r.has_err);
  CHECK_INT(r.st.exit_code, ==, 0);
  CHECK(bytes_equal(&r.out[1], "again\n", 6));
  result_free(&r);
  close_client(a);
}

static void stdin_streams_to_process(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {0};
  sl_error err = {0};
  sl_agent_exec *x = NULL;
  sl_exec_spec spec = {.argv = (const char *[]){"cat", NULL}, .stdin_open = 1};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, &x, &err), &err);
  CHECK(run_until_started(&r, 5000));
  CHECK_INT(sl_agent_exec_proc(x), ==, r.proc);
  reply_state w[3] = {{0}};
  const char *parts[] = {"alpha\n", "beta\n"};
  for (int i = 0; i < 2; i++)
    CHECK_OK(sl_agent_write_stdin(a, r.proc, parts[i], strlen(parts[i]), on_reply, &w[i], &err),
             &err);
  CHECK_OK(sl_agent_close_stdin(a, r.proc, on_reply, &w[2], &err), &err);
  CHECK(run_until(&r.done, 10000));
  for (int i = 0; i < 3; i++) {
    CHECK(w[i].done);
    CHECK(!w[i].failed);
  }
  CHECK(bytes_equal(&r.out[1], "alpha\nbeta\n", 11));
  CHECK_INT(r.st.exit_code, ==, 0);
  result_free(&r);
  close_client(a);
}

static void signal_ends_process(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "echo ready; exec sleep 30"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  for (int waited = 0; r.out[1].len < 6 && !r.done && waited < 5000; waited += 20)
    run_until(&r.done, 20);
  CHECK(bytes_equal(&r.out[1], "ready\n", 6));
  reply_state s = {0};
  CHECK_OK(sl_agent_signal(a, r.proc, SIGKILL, on_reply, &s, &err), &err);
  CHECK(run_until(&r.done, 10000));
  CHECK(s.done);
  CHECK(!s.failed);
  CHECK_INT(r.st.exited, ==, 0);
  CHECK_INT(r.st.signal, ==, SIGKILL);
  result_free(&r);
  close_client(a);
}

static void missing_program_fails_exec(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.argv = (const char *[]){"sandlot-missing-tool", "-x", NULL}};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 10000));
  CHECK(r.has_err);
  CHECK_INT(r.err.code, ==, ENOENT);
  CHECK_STR(r.err.msg, "program not found: sandlot-missing-tool");
  CHECK_INT(r.proc, ==, 0);
  result_free(&r);
  close_client(a);
}

static void attach_follows_earlier_process(void) {
  sl_agent_conn c;
  sl_error err = {0};
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  sl_frame_put_str(&b, SL_F_COMMAND, "echo early; sleep 0.2; echo late");
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  int64_t proc = field_i64(&f, SL_F_PROC, 0);
  sl_agent_conn_close(&c);
  sl_buf_free(&b);
  sl_buf_free(&reply);

  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {0};
  CHECK_OK(sl_agent_exec_attach(a, proc, 0, 0, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 10000));
  CHECK(!r.has_err);
  CHECK(bytes_equal(&r.out[1], "early\nlate\n", 11));
  result_free(&r);

  /* The exit released the process. */
  result gone = {0};
  CHECK_OK(sl_agent_exec_attach(a, proc, 0, 0, &callbacks, &gone, NULL, &err), &err);
  CHECK(run_until(&gone.done, 10000));
  CHECK(gone.has_err);
  CHECK_INT(gone.err.code, ==, ENOENT);
  result_free(&gone);
  close_client(a);
}

typedef struct file_state {
  int done;
  int failed;
  sl_error err;
  sl_buf bytes;
} file_state;

static void on_file(sl_agent *a, const uint8_t *bytes, size_t len, const sl_error *err,
                    void *data) {
  (void)a;
  file_state *s = data;
  s->done = 1;
  if (err != NULL) {
    s->failed = 1;
    s->err = *err;
  }
  if (bytes != NULL) sl_buf_append(&s->bytes, bytes, len);
}

static void file_round_trip_large_binary(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  size_t sizes[] = {0, 1, SL_PROTO_CHUNK, 3 * SL_PROTO_CHUNK + 17};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t size = sizes[k];
    uint8_t *data = malloc(size + 1);
    uint64_t state = 0x1234567 + k;
    for (size_t i = 0; i < size; i++) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      data[i] = (uint8_t)state;
    }
    char path[160];
    snprintf(path, sizeof path, "%s/sub/dir/blob-%zu", H.dir, k);
    file_state w = {0}, rd = {0};
    sl_error err = {0};
    CHECK_OK(sl_agent_write_file(a, path, data, size, 0600, SL_FILE_PARENTS, on_file, &w, &err),
             &err);
    CHECK(run_until(&w.done, 20000));
    if (w.failed) fprintf(stderr, "write failed: %s\n", w.err.msg);
    CHECK(!w.failed);
    struct stat st;
    CHECK_INT(stat(path, &st), ==, 0);
    CHECK_INT(st.st_size, ==, (long long)size);
    CHECK_INT(st.st_mode & 0777, ==, 0600);
    CHECK_OK(sl_agent_read_file(a, path, on_file, &rd, &err), &err);
    CHECK(run_until(&rd.done, 20000));
    CHECK(!rd.failed);
    CHECK(bytes_equal(&rd.bytes, data, size));
    sl_buf_free(&rd.bytes);
    free(data);
  }
  file_state missing = {0};
  sl_error err = {0};
  CHECK_OK(sl_agent_read_file(a, "/no/such/file", on_file, &missing, &err), &err);
  CHECK(run_until(&missing.done, 10000));
  CHECK(missing.failed);
  CHECK_INT(missing.err.code, ==, ENOENT);
  CHECK_STR(missing.err.msg, "no such file: /no/such/file");
  close_client(a);
}

/* A file over the maximum fails with EFBIG after the first chunk. */
static void file_read_stops_at_the_maximum(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  char path[160];
  snprintf(path, sizeof path, "%s/large", H.dir);
  size_t size = 3 * SL_PROTO_CHUNK;
  uint8_t *data = calloc(1, size);
  file_state w = {0}, small = {0}, exact = {0};
  sl_error err = {0};
  CHECK_OK(sl_agent_write_file(a, path, data, size, 0644, 0, on_file, &w, &err), &err);
  CHECK(run_until(&w.done, 20000));
  CHECK(!w.failed);
  CHECK_OK(sl_agent_read_file_max(a, path, size - 1, on_file, &small, &err), &err);
  CHECK(run_until(&small.done, 20000));
  CHECK(small.failed);
  CHECK_INT(small.err.code, ==, EFBIG);
  char expected[300];
  snprintf(expected, sizeof expected, "file too large (%zu bytes, more than the maximum of %zu): %s",
           size, size - 1, path);
  CHECK_STR(small.err.msg, expected);
  CHECK_INT(small.bytes.len, ==, 0);
  CHECK_OK(sl_agent_read_file_max(a, path, size, on_file, &exact, &err), &err);
  CHECK(run_until(&exact.done, 20000));
  CHECK(!exact.failed);
  CHECK_INT(exact.bytes.len, ==, size);
  sl_buf_free(&exact.bytes);
  free(data);
  close_client(a);
}

/* SL_FILE_APPEND adds every chunk at the end instead of truncating. */
static void file_append_keeps_content(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  char path[160];
  snprintf(path, sizeof path, "%s/appended", H.dir);
  size_t size = SL_PROTO_CHUNK + 5;
  uint8_t *data = malloc(size);
  for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(i % 251);
  file_state first = {0}, second = {0}, rd = {0};
  sl_error err = {0};
  CHECK_OK(sl_agent_write_file(a, path, "head", 4, 0644, 0, on_file, &first, &err), &err);
  CHECK(run_until(&first.done, 10000));
  CHECK(!first.failed);
  CHECK_OK(sl_agent_write_file(a, path, data, size, 0644, SL_FILE_APPEND, on_file, &second, &err),
           &err);
  CHECK(run_until(&second.done, 20000));
  CHECK(!second.failed);
  CHECK_OK(sl_agent_read_file(a, path, on_file, &rd, &err), &err);
  CHECK(run_until(&rd.done, 20000));
  CHECK(!rd.failed);
  CHECK_INT(rd.bytes.len, ==, size + 4);
  CHECK(rd.bytes.len == size + 4 && memcmp(rd.bytes.data, "head", 4) == 0);
  CHECK(rd.bytes.len == size + 4 && memcmp(rd.bytes.data + 4, data, size) == 0);
  sl_buf_free(&rd.bytes);
  free(data);
  close_client(a);
}

typedef struct connect_state {
  int done;
  int code;
} connect_state;

static void on_connect_done(sl_agent *a, const sl_error *err, void *data) {
  (void)a;
  connect_state *s = data;
  s->done = 1;
  s->code = err ? err->code : 0;
}

static void missing_agent_fails_cleanly(void) {
  char path[100];
  snprintf(path, sizeof path, "%s/absent.sock", H.dir);
  sl_agent *a = sl_agent_new(&loop, path, NULL);
  connect_state s = {0};
  sl_agent_connect(a, on_connect_done, &s);
  CHECK(run_until(&s.done, 10000));
  CHECK_INT(s.code, ==, ENOENT);

  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "true"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until(&r.done, 10000));
  CHECK(r.has_err);
  CHECK_INT(r.err.code, ==, ENOENT);
  CHECK(strstr(r.err.msg, "absent.sock") != NULL);
  close_client(a);

  /* A bound socket that no process accepts on. */
  snprintf(path, sizeof path, "%s/refused.sock", H.dir);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  CHECK_INT(bind(fd, (struct sockaddr *)&addr, sizeof addr), ==, 0);
  a = sl_agent_new(&loop, path, NULL);
  connect_state refused = {0};
  sl_agent_connect(a, on_connect_done, &refused);
  CHECK(run_until(&refused.done, 10000));
  CHECK_INT(refused.code, ==, ECONNREFUSED);
  close_client(a);

  /* Listening but never replying to the sync marker: ETIMEDOUT. */
  CHECK_INT(listen(fd, 4), ==, 0);
  sl_agent_options opts = {.connect_timeout_ms = 200, .sync = 1};
  a = sl_agent_new(&loop, path, &opts);
  connect_state silent = {0};
  sl_agent_connect(a, on_connect_done, &silent);
  CHECK(run_until(&silent.done, 10000));
  CHECK_INT(silent.code, ==, ETIMEDOUT);
  close_client(a);
  close(fd);
}

static void close_cancels_pending_requests(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result r = {0};
  sl_error err = {0};
  sl_exec_spec spec = {.command = "sleep 5", .timeout_ms = 6000};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &r, NULL, &err), &err);
  CHECK(run_until_started(&r, 5000));
  sl_agent_close(a);
  CHECK(r.done);
  CHECK(r.has_err);
  CHECK_INT(r.err.code, ==, ECANCELED);
  uv_run(&loop, UV_RUN_NOWAIT);
  /* The process keeps running in the agent; end it. */
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &err), &err);
  sl_buf b = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&b, SL_MSG_SIGNAL, 0);
  sl_frame_put_i64(&b, SL_F_PROC, r.proc);
  sl_frame_put_i64(&b, SL_F_SIGNAL, SIGKILL);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &f, &err), &err);
  sl_buf_free(&b);
  sl_buf_free(&reply);
  sl_agent_conn_close(&c);
  result_free(&r);
}

static void cancel_then_attach_again(void) {
  sl_agent *a = sl_agent_new(&loop, H.sock, NULL);
  result first = {0};
  sl_error err = {0};
  sl_agent_exec *x = NULL;
  sl_exec_spec spec = {.command = "echo a; sleep 0.3; echo b"};
  CHECK_OK(sl_agent_exec_start(a, &spec, &callbacks, &first, &x, &err), &err);
  CHECK(run_until_started(&first, 5000));
  sl_agent_exec_cancel(x);
  CHECK(first.done);
  CHECK(first.has_err);
  CHECK_INT(first.err.code, ==, ECANCELED);

  result second = {0};
  CHECK_OK(sl_agent_exec_attach(a, first.proc, 0, 0, &callbacks, &second, NULL, &err), &err);
  CHECK(run_until(&second.done, 10000));
  CHECK(!second.has_err);
  CHECK(bytes_equal(&second.out[1], "a\nb\n", 4));
  result_free(&first);
  result_free(&second);
  close_client(a);
}

/* Make a folder that looks like a VM's port set of `count` ports, each a
 * link to the harness agent's socket, and write its agent.sock path. */
static int make_port_set(unsigned count, char *agent_sock, size_t len) {
  char dir[128], path[160];
  snprintf(dir, sizeof dir, "%s/ports", H.dir);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -1;
  for (unsigned i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/agent-%u.sock", dir, i);
    unlink(path);
    if (symlink(H.sock, path) < 0) return -1;
  }
  snprintf(agent_sock, len, "%s/agent.sock", dir);
  return 0;
}

/* Whether some port of the set is free, checked the way a client would
 * take it (and released at once). */
static int port_free(const char *agent_sock) {
  char dir[160];
  snprintf(dir, sizeof dir, "%s", agent_sock);
  *strrchr(dir, '/') = '\0';
  unsigned port;
  sl_error err = {0};
  int fd = sl_agent_port_try(dir, 2, &port, &err);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

/* Two clients hold both ports of a set while their processes run. A third
 * client with a short connect timeout fails with EBUSY. A fourth waits and
 * gets a port once one of the first two has been idle for a second. Idle
 * clients release their ports. */
static void vm_ports_shared_between_clients(void) {
  char sock[192];
  CHECK_INT(make_port_set(2, sock, sizeof sock), ==, 0);
  sl_agent_options wait_long = {.vm_ports = 1, .connect_timeout_ms = 10000};
  sl_agent_options wait_short = {.vm_ports = 1, .connect_timeout_ms = 200};
  sl_agent *a = sl_agent_new(&loop, sock, &wait_long);
  sl_agent *b = sl_agent_new(&loop, sock, &wait_long);
  sl_agent *c = sl_agent_new(&loop, sock, &wait_short);
  sl_agent *d = sl_agent_new(&loop, sock, &wait_long);
  CHECK(a != NULL);
  CHECK(b != NULL);
  CHECK(c != NULL);
  CHECK(d != NULL);
  result ra = {0}, rb = {0}, rc = {0}, rd = {0};
  sl_error err = {0};
  sl_exec_spec slow = {.command = "sleep 0.5; echo slow"};
  sl_exec_spec quick = {.command = "echo quick"};
  CHECK_OK(sl_agent_exec_start(a, &slow, &callbacks, &ra, NULL, &err), &err);
  CHECK_OK(sl_agent_exec_start(b, &slow, &callbacks, &rb, NULL, &err), &err);
  CHECK(run_until_started(&ra, 5000));
  CHECK(run_until_started(&rb, 5000));
  CHECK(!port_free(sock));

  CHECK_OK(sl_agent_exec_start(c, &quick, &callbacks, &rc, NULL, &err), &err);
  CHECK(run_until(&rc.done, 5000));
  CHECK(rc.has_err);
  CHECK_INT(rc.err.code, ==, EBUSY);
  CHECK(strstr(rc.err.msg, "all 2 agent ports") != NULL);

  CHECK_OK(sl_agent_exec_start(d, &quick, &callbacks, &rd, NULL, &err), &err);
  CHECK(run_until(&rd.done, 8000));
  CHECK(!rd.has_err);
  CHECK_INT(rd.st.exit_code, ==, 0);
  CHECK(bytes_equal(&rd.out[1], "quick\n", 6));
  CHECK(run_until(&ra.done, 5000));
  CHECK(run_until(&rb.done, 5000));
  CHECK(!ra.has_err);
  CHECK(!rb.has_err);

  int never = 0;
  run_until(&never, 1500); /* past the idle release of every client */
  CHECK(port_free(sock));
  close_client(a);
  close_client(b);
  close_client(c);
  close_client(d);
  result_free(&ra);
  result_free(&rb);
  result_free(&rc);
  result_free(&rd);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  if (harness_start(&H) < 0) {
    fprintf(stderr, "could not start %s\n", agent_binary());
    return 1;
  }
  RUN(exec_streams_both_outputs);
  RUN(many_execs_share_one_connection);
  RUN(twenty_megabytes_arrive_intact);
  RUN(reattach_after_drops_loses_nothing);
  RUN(pause_while_reconnecting_loses_nothing);
  RUN(pause_keeps_ready_connection);
  RUN(unread_requests_are_sent_again);
  RUN(stdin_streams_to_process);
  RUN(signal_ends_process);
  RUN(missing_program_fails_exec);
  RUN(attach_follows_earlier_process);
  RUN(file_round_trip_large_binary);
  RUN(file_append_keeps_content);
  RUN(file_read_stops_at_the_maximum);
  RUN(missing_agent_fails_cleanly);
  RUN(close_cancels_pending_requests);
  RUN(cancel_then_attach_again);
  RUN(vm_ports_shared_between_clients);
  harness_stop(&H);
  uv_run(&loop, UV_RUN_NOWAIT);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "loop still has open handles\n");
    test_failures++;
  }
  TEST_EXIT();
}
