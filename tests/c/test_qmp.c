/* Unit tests of the QMP parser and of both QMP clients. The clients talk to
 * a scripted QMP server on a unix socket in a temporary directory; tests
 * against real QEMU are in test_vm_integration.c. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"
#include "test.h"

static void parse_greeting(void) {
  const char *line =
      "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, "
      "\"capabilities\": [\"oob\"]}}";
  sl_qmp_msg msg;
  sl_error err = {0};
  CHECK_OK(sl_qmp_parse(line, strlen(line), &msg, &err), &err);
  CHECK_INT(msg.kind, ==, SL_QMP_GREETING);
  CHECK(json_is_object(msg.value));
  sl_qmp_msg_clear(&msg);
}

static void parse_return_with_id(void) {
  const char *line = "{\"return\": {\"status\": \"running\"}, \"id\": \"sl-3\"}";
  sl_qmp_msg msg;
  sl_error err = {0};
  CHECK_OK(sl_qmp_parse(line, strlen(line), &msg, &err), &err);
  CHECK_INT(msg.kind, ==, SL_QMP_RETURN);
  CHECK_STR(msg.id, "sl-3");
  CHECK_STR(json_string_value(json_object_get(msg.value, "status")), "running");
  sl_qmp_msg_clear(&msg);
}

static void parse_error_reply(void) {
  const char *line =
      "{\"id\": \"sl-1\", \"error\": {\"class\": \"GenericError\", \"desc\": \"no such file\"}}";
  sl_qmp_msg msg;
  sl_error err = {0};
  CHECK_OK(sl_qmp_parse(line, strlen(line), &msg, &err), &err);
  CHECK_INT(msg.kind, ==, SL_QMP_ERROR);
  CHECK_STR(msg.error_class, "GenericError");
  CHECK_STR(msg.error_desc, "no such file");
  sl_qmp_msg_clear(&msg);
}

static void parse_event(void) {
  const char *line =
      "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"MIGRATION\", "
      "\"data\": {\"status\": \"completed\"}}";
  sl_qmp_msg msg;
  sl_error err = {0};
  CHECK_OK(sl_qmp_parse(line, strlen(line), &msg, &err), &err);
  CHECK_INT(msg.kind, ==, SL_QMP_EVENT);
  CHECK_STR(msg.event, "MIGRATION");
  CHECK_STR(json_string_value(json_object_get(msg.value, "status")), "completed");
  CHECK(msg.id == NULL);
  sl_qmp_msg_clear(&msg);
}

static void parse_rejects_garbage(void) {
  const char *cases[] = {"not json", "[1, 2]", "{\"foo\": 1}", "{\"error\": \"x\"}",
                         "{\"return\": {}"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_qmp_msg msg;
    sl_error err = {0};
    CHECK_INT(sl_qmp_parse(cases[i], strlen(cases[i]), &msg, &err), ==, -EPROTO);
    CHECK(strstr(err.msg, "QMP") != NULL);
    CHECK(msg.root == NULL);
  }
}

static void format_command_line(void) {
  json_t *args = json_pack("{s:s}", "uri", "fd:state");
  char *line = sl_qmp_format_command("migrate", args, "sl-7");
  json_decref(args);
  CHECK(line != NULL);
  size_t len = strlen(line);
  CHECK(len > 2 && strcmp(line + len - 2, "\r\n") == 0);
  json_t *back = json_loadb(line, len - 2, 0, NULL);
  free(line);
  CHECK(back != NULL);
  CHECK_STR(json_string_value(json_object_get(back, "execute")), "migrate");
  CHECK_STR(json_string_value(json_object_get(back, "id")), "sl-7");
  CHECK_STR(json_string_value(json_object_get(json_object_get(back, "arguments"), "uri")),
            "fd:state");
  json_decref(back);
}

/* The scripted server: each step either sends a line, or reads a command,
 * checks its name and replies with a line in which "%s" becomes its id. */
typedef struct step {
  const char *send;
  const char *expect;
  const char *reply;
  int raw; /* send `send` as is, without "\r\n", after a short delay */
} step;

typedef struct server {
  char dir[64];
  char path[128];
  int listen_fd;
  const step *steps;
  pthread_t thread;
  int received_fd;   /* a descriptor passed with a command, or -1 */
  char failure[256]; /* what the server saw go wrong */
} server;

static int server_read_line(int fd, char *line, size_t cap, int *passed_fd) {
  size_t len = 0;
  while (len + 1 < cap) {
    char c;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                        .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &mh, 0);
    if (n <= 0) return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm != NULL && cm->cmsg_type == SCM_RIGHTS) memcpy(passed_fd, CMSG_DATA(cm), sizeof(int));
    if (c == '\n') break;
    line[len++] = c;
  }
  line[len] = '\0';
  return 0;
}

