/* Integration tests of the VM backend against real QEMU (TCG unless the
 * host has usable KVM): boot, snapshot, fork, pause/resume, rollback and
 * bad input.
 *
 * The guest runs sandlot-agent on a busybox root (vm_fixture.h). A
 * counter process in the guest keeps its count in memory and replies to
 * one tick per request through two FIFOs on tmpfs, so its replies show
 * whether RAM survived a snapshot.
 *
 * Needs root, qemu-system-x86_64, and the Debian mirror once to fetch the
 * guest kernel into $SANDLOT_BUILD_DIR/vm-cache. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qmp.h"
#include "test.h"
#include "vm_fixture.h"
#include "vm.h"
#include "vm_image.h"
#include "vm_internal.h"
#include "vm_util.h"

static char home[256];
static char cache[512];
static char base_disk[600];
static char agent_script[600];

static void setup(void) {
  if (geteuid() != 0) SKIP("VM integration tests need root");
  const char *which[] = {"sh", "-c", "command -v qemu-system-x86_64", NULL};
  if (sl_run_output(which, NULL, NULL) < 0) SKIP("qemu-system-x86_64 is not installed");

  const char *build = getenv("SANDLOT_BUILD_DIR");
  snprintf(cache, sizeof cache, "%s/vm-cache", build ? build : "/tmp");
  setenv("SANDLOT_VM_CACHE", cache, 1);
  snprintf(home, sizeof home, "/tmp/sandlot-vm-XXXXXX");
  if (mkdtemp(home) == NULL) exit(1);

  sl_error err = {0};
  if (vm_fixture_setup(home, base_disk, sizeof base_disk, agent_script, sizeof agent_script,
                       &err) < 0) {
    fprintf(stderr, "setup failed: %s\n", err.msg);
    exit(1);
  }
}

/* True when `command` prints exactly `expected` (plus a newline). */
static bool guest_prints(sl_vm *vm, const char *command, const char *expected) {
  sl_error err = {0};
  int code = -1;
  char *out = vm_exec(vm, command, &code, &err);
  char want[256];
  snprintf(want, sizeof want, "%s\n", expected);
  bool ok = out != NULL && strcmp(out, want) == 0;
  if (!ok)
    fprintf(stderr, "guest `%s` printed \"%s\" (exit %d, %s), expected \"%s\"\n", command,
            out ? out : "", code, err.msg, expected);
  free(out);
  return ok;
}

/* Start the counter process; `tick` then prints 1, 2, 3, ... */
static const char start_counter[] =
    "mkfifo /tmp/tick /tmp/tock && "
    "(n=0; while read x </tmp/tick; do n=$((n+1)); echo $n >/tmp/tock; done) "
    ">/dev/null 2>&1 </dev/null & echo started";
static const char tick[] = "echo >/tmp/tick; cat /tmp/tock";

static sl_vm_options options(void) {
  return (sl_vm_options){.home = home, .base_disk = base_disk, .agent = agent_script,
                         .memory_mb = 256};
}

static bool qemu_running_for(const char *id) {
  char needle[300];
  snprintf(needle, sizeof needle, "%s/sandboxes/%s/qmp.sock", home, id);
  DIR *d = opendir("/proc");
  struct dirent *e;
  bool found = false;
  while (d && (e = readdir(d)) != NULL) {
    char path[300], *cmd = NULL;
    size_t len = 0;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (sl_read_file(path, 1 << 20, &cmd, &len, NULL) < 0) continue;
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
      if (strstr(cmd + i, needle)) found = true;
    free(cmd);
  }
  if (d) closedir(d);
  return found;
}

static bool ram_file_exists(const char *id) {
  char path[400];
  vm_live_ram_path(home, id, path, sizeof path);
  return sl_path_exists(path);
}

static bool sandbox_dir_exists(const char *id) {
  char path[400];
  snprintf(path, sizeof path, "%s/sandboxes/%s", home, id);
  return sl_path_exists(path);
}

