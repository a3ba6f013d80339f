/* Commands and files inside process sandboxes, through the real agent
 * and its host-side client: output, binary file round trips, freezing,
 * limits, device access and path escapes. Needs root. */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <uv.h>

#include "test.h"
#include "agent_client.h"
#include "proc_helpers.h"
#include "sha256.h"

/* One agent client on a private loop, for the duration of a test. */
typedef struct client {
  uv_loop_t loop;
  sl_agent *agent;
} client;

static int client_open(client *c, const sl_sandbox_info *info) {
  if (uv_loop_init(&c->loop) != 0) return -1;
  c->agent = sl_agent_new(&c->loop, info->agent_socket, NULL);
  return c->agent ? 0 : -1;
}

static void client_close(client *c) {
  sl_agent_close(c->agent);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  uv_loop_close(&c->loop);
}

typedef struct run_result {
  char out[65536];
  size_t out_len;
  char errout[4096];
  size_t err_len;
  sl_exit_status status;
  sl_error err;
  int done;
  int failed;
} run_result;

static void on_output(sl_agent_exec *x, int fd, const uint8_t *bytes, size_t len, void *data) {
  (void)x;
  run_result *r = data;
  char *buf = fd == 1 ? r->out : r->errout;
  size_t cap = fd == 1 ? sizeof r->out : sizeof r->errout;
  size_t *used = fd == 1 ? &r->out_len : &r->err_len;
  size_t take = len < cap - 1 - *used ? len : cap - 1 - *used;
  memcpy(buf + *used, bytes, take);
  *used += take;
  buf[*used] = '\0';
}

static void on_exit_cb(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err,
                       void *data) {
  (void)x;
  run_result *r = data;
  r->done = 1;
  if (st) r->status = *st;
  if (err) {
    r->failed = 1;
    r->err = *err;
  }
}

/* Run `command` with /bin/sh -c in the sandbox and wait for it. */
static int run(client *c, const char *command, int64_t timeout_ms, run_result *r) {
  memset(r, 0, sizeof *r);
  sl_exec_spec spec = {0};
  spec.command = command;
  spec.timeout_ms = timeout_ms;
  sl_exec_callbacks cbs = {NULL, on_output, on_exit_cb};
  if (sl_agent_exec_start(c->agent, &spec, &cbs, r, NULL, &r->err) < 0) return -1;
  while (!r->done) uv_run(&c->loop, UV_RUN_ONCE);
  if (r->failed) fprintf(stderr, "exec \"%s\": %s\n", command, r->err.msg);
  return r->failed ? -1 : 0;
}

typedef struct file_result {
  uint8_t *bytes; /* NUL-terminated copy of what was read */
  size_t len;
  sl_error err;
  int done, failed;
} file_result;

/* The client calls back once: with the whole file for a read, with NULL
 * bytes for a finished write, or with the error. */
static void on_file(sl_agent *a, const uint8_t *bytes, size_t len, const sl_error *err, void *data) {
  (void)a;
  file_result *f = data;
  f->done = 1;
  if (err) {
    f->failed = 1;
    f->err = *err;
    return;
  }
  if (bytes == NULL) return;
  f->bytes = malloc(len + 1);
  if (f->bytes == NULL) {
    f->failed = 1;
    return;
  }
  memcpy(f->bytes, bytes, len);
  f->bytes[len] = 0;
  f->len = len;
}

static int write_file(client *c, const char *path, const void *bytes, size_t len, file_result *f) {
  memset(f, 0, sizeof *f);
  if (sl_agent_write_file(c->agent, path, bytes, len, 0644, 0, on_file, f, &f->err) < 0) return -1;
  while (!f->done) uv_run(&c->loop, UV_RUN_ONCE);
  return f->failed ? -1 : 0;
}

static int read_file(client *c, const char *path, file_result *f) {
  memset(f, 0, sizeof *f);
  if (sl_agent_read_file(c->agent, path, on_file, f, &f->err) < 0) return -1;
  while (!f->done) uv_run(&c->loop, UV_RUN_ONCE);
  return f->failed ? -1 : 0;
}

/* A running sandbox with a connected client, torn down by finish(). */
typedef struct fixture {
  char home[64];
  sl_sandboxes *h;
  sl_sandbox_info info;
  client c;
} fixture;

static int start(fixture *fx, const sl_create_spec *spec) {
  sl_error err = {0};
  fx->h = open_store(fx->home, sizeof fx->home);
  if (fx->h == NULL) return -1;
  if (sl_sandbox_create(fx->h, spec, &fx->info, &err) < 0) {
    fprintf(stderr, "create: %s: %s\n", sl_errname(err.code), err.msg);
    return -1;
  }
  return client_open(&fx->c, &fx->info);
}