static void server_send(int fd, const char *text) {
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len || write(fd, "\r\n", 2) != 2) return;
}

static void *server_main(void *arg) {
  server *s = arg;
  int fd = accept(s->listen_fd, NULL, NULL);
  if (fd < 0) return NULL;
  for (const step *st = s->steps; st->send || st->expect; st++) {
    if (st->send && st->raw) {
      usleep(20000);
      if (write(fd, st->send, strlen(st->send)) < 0) break;
      continue;
    }
    if (st->send) {
      server_send(fd, st->send);
      continue;
    }
    char line[4096];
    if (server_read_line(fd, line, sizeof line, &s->received_fd) < 0) {
      snprintf(s->failure, sizeof s->failure, "connection closed before %s", st->expect);
      break;
    }
    json_t *cmd = json_loads(line, 0, NULL);
    const char *name = json_string_value(json_object_get(cmd, "execute"));
    const char *id = json_string_value(json_object_get(cmd, "id"));
    if (name == NULL || strcmp(name, st->expect) != 0) {
      snprintf(s->failure, sizeof s->failure, "expected %s, got %.200s", st->expect, line);
      json_decref(cmd);
      break;
    }
    if (st->reply != NULL) {
      char reply[4096];
      snprintf(reply, sizeof reply, st->reply, id ? id : "");
      server_send(fd, reply);
    }
    json_decref(cmd);
  }
  close(fd);
  return NULL;
}

static int server_start(server *s, const step *steps) {
  memset(s, 0, sizeof *s);
  s->received_fd = -1;
  s->steps = steps;
  strcpy(s->dir, "/tmp/sandlot-qmp-XXXXXX");
  if (mkdtemp(s->dir) == NULL) return -1;
  snprintf(s->path, sizeof s->path, "%s/qmp.sock", s->dir);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, s->path);
  s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(s->listen_fd, 1) < 0)
    return -1;
  return pthread_create(&s->thread, NULL, server_main, s) == 0 ? 0 : -1;
}

static void server_stop(server *s) {
  pthread_join(s->thread, NULL);
  close(s->listen_fd);
  if (s->received_fd >= 0) close(s->received_fd);
  unlink(s->path);
  rmdir(s->dir);
}

#define SEND(text) {.send = (text)}
#define RAW(text) {.send = (text), .raw = 1}
#define EXPECT(command, reply_text) {.expect = (command), .reply = (reply_text)}
#define END {.send = NULL}
#define GREETING "{\"QMP\": {\"version\": {}, \"capabilities\": []}}"
#define CAPS_OK EXPECT("qmp_capabilities", "{\"return\": {}, \"id\": \"%s\"}")

static const step sync_script[] = {
    SEND(GREETING),
    CAPS_OK,
    EXPECT("query-status",
     "{\"event\": \"STOP\", \"data\": {}}\r\n"
     "{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": \"%s\"}"),
    EXPECT("cont", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"bad state\"}, \"id\": \"%s\"}"),
    EXPECT("getfd", "{\"return\": {}, \"id\": \"%s\"}"),
    SEND("{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}"),
    SEND("{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}"),
    END,
};

static bool match_event_name(const char *event, json_t *data, void *arg) {
  (void)data;
  return strcmp(event, arg) == 0;
}

static bool match_migration_completed(const char *event, json_t *data, void *arg) {
  (void)arg;
  const char *status = json_string_value(json_object_get(data, "status"));
  return strcmp(event, "MIGRATION") == 0 && status && strcmp(status, "completed") == 0;
}

static void sync_client_runs_script(void) {
  server s;
  CHECK_INT(server_start(&s, sync_script), ==, 0);
  sl_qmp_sync *q = NULL;
  sl_error err = {0};
  int rc = sl_qmp_sync_connect(s.path, 5000, &q, &err);
  if (rc < 0) server_stop(&s);
  CHECK_OK(rc, &err);

  json_t *ret = NULL;
  CHECK_OK(sl_qmp_sync_execute(q, "query-status", NULL, &ret, 5000, &err), &err);
  CHECK_STR(json_string_value(json_object_get(ret, "status")), "paused");
  json_decref(ret);

  CHECK_INT(sl_qmp_sync_execute(q, "cont", NULL, NULL, 5000, &err), ==, -EIO);
  CHECK_STR(err.msg, "QMP cont failed: GenericError: bad state");

  int passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
  CHECK_OK(sl_qmp_sync_send_fd(q, "state", passed, 5000, &err), &err);
  close(passed);

  /* The STOP event arrived before the query-status reply and was queued. */
  CHECK_OK(sl_qmp_sync_wait_event(q, match_event_name, "STOP", 5000, &err), &err);
  CHECK_OK(sl_qmp_sync_wait_event(q, match_migration_completed, NULL, 5000, &err), &err);
  CHECK_INT(sl_qmp_sync_wait_event(q, match_event_name, "STOP", 5000, &err), ==, -EPIPE);
  sl_qmp_sync_close(q);
  server_stop(&s);
  CHECK_STR(s.failure, "");
  CHECK(s.received_fd >= 0);
}