/* A snapshot's files, placed the way the sandbox store places them:
 * snapshots/<name>/vm (memory) and layers/<name>/disk.qcow2 (disk). */
typedef struct test_image {
  char dir[400];
  char disk[400];
  sl_vm_image image;
} test_image;

static sl_vm_image *image_at(test_image *t, const char *name, bool memory) {
  char folder[380];
  snprintf(t->dir, sizeof t->dir, "%s/snapshots/%s/vm", home, name);
  snprintf(folder, sizeof folder, "%s/layers/%s", home, name);
  snprintf(t->disk, sizeof t->disk, "%s/disk.qcow2", folder);
  sl_mkdir_p(folder, 0700, NULL);
  if (memory) sl_mkdir_p(t->dir, 0700, NULL);
  t->image = (sl_vm_image){.dir = memory ? t->dir : NULL, .disk = t->disk};
  return &t->image;
}

static void remove_image(const char *name) {
  char path[400];
  snprintf(path, sizeof path, "%s/snapshots/%s", home, name);
  sl_remove_tree(path, NULL);
  snprintf(path, sizeof path, "%s/layers/%s", home, name);
  sl_remove_tree(path, NULL);
}

/* What the loop QMP client saw on the events socket. */
typedef struct events_seen {
  bool ready;
  int ready_status;
  bool stop, resume, shutdown;
  bool replied;
  char status[32];
} events_seen;

static void events_ready(sl_qmp *q, int status, const sl_error *err, void *data) {
  events_seen *e = data;
  e->ready = true;
  e->ready_status = status;
}

static void events_event(sl_qmp *q, const char *event, json_t *data, int status, void *arg) {
  events_seen *e = arg;
  if (event == NULL) return;
  if (strcmp(event, "STOP") == 0) e->stop = true;
  if (strcmp(event, "RESUME") == 0) e->resume = true;
  if (strcmp(event, "SHUTDOWN") == 0) e->shutdown = true;
}

static void events_reply(sl_qmp *q, int status, json_t *ret, const sl_error *err, void *data) {
  events_seen *e = data;
  e->replied = true;
  snprintf(e->status, sizeof e->status, "%s",
           status == 0 ? json_string_value(json_object_get(ret, "status")) : "error");
}