static int finish(fixture *fx) {
  client_close(&fx->c);
  sl_error err = {0};
  int rc = sl_sandbox_kill(fx->h, fx->info.id, &err);
  sl_sandbox_info after;
  int clean = rc == 0 && sl_sandbox_get(fx->h, fx->info.id, &after, &err) == 0 &&
              nothing_left(fx->h, &after);
  close_store(fx->h, fx->home);
  return clean;
}

static void exec_then_kill(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "echo hello; echo oops >&2; exit 3", 0, &r), ==, 0);
  CHECK_STR(r.out, "hello\n");
  CHECK_STR(r.errout, "oops\n");
  CHECK_INT(r.status.exited, ==, 1);
  CHECK_INT(r.status.exit_code, ==, 3);
  CHECK(finish(&fx));
}

static void python_output_is_exact(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "python3 -c 'import sys; print(\"hello from python\", 6 * 7); "
                       "sys.stdout.write(\"\\u00e9\\n\")'",
                0, &r),
            ==, 0);
  CHECK_STR(r.out, "hello from python 42\n\xc3\xa9\n");
  CHECK_INT(r.status.exit_code, ==, 0);
  CHECK(finish(&fx));
}

static void sandbox_sees_its_own_world(void) {
  const char *env[] = {"GREETING=hi there", NULL};
  sl_create_spec spec = test_spec();
  spec.hostname = "box1";
  spec.env = env;
  spec.cwd = "/tmp";
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "hostname; echo \"$GREETING\"; pwd; echo $$; cat /proc/1/cmdline | tr '\\0' ' '",
                0, &r),
            ==, 0);
  CHECK(strncmp(r.out, "box1\nhi there\n/tmp\n", 19) == 0);
  CHECK(strstr(r.out, "/.sandlot/agent --listen /run/sandlot/agent.sock") != NULL);

  CHECK_INT(run(&fx.c, "ls /proc | grep -c '^[0-9]'", 0, &r), ==, 0);
  CHECK(atoi(r.out) <= 4); /* PID 1, the shell and ls or grep: no host process */
  CHECK_INT(run(&fx.c, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", 0, &r), ==, 0);
  CHECK_STR(r.out, "lo\n");
  CHECK_INT(run(&fx.c, "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status", 0, &r), ==, 0);
  CHECK(strstr(r.out, "NoNewPrivs:\t1") != NULL);
  CHECK(strstr(r.out, "CapBnd:\t00000000a00425fb") != NULL);
  CHECK_INT(run(&fx.c, "readlink /proc/1/fd/0 /proc/1/fd/1 /proc/1/fd/2", 0, &r), ==, 0);
  CHECK_STR(r.out, "/dev/null\n/dev/null\n/dev/null\n");
  CHECK(finish(&fx));
}

static void binary_file_round_trip(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  size_t len = 3 * 1024 * 1024 + 17; /* more than one protocol chunk */
  uint8_t *data = malloc(len);
  CHECK(data != NULL);
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)((i * 131) ^ (i >> 8));
  file_result f;
  CHECK_INT(write_file(&fx.c, "/root/blob.bin", data, len, &f), ==, 0);
  CHECK_INT(read_file(&fx.c, "/root/blob.bin", &f), ==, 0);
  CHECK(f.len == len);
  CHECK(memcmp(f.bytes, data, len) == 0);
  free(f.bytes);

  /* The sandbox reads the same bytes, and so does the host in the upper. */
  run_result r;
  CHECK_INT(run(&fx.c, "sha256sum < /root/blob.bin | cut -d' ' -f1", 0, &r), ==, 0);
  char hex[SL_SHA256_HEX_LEN + 1];
  sl_sha256_hex(data, len, hex);
  CHECK(strncmp(r.out, hex, SL_SHA256_HEX_LEN) == 0);
  char upper[256];
  snprintf(upper, sizeof upper, "%s/sandboxes/%s/upper/root/blob.bin", fx.home, fx.info.id);
  CHECK_INT(sl_sha256_file(upper, hex), ==, 0);
  CHECK(strncmp(r.out, hex, SL_SHA256_HEX_LEN) == 0);
  free(data);
  CHECK(finish(&fx));
}

static unsigned long read_counter(pid_t init) {
  char path[128], buf[64] = "";
  snprintf(path, sizeof path, "/proc/%d/root/tmp/counter", (int)init);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? strtoul(buf, NULL, 10) : 0;
}

