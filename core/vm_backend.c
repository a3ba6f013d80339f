/* The VM backend behind the sandbox API (sandbox.h): a sandbox of backend
 * "vm" is a microVM (vm.h) booted from the template's root filesystem and
 * owned by a sandlot-monitor in VM mode (monitor/vm_mode.h).
 *
 * The record's init_pid is the QEMU process and monitor_pid the monitor.
 * Operations that end or replace QEMU (kill, pause, rollback) go through
 * the monitor's control socket. Freeze, thaw and snapshots talk to QEMU
 * directly under the sandbox's op.lock. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "monitor_client.h"
#include "oplock.h"
#include "proc_init.h"
#include "proc_util.h"
#include "size.h"
#include "vm.h"
#include "vm_backend.h"
#include "vm_image.h"
#include "vm_internal.h"
#include "vm_monitor_config.h"

/* The monitor boots the guest before it reports: 2 to 5 s under TCG on
 * this machine, more on a loaded host. */
#define READY_TIMEOUT_MS 180000
#define MONITOR_REQUEST_TIMEOUT_MS 30000
/* A pause or rollback migrates and starts QEMU inside the monitor. */
#define LONG_REQUEST_TIMEOUT_MS 300000

static const char *const monitor_extra[] = {"--backend", "vm", NULL};

/* The guest RAM of `spec`: its memory size, a whole number of MiB within
 * QEMU's bounds (vm_argv.h). */
static int memory_mb_of(const sl_create_spec *spec, unsigned *out, sl_error *err) {
  uint64_t bytes = (uint64_t)SL_VM_DEFAULT_MEMORY_MB << 20;
  if (spec->memory != NULL && sl_parse_size(spec->memory, &bytes, err) < 0)
    return sl_error_wrap(err, "invalid memory size");
  uint64_t mb = bytes >> 20;
  if ((bytes & ((1u << 20) - 1)) != 0 || mb < SL_VM_MEMORY_MIN_MB || mb > SL_VM_MEMORY_MAX_MB)
    return sl_error_set(err, EINVAL,
                        "invalid memory size for a VM: %s (expected whole MiB from %uM to %uM)",
                        spec->memory, SL_VM_MEMORY_MIN_MB, SL_VM_MEMORY_MAX_MB);
  /* The guest RAM is a file in tmpfs, so the host cannot back more than
   * its own RAM. A 1 TiB guest did not boot here, and create waited for
   * the boot timeout, so such sizes fail at once. */
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  uint64_t host_mb = pages > 0 && page_size > 0 ? ((uint64_t)pages * (uint64_t)page_size) >> 20 : 0;
  if (host_mb > 0 && mb > host_mb)
    return sl_error_set(err, EINVAL,
                        "invalid memory size for a VM: %s (more than the host's %lluM of RAM)",
                        spec->memory, (unsigned long long)host_mb);
  *out = (unsigned)mb;
  return 0;
}

/* pids, cpu_shares and cpus set cgroup limits of a process sandbox. A VM
 * has none, so asking for them is an error rather than a silent no-op. */
static int check_limits(const sl_create_spec *spec, sl_error *err) {
  if (spec->pids == 0 && spec->cpu_shares == 0 && spec->cpus == 0) return 0;
  return sl_error_set(err, EINVAL,
                      "invalid limit for a VM sandbox: pids, cpu_shares and cpus apply to "
                      "process sandboxes only (a VM's limit is its memory)");
}

/* env and cwd ride on the kernel command line: check that they fit
 * before anything is made. The TSC rate takes at most 10 digits. */
static int check_cmdline(const sl_create_spec *spec, sl_error *err) {
  char line[SL_VM_CMDLINE_MAX + 1];
  sl_vm_cmdline_spec cmd = {.agent_ports = SL_VM_DEFAULT_PORTS, .tsc_khz = 4000000000u,
                            .env = spec->env, .cwd = spec->cwd};
  return sl_vm_cmdline_build(&cmd, line, sizeof line, err);
}

static void fill_record(const sl_create_spec *spec, const char *id, unsigned memory_mb,
                        const char *snapshot_id, sl_sandbox_info *info) {
  memset(info, 0, sizeof *info);
  snprintf(info->id, sizeof info->id, "%s", id);
  info->backend = SL_BACKEND_VM;
  /* A sandbox made from a snapshot takes its template, which the catalog
   * fills in. */
  const char *tname = spec->template_name ? spec->template_name : SL_TEMPLATE_DEFAULT;
  if (snapshot_id[0] != '\0' && spec->template_name == NULL) tname = "";
  snprintf(info->template_name, sizeof info->template_name, "%s", tname);
  snprintf(info->source_snapshot_id, sizeof info->source_snapshot_id, "%s", snapshot_id);
  info->state = SL_SANDBOX_CREATING;
  info->timeout_ms = spec->timeout_sec * 1000;
  info->on_timeout = spec->on_timeout;
  info->auto_kill = spec->auto_kill;
  info->memory_bytes = (uint64_t)memory_mb << 20;
  info->exit_status = -1;
}