/* Run `loop` until `*flag` is set or `timeout_ms` has passed. */
static bool run_until(uv_loop_t *loop, const bool *flag, int timeout_ms) {
  double deadline = sl_clock_ms() + timeout_ms;
  while (!*flag && sl_clock_ms() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  return *flag;
}

static void boot_and_exec(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-boot", &vm, &err),
           &err);
  CHECK(sl_vm_pid(vm) > 0);
  CHECK(guest_prints(vm, "echo hello", "hello"));
  CHECK(guest_prints(vm, "cat /data/seed", "from-template"));
  CHECK(guest_prints(vm, "ls /.sandlot", "agent"));
  /* The agent is PID 1 and serves every agent port. */
  CHECK(guest_prints(vm, "tr '\\0' ' ' </proc/1/cmdline | cut -d' ' -f1", "/.sandlot/agent"));
  char ports[16];
  snprintf(ports, sizeof ports, "%u", SL_VM_DEFAULT_PORTS);
  CHECK(guest_prints(vm, "tr '\\0' '\\n' </proc/1/cmdline | grep -c '^/dev/vport'", ports));

  /* A failing command reports its exit code. */
  int code = 0;
  char *out = vm_exec(vm, "echo partial; exit 3", &code, &err);
  CHECK(out != NULL);
  CHECK_STR(out, "partial\n");
  CHECK_INT(code, ==, 3);
  free(out);
  /* A watcher on the events socket, on a libuv loop, sees what the
   * operations below do. */
  uv_loop_t loop;
  uv_loop_init(&loop);
  events_seen seen = {0};
  sl_qmp *watch = NULL;
  char events_path[400];
  snprintf(events_path, sizeof events_path, "%s/events.sock", sl_vm_dir(vm));
  CHECK_OK(sl_qmp_open(&loop, events_path, events_ready, events_event, &seen, &watch, &err), &err);
  CHECK(run_until(&loop, &seen.ready, 10000));
  CHECK_INT(seen.ready_status, ==, 0);

  /* Freeze and thaw stop and continue the vCPUs. */
  char status[32];
  CHECK_OK(sl_vm_query_status(vm, status, sizeof status, &err), &err);
  CHECK_STR(status, "running");
  CHECK_OK(sl_vm_freeze(vm, &err), &err);
  CHECK_OK(sl_vm_query_status(vm, status, sizeof status, &err), &err);
  CHECK_STR(status, "paused");
  CHECK(run_until(&loop, &seen.stop, 10000));
  CHECK_OK(sl_qmp_execute(watch, "query-status", NULL, events_reply, &seen, &err), &err);
  CHECK(run_until(&loop, &seen.replied, 10000));
  CHECK_STR(seen.status, "paused");
  CHECK_OK(sl_vm_thaw(vm, &err), &err);
  CHECK(run_until(&loop, &seen.resume, 10000));
  CHECK_OK(sl_vm_query_status(vm, status, sizeof status, &err), &err);
  CHECK_STR(status, "running");
  CHECK(guest_prints(vm, "echo thawed", "thawed"));

  /* A guest that powers off ends QEMU (-no-reboot); later calls report a
   * sandbox that is not running. */
  pid_t pid = sl_vm_pid(vm);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  CHECK(pidfd >= 0);
  free(vm_exec(vm, "poweroff -f", NULL, &err));
  struct pollfd exited = {.fd = pidfd, .events = POLLIN};
  CHECK_INT(poll(&exited, 1, 30000), ==, 1);
  close(pidfd);
  CHECK(run_until(&loop, &seen.shutdown, 10000));
  sl_qmp_close(watch);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), ==, 0);
  test_image dead;
  CHECK_INT(sl_vm_snapshot(vm, image_at(&dead, "sn-dead", true), NULL, &err), ==, -ESRCH);
  remove_image("sn-dead");
  CHECK(strstr(err.msg, "sandbox is not running: sb-boot") != NULL);
  CHECK_INT(sl_vm_freeze(vm, &err), ==, -ESRCH);
  int lock = -1;
  CHECK_INT(sl_vm_agent_connect(vm, 1000, &lock, &err), ==, -ESRCH);
  /* gc releases the RAM file the dead QEMU left on tmpfs. */
  CHECK(ram_file_exists("sb-boot"));
  bool cleaned = false;
  CHECK_OK(sl_vm_gc(vm, &cleaned, &err), &err);
  CHECK(cleaned);
  CHECK(!ram_file_exists("sb-boot"));
  CHECK_OK(sl_vm_delete(home, "sb-boot", &err), &err);
  CHECK(!qemu_running_for("sb-boot"));
  CHECK(!sandbox_dir_exists("sb-boot"));
  sl_vm_close(vm);
}

/* One VM for the file, port and release tests, booted by the first. */
static sl_vm *files_vm;

static void files_through_agent(void) {
  sl_error err = {0};
  sl_vm_options opt = options();
  CHECK_OK(sl_vm_create(&opt, "sb-files", &files_vm, &err), &err);
  sl_vm *vm = files_vm;
  CHECK_OK(vm_write_file(vm, "/data/new/dir/note.txt", "written by the host\n", &err), &err);
  CHECK(guest_prints(vm, "cat /data/new/dir/note.txt", "written by the host"));
  CHECK(guest_prints(vm, "echo from the guest > /tmp/g && echo ok", "ok"));
  char *text = vm_read_file(vm, "/tmp/g", &err);
  CHECK(text != NULL);
  CHECK_STR(text, "from the guest\n");
  free(text);
  CHECK(vm_read_file(vm, "/data/missing", &err) == NULL);
  CHECK_INT(err.code, ==, ENOENT);
}

