/* The VM backend behind the sandbox API (sandbox.h): a sandbox of backend
 * "vm" is a microVM (vm.h) booted from the template's root filesystem.
 *
 * The record's init_pid is the QEMU process. There is no monitor yet:
 * nothing records the end of a VM whose guest powers off until gc runs,
 * and timeouts are not supported (ENOTSUP). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "oplock.h"
#include "proc_init.h"
#include "proc_util.h"
#include "size.h"
#include "vm.h"
#include "vm_image.h"

static unsigned memory_mb_of(const sl_create_spec *spec) {
  uint64_t bytes = 0;
  if (spec->memory == NULL || sl_parse_size(spec->memory, &bytes, NULL) < 0)
    return SL_VM_DEFAULT_MEMORY_MB;
  return (unsigned)(bytes >> 20);
}

static void fill_record(const sl_create_spec *spec, const char *id, sl_sandbox_info *info) {
  memset(info, 0, sizeof *info);
  snprintf(info->id, sizeof info->id, "%s", id);
  info->backend = SL_BACKEND_VM;
  snprintf(info->template_name, sizeof info->template_name, "%s",
           spec->template_name ? spec->template_name : SL_TEMPLATE_DEFAULT);
  info->state = SL_SANDBOX_CREATING;
  info->memory_bytes = (uint64_t)memory_mb_of(spec) << 20;
  info->exit_status = -1;
}

/* The base disk of the template layer and the agent binary. */
static int boot_inputs(sl_sandboxes *h, const sl_create_spec *spec, char *disk, char *agent,
                       sl_error *err) {
  sl_template_layer tl;
  if (sl_backend_prepare_template(h, spec, &tl, err) < 0) return -err->code;
  if (sl_find_binary("sandlot-agent", agent, PATH_MAX, err) < 0) return -err->code;
  char cache[PATH_MAX];
  sl_vm_cache_dir(h->home, cache, sizeof cache);
  return sl_vm_base_disk(cache, tl.layer_id, tl.path, 1024, disk, PATH_MAX, err);
}

/* Boot the VM of a "creating" row and record it as running. The record's
 * agent.sock is a link to the VM's agent port (a stream: clients need the
 * sync marker and the port's lock, see sl_vm_agent_open). */
static int boot(sl_sandboxes *h, const sl_create_spec *spec, const char *id, const char *disk,
                const char *agent, sl_error *err) {
  sl_vm_options opt = {.home = h->home, .base_disk = disk, .agent = agent,
                       .memory_mb = memory_mb_of(spec)};
  sl_vm *vm = NULL;
  int rc = sl_vm_create(&opt, id, &vm, err);
  if (rc < 0) return rc;
  char link[PATH_MAX];
  snprintf(link, sizeof link, "%s/%s", sl_vm_dir(vm), SL_AGENT_SOCKET_HOST);
  if (symlink("agent-0.sock", link) < 0) rc = sl_error_errno(err, errno, "symlink %s", link);
  /* NOTE: QEMU is recorded as both init and monitor, because a running
   * row needs a monitor pid and no sandlot-monitor watches VMs yet. */
  pid_t pid = sl_vm_pid(vm);
  if (rc == 0)
    rc = sl_sbstore_set_running(h->store, id, pid, sl_pid_start_time(pid), pid, "", err);
  if (rc < 0) sl_vm_delete(h->home, id, NULL);
  sl_vm_close(vm);
  return rc;
}