/* The base disk of the template layer, the agent binary, and the kernel
 * and initramfs in the VM cache (fetched or built now, not in the
 * monitor). */
static int boot_inputs(sl_sandboxes *h, const sl_create_spec *spec, sl_vm_monitor_config *cfg,
                       sl_error *err) {
  sl_template_layer tl;
  if (sl_backend_prepare_template(h, spec, &tl, err) < 0) return -err->code;
  if (sl_find_binary("sandlot-agent", cfg->agent, sizeof cfg->agent, err) < 0) return -err->code;
  char cache[PATH_MAX];
  sl_vm_cache_dir(h->home, cache, sizeof cache);
  int rc = sl_vm_base_disk(cache, tl.layer_id, tl.path, 1024, cfg->base_disk,
                           sizeof cfg->base_disk, err);
  if (rc == 0) rc = sl_vm_prepare_boot(h->home, cfg->agent, err);
  return rc;
}

static void monitor_config(const sl_create_spec *spec, unsigned memory_mb,
                           sl_vm_monitor_config *cfg) {
  /* The config only borrows the spec's list while it is written. */
  cfg->env = (char **)spec->env;
  snprintf(cfg->cwd, sizeof cfg->cwd, "%s", spec->cwd ? spec->cwd : "");
  cfg->memory_mb = memory_mb;
  snprintf(cfg->hostname, sizeof cfg->hostname, "%s", spec->hostname ? spec->hostname : "sandlot");
  cfg->timeout_ms = spec->timeout_sec * 1000;
  cfg->on_timeout = spec->on_timeout;
  cfg->auto_kill = spec->auto_kill;
}

/* A sandbox from a snapshot with memory continues it (launch "fork"): its
 * RAM size is the snapshot's. One from a files-only snapshot boots on the
 * snapshot's disk with the spec's memory. */
static int plan_from_image(const sl_create_spec *spec, const vm_image_paths *paths,
                           unsigned *memory_mb, sl_vm_monitor_config *cfg, sl_error *err) {
  if (!paths->has_memory) {
    if (spec->on_fork != NULL)
      return sl_error_set(err, EINVAL, "on_fork needs a snapshot with memory; %s is filesystem only",
                          spec->snapshot);
    cfg->launch = SL_VM_LAUNCH_BOOT;
    snprintf(cfg->base_disk, sizeof cfg->base_disk, "%s", paths->disk);
    return 0;
  }
  unsigned image_mb = 0;
  if (sl_vm_image_memory_mb(paths->dir, &image_mb, err) < 0) return -err->code;
  if (spec->memory != NULL && *memory_mb != image_mb)
    return sl_error_set(err, EINVAL,
                        "invalid memory size for a fork: %s (a fork of %s has its %u MiB)",
                        spec->memory, spec->snapshot, image_mb);
  *memory_mb = image_mb;
  cfg->launch = SL_VM_LAUNCH_FORK;
  snprintf(cfg->image_dir, sizeof cfg->image_dir, "%s", paths->dir);
  snprintf(cfg->image_disk, sizeof cfg->image_disk, "%s", paths->disk);
  if (spec->on_fork != NULL &&
      snprintf(cfg->on_fork, sizeof cfg->on_fork, "%s", spec->on_fork) >= (int)sizeof cfg->on_fork)
    return sl_error_set(err, EINVAL, "on_fork command longer than %zu bytes",
                        sizeof cfg->on_fork - 1);
  return 0;
}

static int plan_from_snapshot(sl_sandboxes *h, const sl_create_spec *spec, unsigned *memory_mb,
                              sl_vm_monitor_config *cfg, char *snapshot_id, sl_error *err) {
  sl_catalog *cat = sl_sbstore_catalog(h->store);
  sl_snapshot sn = {0};
  vm_image_paths paths;
  int rc = sl_catalog_snapshot_resolve(cat, spec->snapshot, &sn, err);
  if (rc == 0) rc = vm_snapshot_image(cat, &sn, &paths, err);
  if (rc == 0) rc = plan_from_image(spec, &paths, memory_mb, cfg, err);
  if (rc == 0 && cfg->launch == SL_VM_LAUNCH_BOOT) {
    if (sl_find_binary("sandlot-agent", cfg->agent, sizeof cfg->agent, err) < 0) rc = -err->code;
    else rc = sl_vm_prepare_boot(h->home, cfg->agent, err);
  }
  if (rc == 0) snprintf(snapshot_id, SL_ID_SIZE, "%s", sn.id);
  sl_snapshot_clear(&sn);
  return rc;
}