static void sync_client_times_out(void) {
  static const step script[] = {SEND(GREETING), CAPS_OK, EXPECT("stop", NULL),
                                END};
  /* The server waits for a "stop" that never comes, so an event wait with a
   * short timeout ends with ETIMEDOUT. */
  server s;
  CHECK_INT(server_start(&s, script), ==, 0);
  sl_qmp_sync *q = NULL;
  sl_error err = {0};
  CHECK_OK(sl_qmp_sync_connect(s.path, 5000, &q, &err), &err);
  CHECK_INT(sl_qmp_sync_wait_event(q, match_event_name, "STOP", 50, &err), ==, -ETIMEDOUT);
  CHECK(strstr(err.msg, "timed out") != NULL);
  sl_qmp_sync_close(q);
  server_stop(&s);
}

/* A reply split over several writes, and two messages in one write, are
 * put together line by line. */
static void sync_client_joins_split_reply(void) {
  static const step script[] = {
      SEND(GREETING),
      CAPS_OK,
      EXPECT("query-status", NULL),
      RAW("{\"return\": {\"sta"),
      RAW("tus\": \"running\"}, \"id\": \"sl-2\"}\r"),
      RAW("\n{\"event\": \"RESUME\", \"data\": {}}\r\n{\"event\": \"STOP\"}\r\n"),
      END,
  };
  server s;
  CHECK_INT(server_start(&s, script), ==, 0);
  sl_qmp_sync *q = NULL;
  sl_error err = {0};
  CHECK_OK(sl_qmp_sync_connect(s.path, 5000, &q, &err), &err);
  json_t *ret = NULL;
  CHECK_OK(sl_qmp_sync_execute(q, "query-status", NULL, &ret, 5000, &err), &err);
  CHECK_STR(json_string_value(json_object_get(ret, "status")), "running");
  json_decref(ret);
  CHECK_OK(sl_qmp_sync_wait_event(q, match_event_name, "RESUME", 5000, &err), &err);
  CHECK_OK(sl_qmp_sync_wait_event(q, match_event_name, "STOP", 5000, &err), &err);
  sl_qmp_sync_close(q);
  server_stop(&s);
  CHECK_STR(s.failure, "");
}

static void sync_connect_missing_socket(void) {
  sl_qmp_sync *q = NULL;
  sl_error err = {0};
  CHECK_INT(sl_qmp_sync_connect("/tmp/sandlot-no-such-dir/qmp.sock", 30, &q, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "/tmp/sandlot-no-such-dir/qmp.sock") != NULL);
  CHECK(q == NULL);
}

static void sync_rejects_missing_greeting(void) {
  static const step script[] = {SEND("{\"return\": {}}"), END};
  server s;
  CHECK_INT(server_start(&s, script), ==, 0);
  sl_qmp_sync *q = NULL;
  sl_error err = {0};
  CHECK_INT(sl_qmp_sync_connect(s.path, 5000, &q, &err), ==, -EPROTO);
  CHECK(strstr(err.msg, "greeting") != NULL);
  server_stop(&s);
}

/* The loop client: a record of what the callbacks saw. */
typedef struct loop_record {
  int ready_status;
  int replies;
  int reply_status[4];
  char reply_text[4][128];
  int events;
  char last_event[32];
  int end_status;
  bool ended;
} loop_record;

static void on_ready(sl_qmp *q, int status, const sl_error *err, void *data) {
  loop_record *r = data;
  r->ready_status = status;
}

static void on_reply(sl_qmp *q, int status, json_t *ret, const sl_error *err, void *data) {
  loop_record *r = data;
  int i = r->replies++;
  if (i >= 4) return;
  r->reply_status[i] = status;
  if (status == 0) {
    char *dump = json_dumps(ret, JSON_COMPACT);
    snprintf(r->reply_text[i], sizeof r->reply_text[i], "%s", dump ? dump : "");
    free(dump);
  } else {
    snprintf(r->reply_text[i], sizeof r->reply_text[i], "%.100s", err->msg);
  }
  if (r->replies == 3) sl_qmp_close(q);
}

