/* VM sandboxes: create, open, launch and end QEMU, agent ports. */
#include "vm.h"

#include <dirent.h>
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

#include "agent_ports.h"
#include "log.h"
#include "proc_init.h"
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

const char *vm_conf_str(json_t *conf, const char *key) {
  return json_string_value(json_object_get(conf, key));
}

static const char *conf_str(json_t *conf, const char *key) { return vm_conf_str(conf, key); }

bool vm_ram_shared(const sl_vm *vm) {
  const char *mode = conf_str(vm->conf, "ram_mode");
  return mode != NULL && strcmp(mode, "shared") == 0;
}

/* VMs made before the disk switch existed have no "disk" key. */
int vm_disk_path(const sl_vm *vm, char *out, sl_error *err) {
  const char *name = conf_str(vm->conf, "disk");
  return vm_path(out, vm->dir, name ? name : "disk.qcow2", err);
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

int vm_reload_conf(sl_vm *vm, sl_error *err) {
  json_t *conf = NULL;
  int rc = vm_conf_load(vm->dir, &conf, err);
  if (rc < 0) return rc;
  json_decref(vm->conf);
  vm->conf = conf;
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
 * /init's own report, else the agent's, else the kernel's panic line,
 * else the last line. */
static const char *console_reason(char *log, size_t len) {
  while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r')) log[--len] = '\0';
  static const char *const markers[] = {"sandlot-init:", "sandlot-agent:", "Kernel panic", NULL};
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
  static const char *const names[] = {NULL, "qmp.sock", "console.log", "qemu.pid",
                                      "events.sock"};
  if (vm_disk_path(vm, paths[0], err) < 0) return -ENAMETOOLONG;
  for (int i = 1; i < VM_FIXED_PATHS; i++)
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

/* Remove the disk files of the folder other than the active overlay: links
 * to disks that snapshots froze, which only an earlier QEMU used, and the
 * overlay a rollback replaced. */
static void remove_stale_disks(sl_vm *vm) {
  const char *active = conf_str(vm->conf, "disk");
  DIR *d = opendir(vm->dir);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "disk", 4) != 0 || len < 6 || strcmp(e->d_name + len - 6, ".qcow2") != 0)
      continue;
    if (active != NULL && strcmp(e->d_name, active) == 0) continue;
    unlinkat(dirfd(d), e->d_name, 0);
  }
  if (d != NULL) closedir(d);
}

int vm_launch(sl_vm *vm, bool incoming, sl_error *err) {
  sl_vm_spec spec;
  char paths[VM_FIXED_PATHS + SL_VM_AGENT_PORTS_MAX][VM_PATH_MAX];
  int rc = fill_spec(vm, incoming, &spec, paths, err);
  if (rc == 0) rc = check_socket_paths(&spec, err);
  sl_args argv = {0};
  if (rc == 0) rc = sl_vm_argv_build(&spec, &argv, err);
  if (rc < 0) return rc;
  remove_stale_disks(vm);
  /* The new QEMU names the active overlay "disk" (vm_argv.c). */
  json_object_set_new(vm->conf, "disk_node", json_string("disk"));
  unlink(spec.pidfile);
  unlink(spec.qmp_socket);
  unlink(spec.events_socket);
  for (unsigned i = 0; i < spec.agent_ports; i++) unlink(spec.agent_sockets[i]);
  /* The record's agent_socket names the port set (agent_ports.h). */
  char link[VM_PATH_MAX];
  if (vm_path(link, vm->dir, SL_AGENT_SOCKET_HOST, err) < 0) {
    sl_args_free(&argv);
    return -ENAMETOOLONG;
  }
  if (symlink("agent-0.sock", link) < 0 && errno != EEXIST) {
    sl_args_free(&argv);
    return sl_error_errno(err, errno, "symlink %s", link);
  }
  /* With -daemonize QEMU exits once its sockets listen, so a zero exit
   * means the QMP socket accepts connections. */
  rc = sl_run_output((const char *const *)argv.v, NULL, err);
  sl_args_free(&argv);
  if (rc < 0) return sl_error_wrap(err, "start QEMU");
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

/* The live RAM file is on tmpfs; a snapshot's RAM file, which a fork
 * maps, is never removed here. */
bool vm_release_files(sl_vm *vm) {
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
  if (rc < 0) return sl_error_wrap_subject(err, "kill", vm->id);
  vm_release_files(vm);
  return 0;
}

int sl_vm_gc(sl_vm *vm, bool *cleaned, sl_error *err) {
  *cleaned = false;
  vm_read_pid(vm);
  if (vm->pidfd >= 0) return 0;
  *cleaned = vm_release_files(vm);
  return 0;
}

int vm_qmp_connect(sl_vm *vm, sl_qmp_sync **q, sl_error *err) {
  char path[VM_PATH_MAX];
  int rc = vm_path(path, vm->dir, "qmp.sock", err);
  if (rc == 0) rc = sl_qmp_sync_connect(path, VM_QMP_TIMEOUT_MS, q, err);
  if (rc < 0) return sl_error_wrap_subject(err, "QMP", vm->id);
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
  else if (rc < 0) sl_error_wrap(err, "wait for the agent");
  if (rc < 0) vm_add_console_tail(vm, err);
  return rc;
}

/* One request through a port of the VM's agent; the final reply goes to
 * `reply` and `final`. */
static int agent_call(sl_vm *vm, const sl_buf *request, sl_buf *reply, sl_frame *final,
                      sl_error *err) {
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, SL_VM_AGENT_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  rc = sl_agent_conn_call(&conn, request, NULL, NULL, reply, final, err);
  sl_vm_agent_close(&conn, lock);
  return rc;
}

int vm_agent_hello(sl_vm *vm, sl_error *err) {
  sl_buf request = {0}, reply = {0};
  sl_frame_end(&request, sl_frame_begin(&request, SL_MSG_HELLO, 0), NULL);
  sl_frame final;
  int rc = agent_call(vm, &request, &reply, &final, err);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  if (rc < 0) return sl_error_wrap(err, "agent hello");
  return 0;
}

static int vm_set_hostname(sl_vm *vm, const char *hostname, sl_error *err) {
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_SET_HOSTNAME, 0);
  sl_frame_put_str(&request, SL_F_NAME, hostname);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  int rc = agent_call(vm, &request, &reply, &final, err);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  if (rc < 0) return sl_error_wrap(err, "set hostname");
  return 0;
}