static pid_t live_monitor(const sl_sandboxes *h, const sl_sandbox_info *info) {
  if (sl_monitor_is(info->monitor_pid, h->home, info->id)) return info->monitor_pid;
  return sl_monitor_find(h->home, info->id);
}

/* After a failed start: the monitor cleans up before it reports; this
 * covers one that died first. */
static void discard(sl_sandboxes *h, const char *id) {
  pid_t monitor = sl_monitor_find(h->home, id);
  if (monitor > 0) kill(monitor, SIGKILL);
  sl_vm *vm = NULL;
  sl_error ignored = {0};
  if (sl_vm_open(h->home, id, &vm, &ignored) == 0) vm_remove_files(vm);
  sl_vm_close(vm);
  sl_sbstore_delete(h->store, id, &ignored);
}

/* Insert the row, write the monitor's config and start the monitor, which
 * boots the VM and marks the row running. The creator holds the op.lock
 * until then, so gc leaves the "creating" row alone. */
static int start(sl_sandboxes *h, sl_sandbox_info *info, const sl_vm_monitor_config *cfg,
                 sl_error *err) {
  char dir[SL_SANDBOX_PATH_MAX];
  if (sl_sbstore_insert(h->store, info, err) < 0) return -err->code;
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  int lock = sl_op_lock(dir, 0, err);
  int rc = lock < 0 ? -err->code : sl_vm_monitor_config_write(dir, cfg, err);
  if (rc == 0)
    rc = sl_monitor_start(h->home, info->id, monitor_extra, cfg->auto_kill, READY_TIMEOUT_MS,
                          err);
  if (rc < 0) discard(h, info->id);
  sl_op_unlock(lock);
  return rc;
}

static int vm_create(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out,
                     sl_error *err) {
  unsigned memory_mb = 0;
  sl_vm_monitor_config cfg = {.launch = SL_VM_LAUNCH_BOOT};
  char snapshot_id[SL_ID_SIZE] = "";
  if (memory_mb_of(spec, &memory_mb, err) < 0 || check_limits(spec, err) < 0 ||
      check_cmdline(spec, err) < 0)
    return sl_error_wrap(err, "create sandbox");
  int rc = spec->snapshot != NULL
               ? plan_from_snapshot(h, spec, &memory_mb, &cfg, snapshot_id, err)
               : boot_inputs(h, spec, &cfg, err);
  if (rc < 0) return sl_error_wrap(err, "create sandbox");
  monitor_config(spec, memory_mb, &cfg);
  char id[SL_ID_SIZE];
  if (sl_sbstore_new_id(id, err) < 0) return -err->code;
  /* A fork gets a hostname of its own: by default its id. */
  if (cfg.launch == SL_VM_LAUNCH_FORK && spec->hostname == NULL)
    snprintf(cfg.hostname, sizeof cfg.hostname, "%s", id);
  sl_sandbox_info info;
  fill_record(spec, id, memory_mb, snapshot_id, &info);
  int64_t started = sl_monotonic_ms();
  if (start(h, &info, &cfg, err) < 0) return sl_error_wrap_subject(err, "create sandbox", id);
  if (sl_sbstore_get(h->store, id, out, err) < 0) return sl_error_wrap_subject(err, "create sandbox", id);
  SL_INFO("sandbox.created",
          "sandbox=%s op=create backend=vm template=%s snapshot=%s launch=%s qemu_pid=%d ms=%lld",
          id, out->template_name, snapshot_id, sl_vm_launch_name(cfg.launch), (int)out->init_pid,
          (long long)(sl_monotonic_ms() - started));
  return 0;
}

/* Kill */

static void monitor_socket(const sl_sandboxes *h, const char *id, char *buf, size_t len) {
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, id, dir, sizeof dir);
  snprintf(buf, len, "%s/monitor.sock", dir);
}

static void wait_exit(pid_t pid, int timeout_ms) {
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return;
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, timeout_ms);
  close(fd);
}

/* Release a VM whose monitor is gone: kill its QEMU if one still runs,
 * remove what it and the monitor held and record the end. */
