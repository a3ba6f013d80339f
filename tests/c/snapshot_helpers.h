/* Helpers for the snapshot integration tests: blocking calls to a
 * sandbox's agent through its published socket, and the test workload
 * (tests/c/fixture/test_workload.c) copied into a real sandbox and read
 * back through the agent. Include after test.h and proc_helpers.h. */
#ifndef SANDLOT_SNAPSHOT_HELPERS_H
#define SANDLOT_SNAPSHOT_HELPERS_H

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "agent_client.h"
#include "proto.h"

#define AGENT_TIMEOUT_MS 20000

/* Send one request built in `req` to the sandbox's agent on a new
 * connection and wait for its final reply, which `reply` and `final`
 * keep. Events go to `on_event`. */
static inline int agent_call(const sl_sandbox_info *info, sl_buf *req, size_t start,
                      void (*on_event)(const sl_frame *f, void *data), void *data,
                      sl_buf *reply, sl_frame *final, sl_error *err) {
  int rc = sl_frame_end(req, start, err);
  sl_agent_conn conn;
  if (rc == 0) rc = sl_agent_conn_open(&conn, info->agent_socket, AGENT_TIMEOUT_MS, 0, err);
  if (rc < 0) return rc;
  rc = sl_agent_conn_call(&conn, req, on_event, data, reply, final, err);
  sl_agent_conn_close(&conn);
  return rc;
}

typedef struct captured {
  char out[1 << 16];
  size_t len;
} captured;

static inline void capture_stdout(const sl_frame *f, void *data) {
  captured *c = data;
  int64_t fd = 0;
  const uint8_t *bytes;
  size_t len = 0;
  if (f->type != SL_MSG_OUTPUT || sl_frame_get_i64(f, SL_F_FD, &fd, NULL) != 1 || fd != 1) return;
  if (sl_frame_get_bytes(f, SL_F_DATA, &bytes, &len) != 1) return;
  size_t take = len < sizeof c->out - 1 - c->len ? len : sizeof c->out - 1 - c->len;
  memcpy(c->out + c->len, bytes, take);
  c->len += take;
  c->out[c->len] = '\0';
}

/* Run `command` with /bin/sh -c and wait; its stdout goes to `out` (may
 * be NULL). Returns the exit code, or -1 with `err` set. */
static inline int agent_run(const sl_sandbox_info *info, const char *command, char *out,
                            size_t size, sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  captured *c = calloc(1, sizeof *c);
  size_t start = sl_frame_begin(&req, SL_MSG_EXEC, 0);
  sl_frame_put_str(&req, SL_F_COMMAND, command);
  sl_frame_put_i64(&req, SL_F_STREAM, 1);
  sl_frame_put_i64(&req, SL_F_TIMEOUT_MS, AGENT_TIMEOUT_MS);
  int rc = agent_call(info, &req, start, capture_stdout, c, &reply, &f, err);
  int64_t code = -1;
  if (rc == 0 && sl_frame_get_i64(&f, SL_F_EXIT_CODE, &code, NULL) != 1) code = -1;
  if (out != NULL && size > 0) {
    size_t take = c->len < size - 1 ? c->len : size - 1;
    memcpy(out, c->out, take);
    out[take] = '\0';
  }
  free(c);
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc < 0 ? -1 : (int)code;
}

/* Start argv in the background; returns the agent's process id or -1. */
static inline int64_t agent_spawn(const sl_sandbox_info *info, const char *const *argv,
                                  sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&req, SL_F_ARGV, argv);
  int64_t proc = -1;
  int rc = agent_call(info, &req, start, NULL, NULL, &reply, &f, err);
  if (rc == 0) sl_frame_get_i64(&f, SL_F_PROC, &proc, NULL);
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc < 0 ? -1 : proc;
}

/* Read a whole file (up to `size` - 1 bytes) of the sandbox. */
static inline int agent_read(const sl_sandbox_info *info, const char *path, char *buf, size_t size,
                      sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_FILE_READ, 0);
  sl_frame_put_str(&req, SL_F_PATH, path);
  sl_frame_put_i64(&req, SL_F_LENGTH, (int64_t)size - 1);
  int rc = agent_call(info, &req, start, NULL, NULL, &reply, &f, err);
  const uint8_t *data;
  size_t len = 0;
  if (rc == 0) sl_frame_get_bytes(&f, SL_F_DATA, &data, &len);
  if (rc == 0) {
    memcpy(buf, data, len);
    buf[len] = '\0';
  }
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc;
}

static inline int agent_write(const sl_sandbox_info *info, const char *path, const void *data,
                       size_t len, int mode, sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_FILE_WRITE, 0);
  sl_frame_put_str(&req, SL_F_PATH, path);
  sl_frame_put_bytes(&req, SL_F_DATA, data, len);
  sl_frame_put_i64(&req, SL_F_FLAGS, SL_FILE_CREATE | SL_FILE_TRUNCATE | SL_FILE_PARENTS);
  sl_frame_put_i64(&req, SL_F_MODE, mode);
  int rc = agent_call(info, &req, start, NULL, NULL, &reply, &f, err);
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc;
}

static inline int agent_write_text(const sl_sandbox_info *info, const char *path, const char *text,
                            sl_error *err) {
  return agent_write(info, path, text, strlen(text), 0644, err);
}

typedef struct process_list {
  int64_t procs[64];
  char states[64][16];
  int count;
} process_list;

static inline void collect_process(const sl_frame *f, void *data) {
  process_list *l = data;
  if (f->type != SL_MSG_PROCESS || l->count == 64) return;
  sl_frame_get_i64(f, SL_F_PROC, &l->procs[l->count], NULL);
  char *state = NULL;
  if (sl_frame_get_str(f, SL_F_STATE, &state, NULL) == 1) {
    snprintf(l->states[l->count], sizeof l->states[0], "%s", state);
    free(state);
  }
  l->count++;
}