/* Run `rounds` commands through the blocking client in a child process;
 * the child exits 0 when each printed what it should. */
static pid_t exec_in_child(int child, int rounds) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  sl_vm *vm = NULL;
  sl_error err = {0};
  int failed = sl_vm_open(home, "sb-files", &vm, &err) < 0;
  for (int i = 0; i < rounds && !failed; i++) {
    char command[64], want[64];
    snprintf(command, sizeof command, "echo %d-%d", child, i);
    snprintf(want, sizeof want, "%d-%d", child, i);
    failed = !guest_prints(vm, command, want);
  }
  sl_vm_close(vm);
  _exit(failed);
}

typedef struct loop_execs {
  int started, done, failed;
} loop_execs;

static void loop_exec_exit(sl_agent_exec *x, const sl_exit_status *st, const sl_error *e,
                           void *data) {
  (void)x;
  loop_execs *l = data;
  l->done++;
  if (e != NULL || !st->exited || st->exit_code != 0) {
    fprintf(stderr, "loop exec failed: %s\n", e ? e->msg : "non-zero exit");
    l->failed++;
  }
}

/* More host processes than agent ports use one VM at once: ten child
 * processes with the blocking client and this process with the libuv
 * client. Each waits for a free port rather than failing. */
static void host_processes_share_ports(void) {
  CHECK(files_vm != NULL);
  enum { CHILDREN = SL_VM_DEFAULT_PORTS + 2, ROUNDS = 3, LOOP_EXECS = 4 };
  pid_t kids[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) kids[i] = exec_in_child(i, ROUNDS);

  uv_loop_t loop;
  uv_loop_init(&loop);
  char sock[600];
  snprintf(sock, sizeof sock, "%s/agent.sock", sl_vm_dir(files_vm));
  sl_agent_options opts = {.vm_ports = 1, .connect_timeout_ms = 60000};
  sl_agent *a = sl_agent_new(&loop, sock, &opts);
  CHECK(a != NULL);
  loop_execs l = {0};
  sl_exec_callbacks cbs = {.on_exit = loop_exec_exit};
  sl_exec_spec spec = {.command = "true"};
  sl_error err = {0};
  for (int i = 0; i < LOOP_EXECS; i++)
    CHECK_OK(sl_agent_exec_start(a, &spec, &cbs, &l, NULL, &err), &err);
  double deadline = sl_clock_ms() + 120000;
  while (l.done < LOOP_EXECS && sl_clock_ms() < deadline) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  sl_agent_close(a);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), ==, 0);

  int failures = 0;
  for (int i = 0; i < CHILDREN; i++) {
    int status = -1;
    waitpid(kids[i], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
  }
  CHECK_INT(failures, ==, 0);
  CHECK_INT(l.done, ==, LOOP_EXECS);
  CHECK_INT(l.failed, ==, 0);
}

/* gc leaves a running VM alone; kill releases the RAM file but keeps the
 * sandbox's directory until delete. */
static void kill_releases_ram_file(void) {
  CHECK(files_vm != NULL);
  sl_vm *vm = files_vm;
  sl_error err = {0};
  bool cleaned = true;
  CHECK_OK(sl_vm_gc(vm, &cleaned, &err), &err);
  CHECK(!cleaned);
  CHECK(ram_file_exists("sb-files"));
  CHECK_OK(sl_vm_kill(vm, &err), &err);
  CHECK(!qemu_running_for("sb-files"));
  CHECK(!ram_file_exists("sb-files"));
  CHECK(sandbox_dir_exists("sb-files"));
  CHECK_OK(sl_vm_delete(home, "sb-files", &err), &err);
  CHECK(!sandbox_dir_exists("sb-files"));
  sl_vm_close(vm);
  files_vm = NULL;
}

static int fork_from(const char *snapshot, const char *id, sl_vm **out, sl_error *err) {
  test_image t;
  sl_vm_fork_options opt = {.home = home, .id = id, .from = *image_at(&t, snapshot, true)};
  return sl_vm_fork(&opt, NULL, NULL, out, err);
}

