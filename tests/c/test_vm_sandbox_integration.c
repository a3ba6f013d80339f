/* VM sandboxes through the sandbox API (sandbox.h, backend "vm"). The
 * base template's root (Debian bookworm with python3) boots under QEMU
 * with sandlot-agent as PID 1 and a sandlot-monitor owning QEMU. The cases
 * cover exec through the agent, env, cwd and hostname, freeze and thaw,
 * timeouts, kill, auto_kill, a guest that powers off, gc after the monitor
 * died, the snapshot files, remove, and failed creates that leave no row.
 *
 * Needs root and QEMU. The base template is built with mmdebstrap into
 * $SANDLOT_TEMPLATE_CACHE (default /var/cache/sandlot) on first use, and
 * the guest kernel is fetched into $SANDLOT_BUILD_DIR/vm-cache. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "monitor_client.h"
#include "proc_util.h"
#include "sandbox.h"
#include "vm_backend.h"
#include "test.h"
#include "vm_fixture.h"
#include "vm_internal.h"

static char home[] = "/tmp/sandlot-vmsb-XXXXXX";
static sl_sandboxes *H;

static bool guest_prints(const char *id, const char *command, const char *expected) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  if (sl_vm_open(home, id, &vm, &err) < 0) {
    fprintf(stderr, "open %s: %s\n", id, err.msg);
    return false;
  }
  int code = -1;
  char *out = vm_exec(vm, command, &code, &err);
  sl_vm_close(vm);
  char want[256];
  snprintf(want, sizeof want, "%s\n", expected);
  bool ok = out != NULL && strcmp(out, want) == 0;
  if (!ok)
    fprintf(stderr, "guest `%s` printed \"%s\" (exit %d, %s), expected \"%s\"\n", command,
            out ? out : "", code, err.msg, expected);
  free(out);
  return ok;
}

/* True unless `pid` has exited: gone, or a zombie not yet reaped by its
 * new parent (QEMU daemonizes, so init reaps it). */
static bool process_alive(pid_t pid) {
  char path[64], *stat = NULL;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (sl_read_file(path, 4096, &stat, NULL, NULL) < 0) return false;
  const char *close_paren = strrchr(stat, ')');
  bool alive = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'Z';
  free(stat);
  return alive;
}

static size_t sandbox_count(void) {
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  sl_error err = {0};
  if (sl_sandbox_list(H, &list, &count, &err) < 0) return (size_t)-1;
  free(list);
  return count;
}

/* Start the counter process; `tick` then prints 1, 2, 3, ... */
static const char start_counter[] =
    "mkfifo /tmp/tick /tmp/tock && "
    "(n=0; while read x </tmp/tick; do n=$((n+1)); echo $n >/tmp/tock; done) "
    ">/dev/null 2>&1 </dev/null & echo started";
static const char tick[] = "echo >/tmp/tick; cat /tmp/tock";

static bool ram_file_exists(const char *id) {
  char path[400];
  vm_live_ram_path(home, id, path, sizeof path);
  return sl_path_exists(path);
}

static pid_t parent_of(pid_t pid) {
  char path[64], *stat = NULL;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (sl_read_file(path, 4096, &stat, NULL, NULL) < 0) return -1;
  const char *close_paren = strrchr(stat, ')');
  int ppid = -1;
  if (close_paren != NULL) sscanf(close_paren + 2, "%*c %d", &ppid);
  free(stat);
  return (pid_t)ppid;
}

/* Whether `signal` is blocked in the main thread of `pid`. */
static bool signal_blocked(pid_t pid, int signal) {
  char path[64], *status = NULL;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  if (sl_read_file(path, 1 << 16, &status, NULL, NULL) < 0) return false;
  const char *line = strstr(status, "SigBlk:");
  unsigned long long mask = line ? strtoull(line + 7, NULL, 16) : 0;
  free(status);
  return (mask >> (signal - 1)) & 1;
}

/* The number of disk overlays left in the sandbox's folder. */
static int disk_files(const char *id) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, id);
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  while (d != NULL && (e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "disk", 4) == 0 && strstr(e->d_name, ".qcow2") != NULL) n++;
  if (d != NULL) closedir(d);
  return n;
}

/* Whether the folder of an ended VM holds only what stays for a look
 * afterwards: no socket, lock, pid file, disk or RAM. */