static void freeze_stops_progress(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; "
                       "mv /tmp/counter.new /tmp/counter; sleep 0.01; done' >/dev/null 2>&1 &",
                0, &r),
            ==, 0);
  sleep_ms(300);
  unsigned long before = read_counter(fx.info.init_pid);
  CHECK(before > 0);

  sl_error err = {0};
  CHECK_OK(sl_sandbox_freeze(fx.h, fx.info.id, &err), &err);
  unsigned long frozen = read_counter(fx.info.init_pid);
  sleep_ms(500);
  CHECK_INT(read_counter(fx.info.init_pid), ==, frozen);

  CHECK_OK(sl_sandbox_thaw(fx.h, fx.info.id, &err), &err);
  sleep_ms(500);
  CHECK(read_counter(fx.info.init_pid) > frozen);
  CHECK_INT(run(&fx.c, "echo alive", 0, &r), ==, 0);
  CHECK_STR(r.out, "alive\n");
  CHECK(finish(&fx));
}

static long cgroup_number(const sl_sandbox_info *info, sl_cgroup_controller c, const char *file,
                          const char *key) {
  sl_cgroup cg;
  sl_error err = {0};
  if (sl_cgroup_parse(info->cgroups, &cg, &err) < 0 || !cg.dirs[c][0]) return -1;
  char path[700], line[256];
  snprintf(path, sizeof path, "%s/%s", cg.dirs[c], file);
  FILE *f = fopen(path, "r");
  long value = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (key == NULL) value = atol(line);
    else if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ' ')
      value = atol(line + strlen(key) + 1);
  }
  if (f) fclose(f);
  return value;
}

static void fork_bomb_hits_pids_limit(void) {
  sl_create_spec spec = test_spec();
  spec.pids = 64;
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c,
                "python3 -c '\n"
                "import os, time\n"
                "n = 0\n"
                "try:\n"
                "    while True:\n"
                "        if os.fork() == 0:\n"
                "            os.closerange(0, 3)\n"
                "            time.sleep(60)\n"
                "            os._exit(0)\n"
                "        n += 1\n"
                "except OSError as e:\n"
                "    print(n, e.errno)\n'",
                20000, &r),
            ==, 0);

  int forked = -1, error = -1;
  CHECK_INT(sscanf(r.out, "%d %d", &forked, &error), ==, 2);
  CHECK_INT(error, ==, EAGAIN);
  CHECK(forked > 0);
  CHECK(forked < 64);
  long hits = cgroup_number(&fx.info, SL_CG_PIDS, "pids.events", "max");
  if (hits < 0) hits = cgroup_number(&fx.info, SL_CG_UNIFIED, "pids.events", "max");
  CHECK(hits > 0);

  /* The host still forks, and kill removes every bomb process. */
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  CHECK(pid > 0);
  waitpid(pid, NULL, 0);
  CHECK(finish(&fx));
}

static void memory_hog_hits_limit(void) {
  sl_create_spec spec = test_spec();
  spec.memory = "64M";
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "exec python3 -c 'b = bytearray(512 << 20); print(\"allocated\")'", 30000, &r),
            ==, 0);
  CHECK_STR(r.out, "");
  CHECK_INT(r.status.exited, ==, 0);
  CHECK_INT(r.status.signal, ==, SIGKILL);
  sl_cgroup cg;
  sl_error err = {0};
  CHECK_OK(sl_cgroup_parse(fx.info.cgroups, &cg, &err), &err);
  CHECK(sl_cgroup_oom_kills(&cg) > 0);
  /* The OOM killer took the hog; the agent and the sandbox go on. */
  CHECK_INT(run(&fx.c, "echo alive", 0, &r), ==, 0);
  CHECK_STR(r.out, "alive\n");
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(fx.h, fx.info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(finish(&fx));
}

static void host_devices_unreachable(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  run_result r;
  CHECK_INT(run(&fx.c, "ls /dev | tr '\\n' ' '", 0, &r), ==, 0);
  CHECK_STR(r.out, "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ");
  CHECK_INT(run(&fx.c, "mknod /tmp/disk b 8 0", 0, &r), ==, 0);
  CHECK(r.status.exit_code != 0);
  CHECK(strstr(r.errout, "Operation not permitted") != NULL);
  CHECK_INT(run(&fx.c, "head -c 1 /dev/zero | od -An -tx1; ls /sys | wc -l", 0, &r), ==, 0);
  CHECK_STR(r.out, " 00\n0\n");
  CHECK_INT(run(&fx.c, "echo 1 > /proc/sys/vm/drop_caches", 0, &r), ==, 0);
  CHECK(r.status.exit_code != 0);
  CHECK(strstr(r.errout, "Read-only file system") != NULL);
  CHECK_INT(run(&fx.c, "mount -t tmpfs none /mnt", 0, &r), ==, 0);
  CHECK(r.status.exit_code != 0);
  CHECK(finish(&fx));
}