static int release_orphan(sl_sandboxes *h, const sl_sandbox_info *info, const char *reason,
                          int exit_signal, sl_error *err) {
  char sock[SL_SANDBOX_PATH_MAX + 16];
  monitor_socket(h, info->id, sock, sizeof sock);
  unlink(sock); /* left by a monitor that was killed */
  sl_vm *vm = NULL;
  sl_error missing = {0};
  if (sl_vm_open(h->home, info->id, &vm, &missing) == 0) {
    sl_vm_kill(vm, NULL);
    vm_release_ended(vm);
  }
  sl_vm_close(vm);
  int rc = sl_sbstore_set_ended(h->store, info->id, -1, exit_signal, reason, err);
  return rc < 0 && err->code == ESRCH ? 0 : rc;
}

static int vm_kill(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  char sock[SL_SANDBOX_PATH_MAX + 16];
  monitor_socket(h, info->id, sock, sizeof sock);
  pid_t monitor = live_monitor(h, info);
  if (monitor > 0) {
    int rc = sl_monitor_request(sock, "kill", MONITOR_REQUEST_TIMEOUT_MS, NULL, 0, err);
    if (rc == 0) {
      wait_exit(monitor, 5000);
      return 0;
    }
    if (sl_monitor_is(monitor, h->home, info->id)) return rc;
  }
  /* No monitor (a paused VM, or one whose monitor died). */
  return release_orphan(h, info, "killed", SIGKILL, err);
}

/* Freeze and thaw */

static int with_running_vm(sl_sandboxes *h, const sl_sandbox_info *info,
                           int (*fn)(sl_vm *, sl_error *), sl_error *err) {
  if (info->state == SL_SANDBOX_CREATING)
    return sl_error_set(err, EBUSY, "sandbox is still being created: %s", info->id);
  if (info->state == SL_SANDBOX_PAUSED)
    return sl_error_set(err, EBUSY, "sandbox is paused (resume it first): %s", info->id);
  sl_vm *vm = NULL;
  int rc = sl_vm_open(h->home, info->id, &vm, err);
  if (rc == 0) rc = fn(vm, err);
  sl_vm_close(vm);
  return rc;
}

static int vm_freeze(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  if (info->state == SL_SANDBOX_FROZEN) return 0;
  int rc = with_running_vm(h, info, sl_vm_freeze, err);
  if (rc == 0) rc = sl_sbstore_set_state(h->store, info->id, SL_SANDBOX_FROZEN, err);
  return rc;
}

static int vm_thaw(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  if (info->state == SL_SANDBOX_RUNNING) return 0;
  int rc = with_running_vm(h, info, sl_vm_thaw, err);
  if (rc == 0) rc = sl_sbstore_set_state(h->store, info->id, SL_SANDBOX_RUNNING, err);
  return rc;
}

/* Timeout */

static int vm_set_timeout(sl_sandboxes *h, const sl_sandbox_info *info, int64_t seconds,
                          sl_error *err) {
  /* A paused sandbox has no monitor; its timeout counts from the resume. */
  if (info->state == SL_SANDBOX_PAUSED)
    return sl_sbstore_set_deadline(h->store, info->id, seconds * 1000, 0, info->on_timeout, err);
  if (live_monitor(h, info) <= 0)
    return sl_error_set(err, ESRCH, "monitor of %s is gone (run gc)", info->id);
  char sock[SL_SANDBOX_PATH_MAX + 16], request[64];
  monitor_socket(h, info->id, sock, sizeof sock);
  snprintf(request, sizeof request, "set_timeout %lld", (long long)seconds);
  return sl_monitor_request(sock, request, MONITOR_REQUEST_TIMEOUT_MS, NULL, 0, err);
}

/* Pause and resume */

/* Send `request` to the sandbox's monitor and wait for its reply. */
static int ask_monitor(sl_sandboxes *h, const sl_sandbox_info *info, const char *request,
                       pid_t *monitor, sl_error *err) {
  *monitor = live_monitor(h, info);
  if (*monitor <= 0) return sl_error_set(err, ESRCH, "monitor of %s is gone (run gc)", info->id);
  char sock[SL_SANDBOX_PATH_MAX + 16];
  monitor_socket(h, info->id, sock, sizeof sock);
  return sl_monitor_request(sock, request, LONG_REQUEST_TIMEOUT_MS, NULL, 0, err);
}

int vm_pause(sl_sandboxes *h, const sl_sandbox_info *info, bool files_only, sl_error *err) {
  pid_t monitor;
  int rc = ask_monitor(h, info, files_only ? "pause files" : "pause", &monitor, err);
  /* The monitor exits right after its reply. */
  if (rc == 0) wait_exit(monitor, 5000);
  return rc;
}

/* A resume starts a new monitor with the last one's config and launch
 * "resume". The timeout comes from the row, which set_timeout may have
 * changed while the sandbox was paused. */