/* The processes the agent tracks. */
static inline int agent_list(const sl_sandbox_info *info, process_list *out, sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  memset(out, 0, sizeof *out);
  size_t start = sl_frame_begin(&req, SL_MSG_LIST, 0);
  int rc = agent_call(info, &req, start, collect_process, out, &reply, &f, err);
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc;
}

static inline const char *process_state(const process_list *l, int64_t proc) {
  for (int i = 0; i < l->count; i++)
    if (l->procs[i] == proc) return l->states[i];
  return NULL;
}

/* Read up to `size` - 1 bytes of process `proc`'s stdout from `offset`
 * (which releases what comes before it). Returns the bytes read. */
static inline long agent_read_output(const sl_sandbox_info *info, int64_t proc, int64_t offset,
                              char *buf, size_t size, sl_error *err) {
  sl_buf req = {0}, reply = {0};
  sl_frame f;
  size_t start = sl_frame_begin(&req, SL_MSG_READ, 0);
  sl_frame_put_i64(&req, SL_F_PROC, proc);
  sl_frame_put_i64(&req, SL_F_FD, 1);
  sl_frame_put_i64(&req, SL_F_OFFSET, offset);
  sl_frame_put_i64(&req, SL_F_LENGTH, (int64_t)size - 1);
  int rc = agent_call(info, &req, start, NULL, NULL, &reply, &f, err);
  const uint8_t *data;
  size_t len = 0;
  if (rc == 0) sl_frame_get_bytes(&f, SL_F_DATA, &data, &len);
  if (rc == 0) {
    memcpy(buf, data, len);
    buf[len] = '\0';
  }
  sl_buf_free(&req);
  sl_buf_free(&reply);
  return rc < 0 ? -1 : (long)len;
}

/* The workload */

/* Copy the static test workload into the sandbox and start it with
 * `args` ("10" for 10 MB of memory, plus net, lock, deleted). Returns the
 * agent's process id or -1. */
static inline int64_t start_workload(const sl_sandbox_info *info, const char *const *args,
                              sl_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/tests/fixture-bin/test_workload", getenv("SANDLOT_BUILD_DIR"));
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    sl_error_set(err, ENOENT, "no test workload at %s", path);
    return -1;
  }
  static char binary[4 << 20];
  size_t n = fread(binary, 1, sizeof binary, f);
  fclose(f);
  if (agent_write(info, "/usr/local/bin/test_workload", binary, n, 0755, err) < 0) return -1;
  const char *argv[8] = {"/usr/local/bin/test_workload"};
  for (int i = 0; args[i] != NULL && i < 6; i++) argv[i + 1] = args[i];
  return agent_spawn(info, argv, err);
}

/* The workload's counter from /tmp/counter, read through the agent; -1
 * when unreadable. `memory_ok` (may be NULL) gets its memory check. */
static inline long read_counter(const sl_sandbox_info *info, int *memory_ok) {
  char buf[64];
  sl_error err = {0};
  long counter = -1;
  int ok = 0;
  if (agent_read(info, "/tmp/counter", buf, sizeof buf, &err) < 0) return -1;
  if (sscanf(buf, "%ld %d", &counter, &ok) != 2) return -1;
  if (memory_ok != NULL) *memory_ok = ok;
  return counter;
}

/* Wait until the counter passes `above`; returns it or -1. */
static inline long wait_counter(const sl_sandbox_info *info, long above, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    long counter = read_counter(info, NULL);
    if (counter > above) return counter;
    sleep_ms(10);
  }
  return -1;
}

/* Check that /data/log reads 1, 2, ..., n without a gap or a repeat and
 * n >= min: the files and the memory of every restore come from one
 * instant. Returns n, or -1 with the first bad line printed. */
static inline long check_log(const sl_sandbox_info *info, long min) {
  static char buf[1 << 20];
  sl_error err = {0};
  if (agent_read(info, "/data/log", buf, sizeof buf, &err) < 0) {
    fprintf(stderr, "read /data/log: %s\n", err.msg);
    return -1;
  }
  long expected = 1;
  for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"), expected++) {
    if (atol(line) != expected) {
      fprintf(stderr, "/data/log: line %ld reads %s\n", expected, line);
      return -1;
    }
  }
  return expected - 1 >= min ? expected - 1 : -1;
}

/* Print numbers 1, 2, ... one per 10 ms: a process whose output must
 * continue without loss across pauses, rollbacks and forks. */
static const char *const ticker[] __attribute__((unused)) = {"/bin/sh", "-c",
                                     "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done",
                                     NULL};

/* Check that `text` contains the lines first, first + 1, ...; returns the
 * next number expected, or -1. */
static inline long check_sequence(const char *text, long first) {
  long expected = first;
  const char *p = text;
  while (*p) {
    const char *nl = strchr(p, '\n');
    if (nl == NULL) break; /* a partial last line is read again later */
    if (atol(p) != expected) {
      fprintf(stderr, "output: expected %ld, read %.*s\n", expected, (int)(nl - p), p);
      return -1;
    }
    expected++;
    p = nl + 1;
  }
  return expected;
}

/* Bytes of `text` up to its last complete line. */
static inline size_t complete_lines(const char *text) {
  const char *last = strrchr(text, '\n');
  return last ? (size_t)(last - text) + 1 : 0;
}

/* Count the entries of <home>/<area> (snapshots, layers). */
static inline int count_entries(const char *home, const char *area) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", home, area);
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

#endif