static int vm_create(sl_sandboxes *h, const sl_create_spec *spec, sl_sandbox_info *out,
                     sl_error *err) {
  if (spec->timeout_sec != 0)
    return sl_error_set(err, ENOTSUP, "create sandbox: timeouts are not supported for VMs yet");
  char disk[PATH_MAX], agent[PATH_MAX], id[SL_ID_SIZE], dir[SL_SANDBOX_PATH_MAX];
  if (boot_inputs(h, spec, disk, agent, err) < 0) return sl_error_wrap(err, "create sandbox");
  if (sl_sbstore_new_id(id, err) < 0) return -err->code;
  sl_sandbox_info info;
  fill_record(spec, id, &info);
  if (sl_sbstore_insert(h->store, &info, err) < 0) return sl_error_wrap(err, "create sandbox");
  sl_sandbox_dir(h, id, dir, sizeof dir);
  int64_t started = sl_monotonic_ms();
  int lock = sl_op_lock(dir, 0, err);
  int rc = lock < 0 ? -err->code : boot(h, spec, id, disk, agent, err);
  if (rc < 0) {
    sl_error ignored = {0};
    sl_sbstore_delete(h->store, id, &ignored);
  }
  sl_op_unlock(lock);
  if (rc < 0) return sl_error_wrap(err, "create sandbox %s", id);
  if (sl_sbstore_get(h->store, id, out, err) < 0) return sl_error_wrap(err, "create sandbox %s", id);
  SL_INFO("sandbox.created", "sandbox=%s op=create backend=vm template=%s qemu_pid=%d ms=%lld",
          id, out->template_name, (int)out->init_pid, (long long)(sl_monotonic_ms() - started));
  return 0;
}

static int with_vm(sl_sandboxes *h, const char *id, int (*fn)(sl_vm *, sl_error *),
                   sl_error *err) {
  sl_vm *vm = NULL;
  int rc = sl_vm_open(h->home, id, &vm, err);
  if (rc == 0) rc = fn(vm, err);
  sl_vm_close(vm);
  return rc;
}

static int vm_kill(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  int rc = with_vm(h, info->id, sl_vm_kill, err);
  if (rc == 0) rc = sl_sbstore_set_ended(h->store, info->id, -1, SIGKILL, "killed", err);
  return rc;
}

static int vm_freeze(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  int rc = with_vm(h, info->id, sl_vm_freeze, err);
  if (rc == 0) rc = sl_sbstore_set_state(h->store, info->id, SL_SANDBOX_FROZEN, err);
  return rc;
}

static int vm_thaw(sl_sandboxes *h, const sl_sandbox_info *info, sl_error *err) {
  int rc = with_vm(h, info->id, sl_vm_thaw, err);
  if (rc == 0) rc = sl_sbstore_set_state(h->store, info->id, SL_SANDBOX_RUNNING, err);
  return rc;
}

static int vm_set_timeout(sl_sandboxes *h, const sl_sandbox_info *info, int64_t seconds,
                          sl_error *err) {
  (void)h;
  (void)seconds;
  return sl_error_set(err, ENOTSUP, "timeouts are not supported for VMs yet: %s", info->id);
}

/* A VM whose QEMU is gone (the guest powered off, QEMU crashed) is marked
 * dead and its RAM file released. */
static int vm_gc(sl_sandboxes *h, const sl_sandbox_info *info, int *cleaned, sl_error *err) {
  *cleaned = 0;
  if (info->state == SL_SANDBOX_CREATING) return 0; /* being booted, or dropped on failure */
  sl_vm *vm = NULL;
  sl_error missing = {0};
  if (sl_vm_open(h->home, info->id, &vm, &missing) < 0) return 0; /* removed already */
  bool released = false;
  int rc = sl_vm_pid(vm) > 0 ? 0 : sl_vm_gc(vm, &released, err);
  bool gone = rc == 0 && sl_vm_pid(vm) == 0 && !sl_vm_is_paused(vm);
  sl_vm_close(vm);
  if (rc < 0 || !gone) return rc;
  *cleaned = released || info->state != SL_SANDBOX_DEAD;
  if (info->state == SL_SANDBOX_DEAD) return 0;
  SL_WARN("sandbox.gc", "sandbox=%s op=gc backend=vm note=\"QEMU gone, marking dead\"", info->id);
  rc = sl_sbstore_set_ended(h->store, info->id, -1, 0, "exited", err);
  return rc < 0 && err->code == ESRCH ? 0 : rc;
}

const sl_backend_ops sl_vm_backend = {
    .create = vm_create,
    .kill = vm_kill,
    .freeze = vm_freeze,
    .thaw = vm_thaw,
    .set_timeout = vm_set_timeout,
    .gc = vm_gc,
};