static void on_event(sl_qmp *q, const char *event, json_t *data, int status, void *arg) {
  loop_record *r = arg;
  if (event == NULL) {
    r->ended = true;
    r->end_status = status;
    return;
  }
  r->events++;
  snprintf(r->last_event, sizeof r->last_event, "%s", event);
}

static const step loop_script[] = {
    SEND(GREETING),
    CAPS_OK,
    EXPECT("stop", "{\"event\": \"STOP\", \"data\": {}}\r\n{\"return\": {}, \"id\": \"%s\"}"),
    EXPECT("query-status", "{\"return\": {\"status\": \"paused\"}, \"id\": \"%s\"}"),
    EXPECT("cont", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": \"%s\"}"),
    END,
};

static void loop_client_runs_script(void) {
  server s;
  CHECK_INT(server_start(&s, loop_script), ==, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_record r = {.ready_status = 1};
  sl_qmp *q = NULL;
  sl_error err = {0};
  CHECK_OK(sl_qmp_open(&loop, s.path, on_ready, on_event, &r, &q, &err), &err);
  /* Queued before the connection is up: sent after qmp_capabilities. */
  CHECK_OK(sl_qmp_execute(q, "stop", NULL, on_reply, &r, &err), &err);
  CHECK_OK(sl_qmp_execute(q, "query-status", NULL, on_reply, &r, &err), &err);
  CHECK_OK(sl_qmp_execute(q, "cont", NULL, on_reply, &r, &err), &err);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  server_stop(&s);

  CHECK_STR(s.failure, "");
  CHECK_INT(r.ready_status, ==, 0);
  CHECK_INT(r.replies, ==, 3);
  CHECK_INT(r.reply_status[0], ==, 0);
  CHECK_STR(r.reply_text[0], "{}");
  CHECK_STR(r.reply_text[1], "{\"status\":\"paused\"}");
  CHECK_INT(r.reply_status[2], ==, -EIO);
  CHECK_STR(r.reply_text[2], "QMP cont failed: GenericError: nope");
  CHECK_INT(r.events, ==, 1);
  CHECK_STR(r.last_event, "STOP");
  CHECK(r.ended);
  CHECK_INT(r.end_status, ==, 0);
}

static void on_reply_count(sl_qmp *q, int status, json_t *ret, const sl_error *err,
                           void *data) {
  loop_record *r = data;
  int i = r->replies++;
  if (i < 4) r->reply_status[i] = status;
}

static void on_event_close(sl_qmp *q, const char *event, json_t *data, int status, void *arg) {
  on_event(q, event, data, status, arg);
  if (event == NULL && status != 0) sl_qmp_close(q);
}

static void loop_client_sees_hangup(void) {
  static const step script[] = {SEND(GREETING), CAPS_OK, EXPECT("stop", NULL),
                                END};
  server s;
  CHECK_INT(server_start(&s, script), ==, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_record r = {.ready_status = 1};
  sl_qmp *q = NULL;
  sl_error err = {0};
  CHECK_OK(sl_qmp_open(&loop, s.path, on_ready, on_event_close, &r, &q, &err), &err);
  CHECK_OK(sl_qmp_execute(q, "stop", NULL, on_reply_count, &r, &err), &err);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  server_stop(&s);
  CHECK_INT(r.ready_status, ==, 0);
  CHECK_INT(r.replies, ==, 1);
  CHECK_INT(r.reply_status[0], ==, -EPIPE);
  CHECK(r.ended);
  CHECK_INT(r.end_status, ==, -EPIPE);
}

static void loop_client_connect_fails(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_record r = {.ready_status = 1};
  sl_qmp *q = NULL;
  sl_error err = {0};
  CHECK_OK(sl_qmp_open(&loop, "/tmp/sandlot-no-such-dir/qmp.sock", on_ready, on_event_close,
                       &r, &q, &err),
           &err);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_INT(r.ready_status, ==, UV_ENOENT);
  CHECK(r.ended);
}

int main(void) {
  RUN(parse_greeting);
  RUN(parse_return_with_id);
  RUN(parse_error_reply);
  RUN(parse_event);
  RUN(parse_rejects_garbage);
  RUN(format_command_line);
  RUN(sync_client_runs_script);
  RUN(sync_client_times_out);
  RUN(sync_client_joins_split_reply);
  RUN(sync_connect_missing_socket);
  RUN(sync_rejects_missing_greeting);
  RUN(loop_client_runs_script);
  RUN(loop_client_sees_hangup);
  RUN(loop_client_connect_fails);
  TEST_EXIT();
}