int vm_agent_run(sl_vm *vm, const char *command, sl_error *err) {
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_EXEC, 0);
  sl_frame_put_str(&request, SL_F_COMMAND, command);
  sl_frame_put_i64(&request, SL_F_STREAM, 1);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  int rc = agent_call(vm, &request, &reply, &final, err);
  int64_t code = -1;
  if (rc == 0) sl_frame_get_i64(&final, SL_F_EXIT_CODE, &code, NULL);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  if (rc == 0 && code != 0)
    rc = sl_error_set(err, EIO, "`%s` failed in the guest (exit code %lld)", command, (long long)code);
  if (rc < 0) return sl_error_wrap_subject(err, "run in the guest", vm->id);
  return 0;
}

int vm_boot_wait(sl_vm *vm, int timeout_ms, const char *hostname, sl_error *err) {
  int rc = wait_agent_port(vm, timeout_ms > 0 ? timeout_ms : VM_BOOT_TIMEOUT_MS, err);
  if (rc == 0) rc = vm_agent_hello(vm, err);
  if (rc == 0 && hostname != NULL) rc = vm_set_hostname(vm, hostname, err);
  return rc;
}

static int boot_files(const char *home, const char *agent, char *kernel, char *initrd,
                      sl_error *err) {
  char cache[VM_PATH_MAX];
  sl_vm_cache_dir(home, cache, sizeof cache);
  sl_vm_kernel k;
  int rc = sl_vm_kernel_ensure(cache, &k, err);
  if (rc < 0) return rc;
  sl_vm_initrd_spec ispec = {.kernel = &k, .busybox = BUSYBOX_STATIC, .agent = agent};
  rc = sl_vm_initrd_ensure(cache, &ispec, initrd, VM_PATH_MAX, err);
  snprintf(kernel, VM_PATH_MAX, "%s", k.vmlinuz);
  return rc;
}

int sl_vm_prepare_boot(const char *home, const char *agent, sl_error *err) {
  char kernel[VM_PATH_MAX], initrd[VM_PATH_MAX];
  int rc = boot_files(home, agent, kernel, initrd, err);
  if (rc < 0) return sl_error_wrap(err, "prepare the guest kernel and initramfs");
  return 0;
}

static json_t *new_conf(const sl_vm_options *opt, sl_vm_accel accel, const char *kernel,
                        const char *initrd, const char *ram_path, sl_error *err) {
  unsigned ports = opt->agent_ports ? opt->agent_ports : SL_VM_DEFAULT_PORTS;
  sl_vm_cmdline_spec cmd = {.agent_ports = ports, .env = opt->env, .cwd = opt->cwd,
                            .tsc_khz = accel == SL_VM_ACCEL_TCG ? sl_vm_host_tsc_khz() : 0};
  char cmdline[SL_VM_CMDLINE_MAX + 1];
  if (sl_vm_cmdline_build(&cmd, cmdline, sizeof cmdline, err) < 0) return NULL;
  json_t *conf = json_pack(
      "{s:i, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:i}", "memory_mb",
      (json_int_t)(opt->memory_mb ? opt->memory_mb : SL_VM_DEFAULT_MEMORY_MB), "vcpus",
      (json_int_t)(opt->vcpus ? opt->vcpus : 1), "agent_ports", (json_int_t)ports, "accel",
      sl_vm_accel_name(accel), "kernel", kernel, "initrd", initrd, "cmdline", cmdline,
      "ram_mode", "shared", "ram_path", ram_path, "paused", 0, "disk", "disk-0.qcow2",
      "disk_seq", (json_int_t)0);
  if (conf == NULL) sl_error_set(err, ENOMEM, "out of memory");
  else if (opt->hostname != NULL) json_object_set_new(conf, "hostname", json_string(opt->hostname));
  return conf;
}

