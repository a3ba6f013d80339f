/* VM sandboxes: create, open, launch and end QEMU, agent ports. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "vm_accel.h"
#include "vm_image.h"
#include "vm_internal.h"
#include "vm_util.h"

#define QEMU_BINARY "qemu-system-x86_64"
#define BUSYBOX_STATIC "/bin/busybox"

/* Paths. */

int vm_path(char *out, const char *dir, const char *name, sl_error *err) {
  if (snprintf(out, VM_PATH_MAX, "%s/%s", dir, name) >= VM_PATH_MAX)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s/%s", dir, name);
  return 0;
}

void vm_snapshot_dir(const char *home, const char *snap_id, char *out, size_t len) {
  snprintf(out, len, "%s/snapshots/%s", home, snap_id);
}

/* Two stores may hold the same sandbox id, so the file name also carries a
 * hash of the store path. */
void vm_live_ram_path(const char *home, const char *id, char *out, size_t len) {
  const char *dir = getenv("SANDLOT_VM_RAM_DIR");
  uint32_t h = 2166136261u;
  for (const char *p = home; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  snprintf(out, len, "%s/sandlot-%08x-%s.ram", dir && dir[0] ? dir : "/dev/shm", h, id);
}

void sl_vm_cache_dir(const char *home, char *out, size_t len) {
  const char *cache = getenv("SANDLOT_VM_CACHE");
  if (cache != NULL && cache[0] != '\0')
    snprintf(out, len, "%s", cache);
  else
    snprintf(out, len, "%s/vm", home);
}

/* Sandbox ids and snapshot ids become path components. */
static int check_id(const char *id, const char *what, sl_error *err) {
  size_t len = id ? strlen(id) : 0;
  if (len == 0 || len >= 64 || strchr(id, '/') || id[0] == '.')
    return sl_error_set(err, EINVAL, "invalid %s id: \"%s\"", what, id ? id : "");
  return 0;
}

/* Configuration files. */

int vm_conf_load(const char *dir, json_t **conf, sl_error *err) {
  char path[VM_PATH_MAX];
  int rc = vm_path(path, dir, "vm.json", err);
  if (rc < 0) return rc;
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (root == NULL && !sl_path_exists(path))
    return sl_error_set(err, ENOENT, "not found: %s", dir);
  if (!json_is_object(root)) {
    json_decref(root);
    return sl_error_set(err, EBADMSG, "invalid %s: %s", path, jerr.text);
  }
  *conf = root;
  return 0;
}

int vm_conf_save(const char *dir, json_t *conf, sl_error *err) {
  char path[VM_PATH_MAX];
  int rc = vm_path(path, dir, "vm.json", err);
  if (rc < 0) return rc;
  char *text = json_dumps(conf, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (text == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  rc = sl_write_file_atomic(path, text, strlen(text), 0644, err);
  free(text);
  return rc;
}

static const char *conf_str(json_t *conf, const char *key) {
  return json_string_value(json_object_get(conf, key));
}

static unsigned conf_uint(json_t *conf, const char *key) {
  return (unsigned)json_integer_value(json_object_get(conf, key));
}

/* Handles. */

sl_vm *vm_alloc(const char *home, const char *id, sl_error *err) {
  sl_vm *vm = calloc(1, sizeof *vm);
  if (vm == NULL) {
    sl_error_set(err, ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(vm->home, sizeof vm->home, "%s", home);
  snprintf(vm->id, sizeof vm->id, "%s", id);
  snprintf(vm->dir, sizeof vm->dir, "%s/sandboxes/%s", home, id);
  vm->pidfd = -1;
  return vm;
}

static void forget_process(sl_vm *vm) {
  if (vm->pidfd >= 0) close(vm->pidfd);
  vm->pidfd = -1;
  vm->pid = 0;
}

void sl_vm_close(sl_vm *vm) {
  if (vm == NULL) return;
  forget_process(vm);
  json_decref(vm->conf);
  free(vm);
}

const char *sl_vm_id(const sl_vm *vm) { return vm->id; }
pid_t sl_vm_pid(const sl_vm *vm) { return vm->pid; }
const char *sl_vm_dir(const sl_vm *vm) { return vm->dir; }

bool sl_vm_is_paused(const sl_vm *vm) {
  return json_is_true(json_object_get(vm->conf, "paused"));
}

const char *sl_vm_console_log(const sl_vm *vm) {
  static __thread char path[VM_PATH_MAX];
  vm_path(path, vm->dir, "console.log", NULL);
  return path;
}

/* True when `pid` is a QEMU started for this sandbox: its command line
 * names the sandbox's QMP socket. This guards against a reused pid. */
static bool pid_is_ours(sl_vm *vm, pid_t pid) {
  char path[64], *cmdline = NULL, qmp[VM_PATH_MAX];
  size_t len = 0;
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  if (sl_read_file(path, 1 << 20, &cmdline, &len, NULL) < 0) return false;
  vm_path(qmp, vm->dir, "qmp.sock", NULL);
  char *escaped = sl_qemu_escape(qmp);
  bool found = false;
  for (size_t i = 0; escaped && i < len; i += strlen(cmdline + i) + 1)
    if (strstr(cmdline + i, escaped) != NULL) found = true;
  free(escaped);
  free(cmdline);
  return found;
}

int vm_read_pid(sl_vm *vm) {
  char path[VM_PATH_MAX], *text = NULL;
  forget_process(vm);
  if (vm_path(path, vm->dir, "qemu.pid", NULL) < 0) return 0;
  if (sl_read_file(path, 64, &text, NULL, NULL) < 0) return 0;
  pid_t pid = (pid_t)atoi(text);
  free(text);
  if (pid <= 0) return 0;
  /* Open the pidfd before checking the command line, so the checked
   * process is the one the pidfd refers to. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return 0;
  if (!pid_is_ours(vm, pid)) {
    close(pidfd);
    return 0;
  }
  vm->pid = pid;
  vm->pidfd = pidfd;
  return 0;
}

int sl_vm_open(const char *home, const char *id, sl_vm **out, sl_error *err) {
  if (check_id(id, "sandbox", err) < 0) return -EINVAL;
  sl_vm *vm = vm_alloc(home, id, err);
  if (vm == NULL) return -ENOMEM;
  int rc = vm_conf_load(vm->dir, &vm->conf, err);
  if (rc < 0) {
    sl_vm_close(vm);
    if (rc == -ENOENT) return sl_error_set(err, ENOENT, "sandbox not found: %s", id);
    return rc;
  }
  vm_read_pid(vm);
  *out = vm;
  return 0;
}

/* The console line that best explains a failed boot: the last line of
 * /init's own report, else the kernel's panic line, else the last line. */
static const char *console_reason(char *log, size_t len) {
  while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r')) log[--len] = '\0';
  static const char *const markers[] = {"sandlot-init:", "Kernel panic", NULL};
  for (size_t m = 0; markers[m]; m++) {
    char *hit = NULL;
    for (char *p = strstr(log, markers[m]); p; p = strstr(p + 1, markers[m])) hit = p;
    if (hit != NULL) {
      hit[strcspn(hit, "\r\n")] = '\0';
      return hit;
    }
  }
  const char *line = strrchr(log, '\n');
  return line ? line + 1 : log;
}

void vm_add_console_tail(sl_vm *vm, sl_error *err) {
  char path[VM_PATH_MAX], *log = NULL;
  size_t len = 0;
  if (err == NULL || vm_path(path, vm->dir, "console.log", NULL) < 0) return;
  if (sl_read_file(path, 64u << 20, &log, &len, NULL) < 0) return;
  const char *reason = console_reason(log, len);
  if (reason[0] != '\0') {
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, " (console: %.300s)", reason);
  }
  free(log);
}

/* Launching QEMU. */

#define VM_FIXED_PATHS 5

static int fill_spec(sl_vm *vm, bool incoming, sl_vm_spec *spec, char paths[][VM_PATH_MAX],
                     sl_error *err) {
  json_t *c = vm->conf;
  sl_vm_accel accel = SL_VM_ACCEL_TCG;
  if (sl_vm_accel_parse(conf_str(c, "accel"), &accel, err) < 0) return -EINVAL;
  *spec = (sl_vm_spec){
      .qemu = QEMU_BINARY,
      .accel = accel,
      .memory_mb = conf_uint(c, "memory_mb"),
      .vcpus = conf_uint(c, "vcpus"),
      .kernel = conf_str(c, "kernel"),
      .initrd = conf_str(c, "initrd"),
      .cmdline = conf_str(c, "cmdline"),
      .ram_path = conf_str(c, "ram_path"),
      .ram_shared = strcmp(conf_str(c, "ram_mode") ?: "", "shared") == 0,
      .agent_ports = conf_uint(c, "agent_ports"),
      .daemonize = true,
      .incoming_defer = incoming,
  };
  static const char *const names[] = {"disk.qcow2", "qmp.sock", "console.log", "qemu.pid",
                                      "events.sock"};
  for (int i = 0; i < VM_FIXED_PATHS; i++)
    if (vm_path(paths[i], vm->dir, names[i], err) < 0) return -ENAMETOOLONG;
  spec->disk = paths[0];
  spec->qmp_socket = paths[1];
  spec->console_log = paths[2];
  spec->pidfile = paths[3];
  spec->events_socket = paths[4];
  for (unsigned i = 0; i < spec->agent_ports && i < SL_VM_AGENT_PORTS_MAX; i++) {
    char name[32];
    snprintf(name, sizeof name, "agent-%u.sock", i);
    if (vm_path(paths[VM_FIXED_PATHS + i], vm->dir, name, err) < 0) return -ENAMETOOLONG;
    spec->agent_sockets[i] = paths[VM_FIXED_PATHS + i];
  }
  return 0;
}

/* A unix socket path must fit in sockaddr_un.sun_path. */
static int check_socket_paths(const sl_vm_spec *spec, sl_error *err) {
  struct sockaddr_un addr;
  if (strlen(spec->qmp_socket) >= sizeof addr.sun_path)
    return sl_error_set(err, ENAMETOOLONG,
                        "socket path longer than %zu bytes: %s (use a shorter SANDLOT_HOME)",
                        sizeof addr.sun_path - 1, spec->qmp_socket);
  return 0;
}

int vm_launch(sl_vm *vm, bool incoming, sl_error *err) {
  sl_vm_spec spec;
  char paths[VM_FIXED_PATHS + SL_VM_AGENT_PORTS_MAX][VM_PATH_MAX];
  int rc = fill_spec(vm, incoming, &spec, paths, err);
  if (rc == 0) rc = check_socket_paths(&spec, err);
  sl_args argv = {0};
  if (rc == 0) rc = sl_vm_argv_build(&spec, &argv, err);
  if (rc < 0) return rc;
  unlink(spec.pidfile);
  unlink(spec.qmp_socket);
  unlink(spec.events_socket);
  for (unsigned i = 0; i < spec.agent_ports; i++) unlink(spec.agent_sockets[i]);
  /* With -daemonize QEMU exits once its sockets listen, so a zero exit
   * means the QMP socket accepts connections. */
  rc = sl_run_output((const char *const *)argv.v, NULL, err);
  sl_args_free(&argv);
  if (rc < 0) return sl_error_wrap(err, "start QEMU for %s", vm->id);
  vm_read_pid(vm);
  if (vm->pid == 0) return sl_error_set(err, EIO, "QEMU for %s started but wrote no pid", vm->id);
  SL_DEBUG("vm.launched", "sandbox=%s pid=%d incoming=%d", vm->id, (int)vm->pid, incoming);
  return 0;
}

int vm_wait_exit(sl_vm *vm, int timeout_ms, sl_error *err) {
  if (vm->pidfd < 0) return 0;
  struct pollfd pfd = {.fd = vm->pidfd, .events = POLLIN};
  int n = poll(&pfd, 1, timeout_ms);
  if (n == 0) {
    SL_WARN("vm.kill", "sandbox=%s pid=%d reason=\"no exit after %d ms\"", vm->id, (int)vm->pid,
            timeout_ms);
    syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
    n = poll(&pfd, 1, 10000);
  }
  if (n <= 0) return sl_error_set(err, ETIMEDOUT, "QEMU pid %d did not exit", (int)vm->pid);
  forget_process(vm);
  return 0;
}

/* Remove what only a running QEMU needs: the pid file and the live RAM
 * file on tmpfs (never a snapshot's RAM file, which a fork maps). Returns
 * true when the RAM file was there. */
static bool release_files(sl_vm *vm) {
  char path[VM_PATH_MAX];
  if (vm_path(path, vm->dir, "qemu.pid", NULL) == 0) unlink(path);
  vm_live_ram_path(vm->home, vm->id, path, sizeof path);
  return unlink(path) == 0;
}

int sl_vm_kill(sl_vm *vm, sl_error *err) {
  if (vm->pidfd < 0) vm_read_pid(vm);
  if (vm->pidfd < 0) return 0;
  syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
  int rc = vm_wait_exit(vm, 10000, err);
  if (rc < 0) return sl_error_wrap(err, "kill %s", vm->id);
  release_files(vm);
  return 0;
}

int sl_vm_gc(sl_vm *vm, bool *cleaned, sl_error *err) {
  *cleaned = false;
  vm_read_pid(vm);
  if (vm->pidfd >= 0) return 0;
  *cleaned = release_files(vm);
  return 0;
}

int vm_qmp_connect(sl_vm *vm, sl_qmp_sync **q, sl_error *err) {
  char path[VM_PATH_MAX];
  int rc = vm_path(path, vm->dir, "qmp.sock", err);
  if (rc == 0) rc = sl_qmp_sync_connect(path, VM_QMP_TIMEOUT_MS, q, err);
  if (rc < 0) return sl_error_wrap(err, "QMP of %s", vm->id);
  return 0;
}

int vm_require_running(sl_vm *vm, sl_error *err) {
  if (sl_vm_is_paused(vm)) return sl_error_set(err, ESRCH, "sandbox is paused: %s", vm->id);
  struct pollfd pfd = {.fd = vm->pidfd, .events = POLLIN};
  if (vm->pidfd < 0 || poll(&pfd, 1, 0) != 0) vm_read_pid(vm);
  if (vm->pidfd < 0)
    return sl_error_set(err, ESRCH, "sandbox is not running: %s (no QEMU process)", vm->id);
  return 0;
}

static int qmp_simple(sl_vm *vm, const char *command, json_t **ret, sl_error *err) {
  int rc = vm_require_running(vm, err);
  if (rc < 0) return rc;
  sl_qmp_sync *q = NULL;
  rc = vm_qmp_connect(vm, &q, err);
  if (rc == 0) rc = sl_qmp_sync_execute(q, command, NULL, ret, VM_QMP_TIMEOUT_MS, err);
  sl_qmp_sync_close(q);
  return rc;
}

int sl_vm_query_status(sl_vm *vm, char *status, size_t len, sl_error *err) {
  json_t *ret = NULL;
  int rc = qmp_simple(vm, "query-status", &ret, err);
  if (rc == 0) snprintf(status, len, "%s", json_string_value(json_object_get(ret, "status")) ?: "");
  json_decref(ret);
  return rc;
}

int sl_vm_freeze(sl_vm *vm, sl_error *err) { return qmp_simple(vm, "stop", NULL, err); }
int sl_vm_thaw(sl_vm *vm, sl_error *err) { return qmp_simple(vm, "cont", NULL, err); }

/* Creating a VM. */

static bool match_port_open(const char *event, json_t *data, void *arg) {
  (void)arg;
  return strcmp(event, "VSERPORT_CHANGE") == 0 &&
         strcmp(json_string_value(json_object_get(data, "id")) ?: "", "agentport0") == 0 &&
         json_is_true(json_object_get(data, "open"));
}

/* Wait until the guest opens agent port 0, which the agent does once it
 * serves requests. QEMU reports that as a VSERPORT_CHANGE event.
 * NOTE: the event of an agent that opened its port before this QMP
 * connection was made is missed, and the wait times out. Boot takes far
 * longer than QEMU's start, so this has not happened. */
static int wait_agent_port(sl_vm *vm, int timeout_ms, sl_error *err) {
  sl_qmp_sync *q = NULL;
  int rc = vm_qmp_connect(vm, &q, err);
  if (rc == 0) rc = sl_qmp_sync_wait_event(q, match_port_open, NULL, timeout_ms, err);
  sl_qmp_sync_close(q);
  if (rc == -EPIPE) rc = sl_error_set(err, EIO, "QEMU exited during boot");
  if (rc < 0) {
    vm_add_console_tail(vm, err);
    return sl_error_wrap(err, "boot of %s", vm->id);
  }
  return 0;
}

int vm_agent_hello(sl_vm *vm, sl_error *err) {
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, SL_VM_AGENT_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  sl_buf request = {0}, reply = {0};
  sl_frame_end(&request, sl_frame_begin(&request, SL_MSG_HELLO, 0), NULL);
  sl_frame final;
  rc = sl_agent_conn_call(&conn, &request, NULL, NULL, &reply, &final, err);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  sl_vm_agent_close(&conn, lock);
  if (rc < 0) return sl_error_wrap(err, "agent hello of %s", vm->id);
  return 0;
}

static int boot_files(const sl_vm_options *opt, char *kernel, char *initrd, sl_error *err) {
  char cache[VM_PATH_MAX];
  sl_vm_cache_dir(opt->home, cache, sizeof cache);
  sl_vm_kernel k;
  int rc = sl_vm_kernel_ensure(cache, &k, err);
  if (rc < 0) return rc;
  sl_vm_initrd_spec ispec = {.kernel = &k, .busybox = BUSYBOX_STATIC, .agent = opt->agent};
  rc = sl_vm_initrd_ensure(cache, &ispec, initrd, VM_PATH_MAX, err);
  snprintf(kernel, VM_PATH_MAX, "%s", k.vmlinuz);
  return rc;
}

static json_t *new_conf(const sl_vm_options *opt, sl_vm_accel accel, const char *kernel,
                        const char *initrd, const char *ram_path) {
  unsigned ports = opt->agent_ports ? opt->agent_ports : SL_VM_DEFAULT_PORTS;
  char cmdline[256];
  /* panic=-1 reboots at once on a panic, which -no-reboot turns into QEMU's
   * exit. pci=off: microvm has no PCI bus. */
  int n = snprintf(cmdline, sizeof cmdline,
                   "console=ttyS0 quiet panic=-1 pci=off rw sandlot.ports=%u", ports);
  unsigned tsc_khz = accel == SL_VM_ACCEL_TCG ? sl_vm_host_tsc_khz() : 0;
  /* Under TCG the guest can skip TSC calibration, which hangs the kernel
   * when the loaded host delays the emulated PIT (seen with Debian's 6.1
   * cloud kernel). */
  if (tsc_khz > 0)
    snprintf(cmdline + n, sizeof cmdline - (size_t)n,
             " tsc_early_khz=%u tsc=reliable no_timer_check", tsc_khz);
  return json_pack("{s:i, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:n}",
                   "memory_mb", (json_int_t)(opt->memory_mb ? opt->memory_mb
                                                            : SL_VM_DEFAULT_MEMORY_MB),
                   "vcpus", (json_int_t)(opt->vcpus ? opt->vcpus : 1), "agent_ports",
                   (json_int_t)ports, "accel", sl_vm_accel_name(accel), "kernel", kernel,
                   "initrd", initrd, "cmdline", cmdline, "ram_mode", "shared", "ram_path",
                   ram_path, "paused", 0, "uses");
}

/* Remove what a failed create or fork left: QEMU, the directory, the RAM. */
static void discard_vm(sl_vm *vm) {
  sl_vm_kill(vm, NULL);
  char ram[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, ram, sizeof ram);
  unlink(ram);
  sl_remove_tree(vm->dir, NULL);
}

static int create_files(const sl_vm_options *opt, sl_vm *vm, sl_error *err) {
  char kernel[VM_PATH_MAX], initrd[VM_PATH_MAX], ram[VM_PATH_MAX], disk[VM_PATH_MAX];
  sl_vm_accel accel;
  int rc = sl_vm_accel_choose(&accel, err);
  if (rc == 0) rc = boot_files(opt, kernel, initrd, err);
  if (rc < 0) return rc;
  vm_live_ram_path(vm->home, vm->id, ram, sizeof ram);
  vm->conf = new_conf(opt, accel, kernel, initrd, ram);
  if (vm->conf == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  rc = vm_path(disk, vm->dir, "disk.qcow2", err);
  if (rc == 0) rc = sl_vm_disk_overlay(opt->base_disk, disk, err);
  if (rc == 0) rc = vm_conf_save(vm->dir, vm->conf, err);
  return rc;
}

static int validate_options(const sl_vm_options *opt, const char *id, sl_error *err) {
  if (check_id(id, "sandbox", err) < 0) return -EINVAL;
  if (opt->home == NULL || opt->base_disk == NULL || opt->agent == NULL)
    return sl_error_set(err, EINVAL, "invalid VM options: home, base_disk and agent are required");
  unsigned mem = opt->memory_mb ? opt->memory_mb : SL_VM_DEFAULT_MEMORY_MB;
  if (mem < SL_VM_MEMORY_MIN_MB || mem > SL_VM_MEMORY_MAX_MB)
    return sl_error_set(err, EINVAL, "invalid VM memory size: %u MiB (expected %u to %u MiB)",
                        mem, SL_VM_MEMORY_MIN_MB, SL_VM_MEMORY_MAX_MB);
  if (!sl_path_exists(opt->base_disk))
    return sl_error_set(err, ENOENT, "root disk image not found: %s", opt->base_disk);
  if (!sl_path_exists(opt->agent))
    return sl_error_set(err, ENOENT, "agent binary not found: %s", opt->agent);
  return 0;
}

int sl_vm_create(const sl_vm_options *opt, const char *id, sl_vm **out, sl_error *err) {
  int rc = validate_options(opt, id, err);
  if (rc < 0) return sl_error_wrap(err, "create %s", id ? id : "");
  sl_vm *vm = vm_alloc(opt->home, id, err);
  if (vm == NULL) return -ENOMEM;
  char conf[VM_PATH_MAX];
  if (vm_path(conf, vm->dir, "vm.json", err) < 0 || sl_path_exists(conf)) {
    sl_vm_close(vm);
    return err && err->code ? -err->code : sl_error_set(err, EEXIST, "sandbox exists: %s", id);
  }
  double start = sl_clock_ms();
  rc = sl_mkdir_p(vm->dir, 0700, err);
  if (rc == 0) rc = create_files(opt, vm, err);
  if (rc == 0) rc = vm_launch(vm, false, err);
  if (rc == 0)
    rc = wait_agent_port(vm, opt->boot_timeout_ms > 0 ? opt->boot_timeout_ms : 120000, err);
  if (rc == 0) rc = vm_agent_hello(vm, err);
  if (rc < 0) {
    discard_vm(vm);
    sl_vm_close(vm);
    return sl_error_wrap(err, "create %s", id);
  }
  SL_INFO("vm.created", "sandbox=%s pid=%d boot_ms=%.0f", id, (int)vm->pid, sl_clock_ms() - start);
  *out = vm;
  return 0;
}

/* Agent ports. */

static int connect_unix(const char *path, sl_error *err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path)
    return sl_error_set(err, ENAMETOOLONG, "socket path too long: %s", path);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sl_error_errno(err, errno, "socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    return sl_error_errno(err, e, "connect %s", path);
  }
  return fd;
}

static int lock_port(sl_vm *vm, unsigned port, bool wait, sl_error *err) {
  char path[VM_PATH_MAX], name[32];
  snprintf(name, sizeof name, "agent-%u.lock", port);
  int rc = vm_path(path, vm->dir, name, err);
  if (rc < 0) return rc;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", path);
  while ((rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) < 0 && errno == EINTR) {
  }
  if (rc < 0) {
    int e = errno;
    close(fd);
    return e == EWOULDBLOCK ? -EWOULDBLOCK : sl_error_errno(err, e, "flock %s", path);
  }
  return fd;
}

int sl_vm_agent_open(sl_vm *vm, sl_agent_conn *conn, int *lock_fd, int timeout_ms,
                     sl_error *err) {
  int fd = sl_vm_agent_connect(vm, lock_fd, err);
  if (fd < 0) return fd;
  int rc = sl_agent_conn_attach_fd(conn, fd, timeout_ms, 1, err);
  if (rc < 0) {
    close(fd);
    close(*lock_fd);
    *lock_fd = -1;
    return sl_error_wrap(err, "agent of %s", vm->id);
  }
  return 0;
}

void sl_vm_agent_close(sl_agent_conn *conn, int lock_fd) {
  sl_agent_conn_close(conn);
  if (lock_fd >= 0) close(lock_fd);
}

int sl_vm_agent_connect(sl_vm *vm, int *lock_fd, sl_error *err) {
  int rc = vm_require_running(vm, err);
  if (rc < 0) return rc;
  unsigned ports = conf_uint(vm->conf, "agent_ports");
  int lock = -EWOULDBLOCK;
  unsigned port = 0;
  for (port = 0; port < ports && lock == -EWOULDBLOCK; port++) lock = lock_port(vm, port, false, err);
  if (lock == -EWOULDBLOCK) {
    port = (unsigned)getpid() % ports + 1;
    lock = lock_port(vm, port - 1, true, err);
  }
  if (lock < 0) return lock;
  char path[VM_PATH_MAX], name[32];
  snprintf(name, sizeof name, "agent-%u.sock", port - 1);
  int fd = vm_path(path, vm->dir, name, err);
  if (fd == 0) fd = connect_unix(path, err);
  if (fd < 0) {
    close(lock);
    return sl_error_wrap(err, "agent port of %s", vm->id);
  }
  *lock_fd = lock;
  return fd;
}