/* File requests resolve `..` and symlinks inside the sandbox's root, so a
 * write aimed at a host path lands in the sandbox or fails. */
static void file_requests_stay_inside(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  char name[64], host_path[128], inside[256], target[160];
  snprintf(name, sizeof name, "sandlot-escape-%s", fx.info.id);
  snprintf(host_path, sizeof host_path, "/tmp/%s", name);
  unlink(host_path);

  file_result f;
  snprintf(target, sizeof target, "/../../../../tmp/%s", name);
  write_file(&fx.c, target, "x", 1, &f);
  CHECK_INT(access(host_path, F_OK), ==, -1);
  snprintf(target, sizeof target, "../../tmp/%s", name);
  write_file(&fx.c, target, "x", 1, &f);
  CHECK_INT(access(host_path, F_OK), ==, -1);

  /* A symlink to "/" and one to the store's absolute host path. */
  run_result r;
  snprintf(inside, sizeof inside, "ln -s / /root/up && ln -s %s /root/store && echo ok", fx.home);
  CHECK_INT(run(&fx.c, inside, 0, &r), ==, 0);
  CHECK_STR(r.out, "ok\n");
  snprintf(target, sizeof target, "/root/up/tmp/%s", name);
  write_file(&fx.c, target, "x", 1, &f);
  CHECK_INT(access(host_path, F_OK), ==, -1);
  char store_file[128];
  snprintf(store_file, sizeof store_file, "%s/escaped", fx.home);
  write_file(&fx.c, "/root/store/escaped", "x", 1, &f);
  CHECK_INT(access(store_file, F_OK), ==, -1);
  CHECK_INT(read_file(&fx.c, "/root/up/etc/hostname", &f), ==, 0); /* the sandbox's own */
  free(f.bytes);
  CHECK_INT(read_file(&fx.c, "/../../../proc/1/cmdline", &f), ==, 0);
  CHECK(f.len > 0);
  CHECK(strstr((char *)f.bytes, "/.sandlot/agent") != NULL);
  free(f.bytes);
  CHECK(finish(&fx));
}

/* A sandbox that swaps its agent socket for a symlink to a host socket
 * does not get the host's clients: the host's handle stays on the
 * agent's socket. */
static void agent_socket_symlink_stays_inside(void) {
  sl_create_spec spec = test_spec();
  fixture fx;
  CHECK_INT(start(&fx, &spec), ==, 0);
  char host_socket[128];
  snprintf(host_socket, sizeof host_socket, "/tmp/sandlot-host-%s.sock", fx.info.id);
  sl_error err = {0};
  int listener = sl_unix_listen(host_socket, &err);
  CHECK(listener >= 0);
  fcntl(listener, F_SETFL, O_NONBLOCK);

  char command[256];
  snprintf(command, sizeof command,
           "rm /run/sandlot/agent.sock && ln -s %s /run/sandlot/agent.sock && echo swapped",
           host_socket);
  run_result r;
  CHECK_INT(run(&fx.c, command, 0, &r), ==, 0);
  CHECK_STR(r.out, "swapped\n");
  client fresh;
  CHECK_INT(client_open(&fresh, &fx.info), ==, 0);
  int rc = run(&fresh, "echo still the agent", 0, &r);
  client_close(&fresh);
  CHECK_INT(rc, ==, 0);
  CHECK_STR(r.out, "still the agent\n");
  CHECK_INT(accept(listener, NULL, NULL), ==, -1);
  CHECK_INT(errno, ==, EAGAIN);
  close(listener);
  unlink(host_socket);
  CHECK(finish(&fx));
}

int main(void) {
  require_privileges();
  RUN(exec_then_kill);
  RUN(python_output_is_exact);
  RUN(sandbox_sees_its_own_world);
  RUN(binary_file_round_trip);
  RUN(freeze_stops_progress);
  RUN(fork_bomb_hits_pids_limit);
  RUN(memory_hog_hits_limit);
  RUN(host_devices_unreachable);
  RUN(file_requests_stay_inside);
  RUN(agent_socket_symlink_stays_inside);
  TEST_EXIT();
}