void vm_remove_pause_files(sl_vm *vm) {
  char path[VM_PATH_MAX];
  if (vm_path(path, vm->dir, "state", NULL) == 0) unlink(path);
  if (vm_path(path, vm->dir, "ram", NULL) == 0) unlink(path);
}

void vm_remove_disks(sl_vm *vm) {
  if (vm->conf == NULL) vm->conf = json_object();
  json_object_set_new(vm->conf, "disk", json_null());
  remove_stale_disks(vm);
}

static void unlink_in(const sl_vm *vm, const char *name) {
  char path[VM_PATH_MAX];
  if (vm_path(path, vm->dir, name, NULL) == 0) unlink(path);
}

/* Unlink the agent ports' files whose names end in `suffix`. */
static void unlink_ports(const sl_vm *vm, const char *suffix) {
  char name[32];
  for (unsigned port = 0; port < SL_VM_AGENT_PORTS_MAX; port++) {
    snprintf(name, sizeof name, "agent-%u.%s", port, suffix);
    unlink_in(vm, name);
  }
}

void vm_release_ended(sl_vm *vm) {
  vm_release_files(vm);
  vm_remove_disks(vm);
  vm_remove_pause_files(vm);
  static const char *const sockets[] = {"qmp.sock", "events.sock", SL_AGENT_SOCKET_HOST, NULL};
  for (size_t i = 0; sockets[i]; i++) unlink_in(vm, sockets[i]);
  /* Sockets before locks: a client counts the ports by their sockets, so
   * once they are gone none creates a lock file again. */
  unlink_ports(vm, "sock");
  unlink_ports(vm, "lock");
}

void vm_remove_files(sl_vm *vm) {
  sl_vm_kill(vm, NULL);
  vm_release_ended(vm);
  /* What vm_release_ended leaves for a look afterwards goes too. */
  static const char *const records[] = {"vm.json", "disk.qcow2", "console.log", NULL};
  for (size_t i = 0; records[i]; i++) unlink_in(vm, records[i]);
  rmdir(vm->dir); /* when nothing else is in it */
}

static int create_files(const sl_vm_options *opt, sl_vm *vm, sl_error *err) {
  char kernel[VM_PATH_MAX], initrd[VM_PATH_MAX], ram[VM_PATH_MAX], disk[VM_PATH_MAX];
  sl_vm_accel accel;
  int rc = sl_vm_accel_choose(&accel, err);
  if (rc == 0) rc = boot_files(opt->home, opt->agent, kernel, initrd, err);
  if (rc < 0) return rc;
  vm_live_ram_path(vm->home, vm->id, ram, sizeof ram);
  vm->conf = new_conf(opt, accel, kernel, initrd, ram, err);
  if (vm->conf == NULL) return -err->code;
  rc = vm_disk_path(vm, disk, err);
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
  if (rc < 0) return sl_error_wrap_subject(err, "boot", id ? id : "");
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
  if (rc == 0) rc = vm_boot_wait(vm, opt->boot_timeout_ms, opt->hostname, err);
  if (rc < 0) {
    vm_remove_files(vm);
    sl_vm_close(vm);
    return sl_error_wrap_subject(err, "boot", id);
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

int sl_vm_agent_open(sl_vm *vm, sl_agent_conn *conn, int *lock_fd, int timeout_ms,
                     sl_error *err) {
  int fd = sl_vm_agent_connect(vm, timeout_ms, lock_fd, err);
  if (fd < 0) return fd;
  int rc = sl_agent_conn_attach_fd(conn, fd, timeout_ms, 1, err);
  if (rc < 0) {
    close(fd);
    close(*lock_fd);
    *lock_fd = -1;
    return rc;
  }
  return 0;
}

void sl_vm_agent_close(sl_agent_conn *conn, int lock_fd) {
  sl_agent_conn_close(conn);
  if (lock_fd >= 0) close(lock_fd);
}

int sl_vm_agent_connect(sl_vm *vm, int timeout_ms, int *lock_fd, sl_error *err) {
  int rc = vm_require_running(vm, err);
  if (rc < 0) return rc;
  unsigned port = 0;
  int lock = sl_agent_port_take(vm->dir, conf_uint(vm->conf, "agent_ports"), timeout_ms, &port,
                                err);
  if (lock < 0) return lock; /* the message names the VM's folder */
  char path[VM_PATH_MAX];
  int fd = sl_agent_port_socket(vm->dir, port, path, sizeof path, err);
  if (fd == 0) fd = connect_unix(path, err);
  if (fd < 0) {
    close(lock);
    return fd; /* the message names the port's socket */
  }
  *lock_fd = lock;
  return fd;
}

int sl_vm_delete(const char *home, const char *id, sl_error *err) {
  sl_vm *vm = NULL;
  int rc = sl_vm_open(home, id, &vm, err);
  if (rc < 0) return rc;
  rc = sl_vm_kill(vm, err);
  vm_release_files(vm);
  if (rc == 0) rc = sl_remove_tree(vm->dir, err);
  sl_vm_close(vm);
  if (rc < 0) return sl_error_wrap_subject(err, "delete", id);
  return 0;
}