static void snapshot_fork_continuity(void) {
  sl_vm *src = NULL, *a = NULL, *b = NULL;
  sl_error err = {0};
  test_image one, frozen;
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-src", &src, &err),
           &err);
  CHECK(guest_prints(src, start_counter, "started"));
  CHECK(guest_prints(src, tick, "1"));
  CHECK(guest_prints(src, tick, "2"));
  CHECK(guest_prints(src, "echo before > /data/f; cat /data/f", "before"));

  /* Reading /dev/urandom now makes the guest's CRNG seed fresh, so the
   * forks would not reseed on their own for the next seconds of guest
   * time: any difference between them comes from the host's entropy. */
  CHECK(guest_prints(src, "head -c 16 /dev/urandom | wc -c", "16"));
  sl_vm_snapshot_stats st;
  CHECK_OK(sl_vm_snapshot(src, image_at(&one, "sn-one", true), &st, &err), &err);
  CHECK(st.pause_ms > 0);
  CHECK(st.state_bytes > 0);
  CHECK(sl_path_exists(one.disk));

  /* The source keeps running from where it was, on a new overlay: the
   * snapshot's disk does not change. */
  struct stat frozen_disk;
  CHECK_INT(stat(one.disk, &frozen_disk), ==, 0);
  CHECK(guest_prints(src, tick, "3"));
  CHECK(guest_prints(src, "echo after > /data/f; sync; cat /data/f", "after"));
  struct stat later;
  CHECK_INT(stat(one.disk, &later), ==, 0);
  CHECK_INT(later.st_size, ==, frozen_disk.st_size);
  CHECK_INT(later.st_mtim.tv_nsec, ==, frozen_disk.st_mtim.tv_nsec);

  CHECK_OK(fork_from("sn-one", "sb-fa", &a, &err), &err);
  CHECK_OK(fork_from("sn-one", "sb-fb", &b, &err), &err);
  CHECK(guest_prints(a, tick, "3"));
  CHECK(guest_prints(b, tick, "3"));
  CHECK(guest_prints(a, "cat /data/f", "before"));
  CHECK(guest_prints(b, "cat /data/f", "before"));
  CHECK(guest_prints(a, "hostname", "sb-fa"));
  CHECK(guest_prints(b, "hostname", "sb-fb"));

  /* Each fork got fresh entropy, so their random streams differ. */
  sl_error e1 = {0}, e2 = {0};
  char *ra = vm_exec(a, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'", NULL, &e1);
  char *rb = vm_exec(b, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'", NULL, &e2);
  CHECK(ra != NULL);
  CHECK(rb != NULL);
  CHECK_INT(strlen(ra), ==, 64);
  CHECK(strcmp(ra, rb) != 0);
  free(ra);
  free(rb);

  /* Forks are independent of each other and of the source. */
  CHECK(guest_prints(a, tick, "4"));
  CHECK(guest_prints(a, tick, "5"));
  CHECK(guest_prints(a, "echo a > /data/g; cat /data/g", "a"));
  CHECK(guest_prints(b, tick, "4"));
  CHECK(guest_prints(b, "cat /data/g 2>/dev/null || echo none", "none"));
  CHECK(guest_prints(src, tick, "4"));
  CHECK(guest_prints(src, "cat /data/f", "after"));

  /* A frozen VM stays frozen across a snapshot. */
  char status[32];
  CHECK_OK(sl_vm_freeze(src, &err), &err);
  CHECK_OK(sl_vm_snapshot(src, image_at(&frozen, "sn-frozen", true), NULL, &err), &err);
  CHECK_OK(sl_vm_query_status(src, status, sizeof status, &err), &err);
  /* QEMU reports "postmigrate" for a stopped guest after a migration. */
  CHECK(strcmp(status, "running") != 0);
  CHECK_OK(sl_vm_thaw(src, &err), &err);
  CHECK_OK(sl_vm_query_status(src, status, sizeof status, &err), &err);
  CHECK_STR(status, "running");
  CHECK(guest_prints(src, tick, "5"));

  /* Forks map the snapshot's RAM file; removing it does not disturb them,
   * because the mapping keeps the file's pages. */
  CHECK_OK(sl_remove_tree(one.dir, &err), &err);
  CHECK(guest_prints(a, tick, "6"));
  CHECK(guest_prints(b, tick, "5"));

  CHECK_OK(sl_vm_delete(home, "sb-fa", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-fb", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-src", &err), &err);
  remove_image("sn-one");
  remove_image("sn-frozen");
  sl_vm_close(a);
  sl_vm_close(b);
  sl_vm_close(src);
}

static void fork_of_fork(void) {
  sl_vm *src = NULL, *a = NULL, *aa = NULL;
  sl_error err = {0};
  test_image g0, g1;
  CHECK_OK(sl_vm_create(&(sl_vm_options){.home = home, .base_disk = base_disk,
                                          .agent = agent_script},
                        "sb-g0", &src, &err),
           &err);
  CHECK(guest_prints(src, start_counter, "started"));
  CHECK(guest_prints(src, tick, "1"));
  CHECK_OK(sl_vm_snapshot(src, image_at(&g0, "sn-g0", true), NULL, &err), &err);
  CHECK_OK(fork_from("sn-g0", "sb-g1", &a, &err), &err);
  CHECK(guest_prints(a, tick, "2"));
  CHECK(guest_prints(a, "echo x > /data/g1; cat /data/g1", "x"));
  /* The fork's RAM is private, so this snapshot carries RAM in its state. */
  CHECK_OK(sl_vm_snapshot(a, image_at(&g1, "sn-g1", true), NULL, &err), &err);
  CHECK_OK(fork_from("sn-g1", "sb-g2", &aa, &err), &err);
  CHECK(guest_prints(aa, tick, "3"));
  CHECK(guest_prints(aa, "cat /data/g1; hostname", "x\nsb-g2"));
  CHECK_OK(sl_vm_delete(home, "sb-g2", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-g1", &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-g0", &err), &err);
  remove_image("sn-g1");
  remove_image("sn-g0");
  sl_vm_close(aa);
  sl_vm_close(a);
  sl_vm_close(src);
}

static void pause_and_resume(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  CHECK_OK(sl_vm_create(&opt, "sb-pause", &vm, &err), &err);
  CHECK(guest_prints(vm, start_counter, "started"));
  CHECK(guest_prints(vm, tick, "1"));
  CHECK(guest_prints(vm, "echo paused > /data/p; cat /data/p", "paused"));
  CHECK_OK(sl_vm_pause(vm, false, &err), &err);
  CHECK(sl_vm_is_paused(vm));
  CHECK(!qemu_running_for("sb-pause"));
  CHECK(!ram_file_exists("sb-pause"));
  CHECK_INT(sl_vm_pid(vm), ==, 0);
  CHECK_INT(sl_vm_freeze(vm, &err), ==, -ESRCH);

  /* Reopen by id, as another process would. */
  sl_vm *again = NULL;
  CHECK_OK(sl_vm_open(home, "sb-pause", &again, &err), &err);
  CHECK(sl_vm_is_paused(again));
  CHECK_OK(sl_vm_resume(again, &err), &err);
  CHECK(!sl_vm_is_paused(again));
  CHECK(guest_prints(again, tick, "2"));
  CHECK(guest_prints(again, "cat /data/p", "paused"));

  /* A files-only pause keeps the disk: the resumed guest boots again, so
   * the counter is gone and the file is there. */
  CHECK_OK(sl_vm_pause(again, true, &err), &err);
  CHECK(!qemu_running_for("sb-pause"));
  CHECK_OK(sl_vm_resume(again, &err), &err);
  CHECK(guest_prints(again, "cat /data/p", "paused"));
  CHECK(guest_prints(again, "test -p /tmp/tick && echo counter || echo booted", "booted"));
  CHECK(guest_prints(again, "hostname", "sb-pause"));
  CHECK_OK(sl_vm_delete(home, "sb-pause", &err), &err);
  sl_vm_close(again);
  sl_vm_close(vm);
}

static void rollback_in_place(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  test_image rb, rb2, files;
  CHECK_OK(sl_vm_create(&opt, "sb-rb", &vm, &err), &err);
  CHECK(guest_prints(vm, start_counter, "started"));
  CHECK(guest_prints(vm, tick, "1"));
  CHECK(guest_prints(vm, "echo keep > /data/r; cat /data/r", "keep"));
  CHECK_OK(sl_vm_snapshot(vm, image_at(&rb, "sn-rb", true), NULL, &err), &err);
  CHECK(guest_prints(vm, tick, "2"));
  CHECK(guest_prints(vm, tick, "3"));
  CHECK(guest_prints(vm, "echo lost > /data/r; rm /data/seed; cat /data/r", "lost"));
  CHECK_OK(sl_vm_rollback(vm, &rb.image, NULL, &err), &err);
  CHECK(guest_prints(vm, tick, "2"));
  CHECK(guest_prints(vm, "cat /data/r /data/seed", "keep\nfrom-template"));
  CHECK(guest_prints(vm, "hostname", "sb-rb"));
  /* A rolled-back VM has shared RAM again and snapshots on the fast path. */
  CHECK_OK(sl_vm_snapshot(vm, image_at(&rb2, "sn-rb2", true), NULL, &err), &err);

  /* A files-only snapshot has the files the guest synced; rolling back to
   * it boots the guest again on them. */
  CHECK(guest_prints(vm, "echo synced > /data/r; cat /data/r", "synced"));
  CHECK_OK(sl_vm_snapshot(vm, image_at(&files, "sn-files", false), NULL, &err), &err);
  CHECK(guest_prints(vm, "echo later > /data/r; cat /data/r", "later"));
  CHECK_OK(sl_vm_rollback(vm, &files.image, "rolled", &err), &err);
  CHECK(guest_prints(vm, "cat /data/r", "synced"));
  CHECK(guest_prints(vm, "hostname", "rolled"));
  CHECK(guest_prints(vm, "test -p /tmp/tick && echo counter || echo booted", "booted"));
  CHECK_OK(sl_vm_delete(home, "sb-rb", &err), &err);
  remove_image("sn-rb2");
  remove_image("sn-rb");
  remove_image("sn-files");
  sl_vm_close(vm);
}

static void bad_input_leaves_nothing(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();

  CHECK_INT(fork_from("sn-missing", "sb-bad1", &vm, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "snapshot disk not found") != NULL);
  CHECK(!sandbox_dir_exists("sb-bad1"));
  remove_image("sn-missing");

  opt.memory_mb = 8;
  CHECK_INT(sl_vm_create(&opt, "sb-bad2", &vm, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid VM memory size: 8 MiB") != NULL);
  CHECK(!sandbox_dir_exists("sb-bad2"));

  opt = options();
  opt.base_disk = "/nonexistent/base.qcow2";
  CHECK_INT(sl_vm_create(&opt, "sb-bad3", &vm, &err), ==, -ENOENT);
  CHECK(!sandbox_dir_exists("sb-bad3"));

  CHECK_INT(sl_vm_open(home, "sb-nothing", &vm, &err), ==, -ENOENT);
  sl_vm_fork_options bad_id = {.home = home, .id = "../x", .from = {"/a", "/b"}};
  CHECK_INT(sl_vm_fork(&bad_id, NULL, NULL, &vm, &err), ==, -EINVAL);
  sl_vm_fork_options no_memory = {.home = home, .id = "sb-bad4", .from = {NULL, base_disk}};
  CHECK_INT(sl_vm_fork(&no_memory, NULL, NULL, &vm, &err), ==, -EINVAL);
  CHECK(!sandbox_dir_exists("sb-bad4"));
  CHECK(!ram_file_exists("sb-bad1"));
  CHECK(!ram_file_exists("sb-bad2"));
}

/* A guest whose init dies (here busybox standing in for the agent, which
 * exits at once) panics; QEMU exits and create reports the console's last
 * line, leaving nothing behind. */
static void boot_failure_leaves_nothing(void) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  opt.agent = "/bin/busybox";
  CHECK_INT(sl_vm_create(&opt, "sb-nokernel", &vm, &err), ==, -EIO);
  CHECK(strncmp(err.msg, "boot sb-nokernel: QEMU exited during boot", 41) == 0);
  CHECK(strstr(err.msg, "(console: Kernel panic") != NULL);
  CHECK(!sandbox_dir_exists("sb-nokernel"));
  CHECK(!ram_file_exists("sb-nokernel"));
  CHECK(!qemu_running_for("sb-nokernel"));

  /* A root disk without a file system: /init reports it and powers off. */
  char blank[400];
  snprintf(blank, sizeof blank, "%s/blank.qcow2", home);
  const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", blank, "64M", NULL};
  CHECK_OK(sl_run_output(create, NULL, &err), &err);
  opt = options();
  opt.base_disk = blank;
  CHECK_INT(sl_vm_create(&opt, "sb-blank", &vm, &err), ==, -EIO);
  CHECK(strstr(err.msg, "(console: sandlot-init: mount of /dev/vda failed)") != NULL);
  CHECK(!sandbox_dir_exists("sb-blank"));
  CHECK(!ram_file_exists("sb-blank"));
  CHECK(!qemu_running_for("sb-blank"));
}

static void corrupted_state_fails_cleanly(void) {
  sl_vm *src = NULL, *fork = NULL;
  sl_error err = {0};
  sl_vm_options opt = options();
  test_image cs;
  CHECK_OK(sl_vm_create(&opt, "sb-cs", &src, &err), &err);
  CHECK_OK(sl_vm_snapshot(src, image_at(&cs, "sn-cs", true), NULL, &err), &err);
  CHECK_OK(sl_vm_delete(home, "sb-cs", &err), &err);
  sl_vm_close(src);

  char state[450];
  snprintf(state, sizeof state, "%s/state", cs.dir);
  int fd = open(state, O_WRONLY);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, "garbage!garbage!", 16, 0), ==, 16);
  close(fd);
  CHECK_INT(fork_from("sn-cs", "sb-cs-fork", &fork, &err), ==, -EIO);
  CHECK(strncmp(err.msg, "fork sb-cs-fork: ", 17) == 0);
  CHECK(!sandbox_dir_exists("sb-cs-fork"));
  CHECK(!qemu_running_for("sb-cs-fork"));

  CHECK_INT(truncate(state, 1000), ==, 0);
  CHECK_INT(fork_from("sn-cs", "sb-cs-fork", &fork, &err), ==, -EIO);
  CHECK(!sandbox_dir_exists("sb-cs-fork"));
  CHECK(!qemu_running_for("sb-cs-fork"));
  CHECK(!ram_file_exists("sb-cs-fork"));
  remove_image("sn-cs");
}

/* Delete every sandbox a failed check left behind (QEMU, RAM file, files),
 * then the store. */
static void cleanup(void) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes", home);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') sl_vm_delete(home, e->d_name, NULL);
  if (d) closedir(d);
  sl_remove_tree(home, NULL);
}

int main(void) {
  setup();
  atexit(cleanup);
  RUN(boot_and_exec);
  RUN(files_through_agent);
  RUN(host_processes_share_ports);
  RUN(kill_releases_ram_file);
  RUN(snapshot_fork_continuity);
  RUN(fork_of_fork);
  RUN(pause_and_resume);
  RUN(rollback_in_place);
  RUN(bad_input_leaves_nothing);
  RUN(boot_failure_leaves_nothing);
  RUN(corrupted_state_fails_cleanly);
  TEST_EXIT();
}