static bool holds_only_records(const char *id) {
  static const char *const kept[] = {"vm.json", "vm-monitor.json", "console.log", "end_reason",
                                     "op.lock", "log", NULL};
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, id);
  DIR *d = opendir(dir);
  if (d == NULL) return false;
  bool only = true;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    bool known = false;
    for (size_t i = 0; kept[i]; i++) known = known || strcmp(e->d_name, kept[i]) == 0;
    if (!known) fprintf(stderr, "left in %s: %s\n", dir, e->d_name);
    only = only && known;
  }
  closedir(d);
  return only;
}

/* Wait up to `seconds` for the sandbox to end; its record afterwards. */
static bool wait_dead(const char *id, int seconds, sl_sandbox_info *out) {
  sl_error err = {0};
  for (int i = 0; i < seconds * 50; i++) {
    if (sl_sandbox_get(H, id, out, &err) < 0) return false;
    if (out->state == SL_SANDBOX_DEAD) return true;
    usleep(20000);
  }
  return false;
}

static void create_exec_kill_remove(void) {
  const char *env[] = {"GREETING=hello vm", "PATH=/usr/bin:/bin", NULL};
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .memory = "256M", .hostname = "vm-host",
                         .env = env, .cwd = "/work/here"};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK_INT(info.backend, ==, SL_BACKEND_VM);
  CHECK_INT(info.state, ==, SL_SANDBOX_RUNNING);
  CHECK_STR(info.template_name, "base");
  CHECK(info.init_pid > 0);
  CHECK_INT(info.memory_bytes, ==, 256u << 20);
  CHECK(guest_prints(info.id, "python3 -c 'print(6 * 7)'", "42"));
  CHECK(guest_prints(info.id, "cut -d. -f1 /etc/debian_version", "12"));
  CHECK(guest_prints(info.id, "hostname", "vm-host"));
  /* env and cwd reach the agent and so every command. */
  CHECK(guest_prints(info.id, "echo \"$GREETING\" $PATH $HOME; pwd",
                     "hello vm /usr/bin:/bin /root\n/work/here"));

  /* A monitor owns QEMU: QEMU daemonized and became its child. */
  CHECK(info.monitor_pid > 0);
  CHECK(info.monitor_pid != info.init_pid);
  CHECK(process_alive(info.monitor_pid));
  CHECK_INT(parent_of(info.init_pid), ==, info.monitor_pid);
  /* The monitor blocks SIGTERM for its signalfd; QEMU must not inherit it. */
  CHECK(signal_blocked(info.monitor_pid, SIGTERM));
  CHECK(!signal_blocked(info.init_pid, SIGTERM));

  CHECK_OK(sl_sandbox_freeze(H, info.id, &err), &err);
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_FROZEN);
  CHECK_OK(sl_sandbox_thaw(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(guest_prints(info.id, "echo thawed", "thawed"));

  CHECK_OK(sl_sandbox_set_timeout(H, info.id, 60, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK(now.deadline_ms > 0);
  CHECK_OK(sl_sandbox_set_timeout(H, info.id, 0, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.deadline_ms, ==, 0);

  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(now.end_reason, "killed");
  CHECK(!process_alive(info.init_pid));
  CHECK(!process_alive(info.monitor_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK_INT(disk_files(info.id), ==, 0);
  CHECK(holds_only_records(info.id));
  CHECK_INT(sl_sandbox_kill(H, info.id, &err), ==, -ESRCH);

  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
  CHECK_INT(sl_sandbox_get(H, info.id, &now, &err), ==, -ENOENT);
  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, info.id);
  CHECK(!sl_path_exists(dir));
}

/* A client that sends half a line must not hold up another client: the
 * VM monitor reads its control connections without blocking, as the
 * process monitor does. */
static void monitor_serves_clients_side_by_side(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  char path[400], reply[256];
  snprintf(path, sizeof path, "%s/sandboxes/%s/monitor.sock", home, info.id);
  int slow = sl_unix_connect(path, &err);
  CHECK(slow >= 0);
  CHECK_INT(send(slow, "sta", 3, MSG_NOSIGNAL), ==, 3);

  /* The monitor replies to another client while the slow client's line
   * is incomplete. */
  CHECK_OK(sl_monitor_request(path, "status", 10000, reply, sizeof reply, &err), &err);
  CHECK(strncmp(reply, "state=running", 13) == 0);

  /* The slow client's line completes and gets its own reply. */
  CHECK_INT(send(slow, "tus\n", 4, MSG_NOSIGNAL), ==, 4);
  struct timeval tv = {10, 0};
  setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char line[256] = "";
  ssize_t n = read(slow, line, sizeof line - 1);
  CHECK(n > 0);
  if (n > 0) line[n] = '\0';
  CHECK(strncmp(line, "ok state=running", 16) == 0);
  close(slow);

  /* set_timeout takes the same maximum as sl_sandbox_set_timeout. */
  CHECK_INT(sl_monitor_request(path, "set_timeout 3153600001", 10000, NULL, 0, &err), ==, -EINVAL);
  CHECK_STR(err.msg, "invalid timeout: \"3153600001\" (expected whole seconds from 0 to 3153600000)");

  /* A silent client does not keep the sandbox from being killed. */
  int silent = sl_unix_connect(path, &err);
  CHECK(silent >= 0);
  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  close(silent);
  CHECK(!process_alive(info.init_pid));
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

/* The monitor notices QEMU's exit when the guest powers off and records
 * the end at once, without gc. */
static void monitor_records_poweroff(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  sl_vm *vm = NULL;
  CHECK_OK(sl_vm_open(home, info.id, &vm, &err), &err);
  /* Debian's minbase has no poweroff command; sysrq "o" powers off. */
  free(vm_exec(vm, "echo o > /proc/sysrq-trigger", NULL, &err));
  sl_vm_close(vm);
  sl_sandbox_info now;
  CHECK(wait_dead(info.id, 30, &now));
  CHECK_STR(now.end_reason, "exited");
  CHECK_INT(now.exit_status, ==, 0);
  CHECK(!process_alive(info.init_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK_INT(disk_files(info.id), ==, 0);
  CHECK(holds_only_records(info.id));
  char log[400], *text = NULL;
  snprintf(log, sizeof log, "%s/sandboxes/%s/log/monitor.log", home, info.id);
  CHECK_OK(sl_read_file(log, 1 << 20, &text, NULL, &err), &err);
  CHECK(strstr(text, "event=monitor.shutdown") != NULL);
  free(text);
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

static void timeout_kills_vm(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .timeout_sec = 2};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK(info.deadline_ms > 0);
  sl_sandbox_info now;
  CHECK(wait_dead(info.id, 30, &now));
  CHECK_STR(now.end_reason, "timeout");
  CHECK(!process_alive(info.init_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK(holds_only_records(info.id));
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

/* With auto_kill the VM ends with the process that created it. */
static void auto_kill_follows_creator(void) {
  int ids[2];
  CHECK_INT(pipe(ids), ==, 0);
  pid_t child = fork();
  if (child == 0) {
    sl_sandboxes *own = NULL;
    sl_error err = {0};
    sl_create_spec spec = {.backend = SL_BACKEND_VM, .auto_kill = 1};
    sl_sandbox_info info = {0};
    char line[64];
    if (sl_sandboxes_open(home, &own, &err) == 0 && sl_sandbox_create(own, &spec, &info, &err) == 0) {
      int n = snprintf(line, sizeof line, "%s %d %d", info.id, (int)info.init_pid,
                       (int)info.monitor_pid);
      (void)!write(ids[1], line, (size_t)n);
    } else {
      fprintf(stderr, "create with auto_kill: %s\n", err.msg);
    }
    _exit(0);
  }
  close(ids[1]);
  char line[64] = "", id[SL_SANDBOX_ID_MAX] = "";
  ssize_t n = read(ids[0], line, sizeof line - 1);
  close(ids[0]);
  waitpid(child, NULL, 0);

  int qemu = 0, monitor = 0;
  CHECK(n > 0);
  CHECK_INT(sscanf(line, "%15s %d %d", id, &qemu, &monitor), ==, 3);
  CHECK(qemu > 0);
  CHECK(monitor > 0);
  sl_sandbox_info now;
  CHECK(wait_dead(id, 30, &now));
  CHECK_STR(now.end_reason, "creator_exited");
  CHECK(!process_alive(qemu));
  for (int i = 0; i < 250 && process_alive(monitor); i++) usleep(20000);
  CHECK(!process_alive(monitor));
  CHECK(!ram_file_exists(id));
  CHECK(holds_only_records(id));
  sl_error err = {0};
  CHECK_OK(sl_sandbox_remove(H, id, &err), &err);
}

/* A monitor that dies leaves QEMU running; gc ends it. */
static void gc_after_monitor_dies(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK_INT(kill(info.monitor_pid, SIGKILL), ==, 0);
  for (int i = 0; i < 250 && process_alive(info.monitor_pid); i++) usleep(20000);
  CHECK(!process_alive(info.monitor_pid));
  CHECK(process_alive(info.init_pid));

  sl_gc_counts cleaned;
  CHECK_OK(sl_sandbox_gc(H, &cleaned, &err), &err);
  CHECK(cleaned.sandboxes >= 1);
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(now.end_reason, "monitor_lost");
  CHECK(!process_alive(info.init_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK_INT(disk_files(info.id), ==, 0);
  CHECK(holds_only_records(info.id));
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

static bool file_exists_in(const char *dir, const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return sl_path_exists(path);
}

/* A VM snapshot's files: a layer with the frozen disk and an image folder
 * with the memory. A pause and resume after a snapshot taken by another
 * process write to the new overlay, never to the snapshot's disk. */
static void snapshot_rows_pause_resume(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK(guest_prints(info.id, start_counter, "started"));
  CHECK(guest_prints(info.id, tick, "1"));
  CHECK(guest_prints(info.id, "echo kept > /root/f; cat /root/f", "kept"));

  char dir[400];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, info.id);
  sl_snapshot_opts full = {.name = "vm-full"};
  sl_snapshot sn = {0};
  sl_snapshot_timing timing = {0};
  CHECK_OK(sl_sandbox_snapshot(H, info.id, &full, &sn, &timing, &err), &err);
  CHECK_INT(sn.kind, ==, SL_SNAPSHOT_FULL);
  CHECK_INT(sn.backend, ==, SL_BACKEND_VM);
  CHECK_STR(sn.name, "vm-full");
  CHECK(sn.size_bytes > 0);
  CHECK(timing.frozen_ms > 0);
  CHECK(file_exists_in(sn.image_dir, "state"));
  CHECK(file_exists_in(sn.image_dir, "ram"));
  CHECK(file_exists_in(sn.image_dir, "vm.json"));
  vm_image_paths paths;
  CHECK_OK(vm_snapshot_image(sl_sbstore_catalog(H->store), &sn, &paths, &err), &err);
  CHECK(sl_path_exists(paths.disk));
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_STR(now.base_layer_id, sn.layer_id);

  /* Pause ends QEMU and the monitor; resume continues the same memory. */
  CHECK_OK(sl_sandbox_pause(H, info.id, NULL, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_PAUSED);
  CHECK(!process_alive(info.init_pid));
  CHECK(!process_alive(info.monitor_pid));
  CHECK(!ram_file_exists(info.id));
  CHECK(file_exists_in(dir, "state"));
  CHECK_OK(sl_sandbox_resume(H, info.id, NULL, &err), &err);
  CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(!file_exists_in(dir, "state"));
  CHECK(guest_prints(info.id, tick, "2"));
  CHECK(guest_prints(info.id, "cat /root/f", "kept"));
  /* The monitor's pause saw the disk switch of the snapshot taken by
   * another process: the resumed VM writes to its new overlay, never to
   * the snapshot's disk. */
  struct stat frozen;
  CHECK_INT(stat(paths.disk, &frozen), ==, 0);
  CHECK(guest_prints(info.id, "dd if=/dev/urandom of=/root/new bs=1M count=4 2>/dev/null; sync; "
                     "echo written", "written"));
  struct stat later;
  CHECK_INT(stat(paths.disk, &later), ==, 0);
  CHECK_INT(later.st_size, ==, frozen.st_size);
  CHECK_INT(later.st_mtim.tv_sec, ==, frozen.st_mtim.tv_sec);
  CHECK_INT(later.st_mtim.tv_nsec, ==, frozen.st_mtim.tv_nsec);

  /* A files-only snapshot has a layer and no memory. */
  sl_snapshot_opts files = {.name = "vm-files", .files_only = true};
  sl_snapshot fs = {0};
  CHECK_OK(sl_sandbox_snapshot(H, info.id, &files, &fs, NULL, &err), &err);
  CHECK_INT(fs.kind, ==, SL_SNAPSHOT_FS);
  CHECK(!file_exists_in(fs.image_dir, "state"));

  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_snapshots_delete(H, fs.id, &err), &err);
  CHECK_OK(sl_snapshots_delete(H, sn.id, &err), &err);
  CHECK(!sl_path_exists(sn.image_dir));
  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_layer_collect(sl_sbstore_catalog(H->store), &removed, &err), &err);
  sl_layer_list_free(&removed);
  CHECK(!sl_path_exists(paths.disk));
  sl_snapshot_clear(&sn);
  sl_snapshot_clear(&fs);
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

static void failed_create_leaves_no_row(void) {
  size_t before = sandbox_count();
  static char big[1800];
  memset(big, 'x', sizeof big - 1);
  memcpy(big, "BIG=", 4);
  const char *huge[] = {big, NULL};
  sl_create_spec too_big = {.backend = SL_BACKEND_VM, .env = huge};
  sl_sandbox_info none;
  sl_error too_big_err = {0};
  CHECK_INT(sl_sandbox_create(H, &too_big, &none, &too_big_err), ==, -EINVAL);
  CHECK(strstr(too_big_err.msg, "kernel command line") != NULL);
  CHECK_INT(sandbox_count(), ==, before);
  sl_create_spec limited = {.backend = SL_BACKEND_VM, .pids = 100};
  CHECK_INT(sl_sandbox_create(H, &limited, &none, &too_big_err), ==, -EINVAL);
  CHECK(strstr(too_big_err.msg, "apply to process sandboxes only") != NULL);
  CHECK_INT(sandbox_count(), ==, before);
  static const char *const bad_sizes[] = {"16M", "300000K", "2T", NULL};
  for (const char *const *size = bad_sizes; *size; size++) {
    sl_create_spec spec = {.backend = SL_BACKEND_VM, .memory = *size};
    sl_sandbox_info info;
    sl_error err = {0};
    CHECK_INT(sl_sandbox_create(H, &spec, &info, &err), ==, -EINVAL);
    CHECK(strstr(err.msg, "invalid memory size for a VM") != NULL);
    CHECK(strstr(err.msg, *size) != NULL);
    CHECK_INT(sandbox_count(), ==, before);
  }
  /* Within QEMU's bounds but more than this host has: rejected at once. */
  uint64_t host_mb = ((uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE)) >> 20;
  char larger[32];
  snprintf(larger, sizeof larger, "%lluM", (unsigned long long)(host_mb + 1024));
  sl_create_spec beyond_host = {.backend = SL_BACKEND_VM, .memory = larger};
  sl_error huge_err = {0};
  CHECK_INT(sl_sandbox_create(H, &beyond_host, &none, &huge_err), ==, -EINVAL);
  if (host_mb + 1024 <= SL_VM_MEMORY_MAX_MB) CHECK(strstr(huge_err.msg, "more than the host's") != NULL);
  CHECK_INT(sandbox_count(), ==, before);
}

int main(void) {
  if (geteuid() != 0) SKIP("VM sandbox tests need root");
  const char *which[] = {"sh", "-c", "command -v qemu-system-x86_64", NULL};
  if (sl_run_output(which, NULL, NULL) < 0) SKIP("qemu-system-x86_64 is not installed");
  const char *build = getenv("SANDLOT_BUILD_DIR");
  char cache[512];
  snprintf(cache, sizeof cache, "%s/vm-cache", build ? build : "/tmp");
  setenv("SANDLOT_VM_CACHE", cache, 1);
  if (mkdtemp(home) == NULL) return 1;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &H, &err) < 0) {
    fprintf(stderr, "open store: %s\n", err.msg);
    return 1;
  }
  RUN(create_exec_kill_remove);
  RUN(monitor_serves_clients_side_by_side);
  RUN(monitor_records_poweroff);
  RUN(timeout_kills_vm);
  RUN(auto_kill_follows_creator);
  RUN(gc_after_monitor_dies);
  RUN(snapshot_rows_pause_resume);
  RUN(failed_create_leaves_no_row);

  /* Kill whatever a failed check left running, then remove the store. */
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  if (sl_sandbox_list(H, &list, &count, &err) == 0)
    for (size_t i = 0; i < count; i++) sl_vm_delete(home, list[i].id, NULL);
  free(list);
  sl_sandboxes_close(H);
  sl_remove_tree(home, NULL);
  TEST_EXIT();
}