int vm_resume(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  sl_vm_monitor_config cfg;
  int rc = sl_vm_monitor_config_read(dir, &cfg, err);
  if (rc == 0) {
    cfg.launch = SL_VM_LAUNCH_RESUME;
    cfg.timeout_ms = info->timeout_ms;
    cfg.on_timeout = info->on_timeout;
    cfg.auto_kill = info->auto_kill;
    rc = sl_vm_monitor_config_write(dir, &cfg, err);
    sl_vm_monitor_config_free(&cfg);
  }
  if (rc == 0)
    rc = sl_monitor_start(h->home, info->id, monitor_extra, info->auto_kill, READY_TIMEOUT_MS,
                          err);
  /* sl_sandbox_locked adds "resume" and the id. */
  if (rc < 0) return sl_error_wrap(err, "sandbox stays paused");
  SL_INFO("sandbox.resumed", "sandbox=%s op=resume backend=vm", info->id);
  return 0;
}

/* Snapshots and rollback */

static int vm_snapshot_op(sl_sandboxes *h, const sl_sandbox_info *info,
                          const sl_snapshot_opts *opts, sl_snapshot *out,
                          sl_snapshot_timing *timing, sl_error *err) {
  char *labels = opts->labels ? sl_labels_json(opts->labels) : NULL;
  if (opts->labels != NULL && labels == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  vm_snapshot_request req = {.name = opts->name, .tag = opts->tag, .labels = labels,
                             .files_only = opts->files_only};
  int rc = vm_snapshot_take(h, info, &req, out, timing, err);
  free(labels);
  return rc;
}

/* The monitor replaces QEMU; the caller holds the op.lock and has checked
 * the snapshot's lineage. */
static int vm_rollback(sl_sandboxes *h, const sl_sandbox_info *info, const sl_snapshot *snapshot,
                       sl_error *err) {
  char request[64];
  snprintf(request, sizeof request, "rollback %s", snapshot->id);
  pid_t monitor;
  return ask_monitor(h, info, request, &monitor, err);
}

static int vm_snapshot_delete(sl_sandboxes *h, const sl_snapshot *snapshot, sl_error *err) {
  return sl_snapshot_remove(sl_sbstore_catalog(h->store), sl_sbstore_store(h->store),
                            snapshot->id, err);
}

/* gc */

static bool being_created(const char *dir) {
  int lock = sl_op_lock(dir, 0, NULL);
  sl_op_unlock(lock);
  return lock < 0;
}

/* Release what a dead VM may still hold: a RAM file on tmpfs, disks,
 * sockets. */
static int release_leftovers(sl_sandboxes *h, const sl_sandbox_info *info, int *cleaned) {
  sl_vm *vm = NULL;
  sl_error missing = {0};
  if (sl_vm_open(h->home, info->id, &vm, &missing) < 0) return 0;
  bool released = false;
  sl_vm_gc(vm, &released, &missing);
  if (sl_vm_pid(vm) == 0) vm_release_ended(vm);
  sl_vm_close(vm);
  *cleaned = released;
  return 0;
}

static int vm_gc(sl_sandboxes *h, const sl_sandbox_info *info, int *cleaned, sl_error *err) {
  *cleaned = 0;
  char dir[SL_SANDBOX_PATH_MAX];
  sl_sandbox_dir(h, info->id, dir, sizeof dir);
  if (info->state == SL_SANDBOX_DEAD) return release_leftovers(h, info, cleaned);
  if (live_monitor(h, info) > 0 || being_created(dir)) return 0;
  if (info->state == SL_SANDBOX_PAUSED) return 0; /* no monitor while paused */
  *cleaned = 1;
  if (info->state == SL_SANDBOX_CREATING) {
    SL_WARN("sandbox.gc", "sandbox=%s op=gc backend=vm note=\"creating without a creator, "
            "dropping it\"", info->id);
    discard(h, info->id);
    return 0;
  }
  SL_WARN("sandbox.gc", "sandbox=%s op=gc backend=vm note=\"monitor gone, ending the VM\"",
          info->id);
  return release_orphan(h, info, "monitor_lost", 0, err);
}

const sl_backend_ops sl_vm_backend = {
    .create = vm_create,
    .kill = vm_kill,
    .freeze = vm_freeze,
    .thaw = vm_thaw,
    .set_timeout = vm_set_timeout,
    .snapshot = vm_snapshot_op,
    .pause = vm_pause,
    .resume = vm_resume,
    .rollback = vm_rollback,
    .snapshot_delete = vm_snapshot_delete,
    .gc = vm_gc,
};
