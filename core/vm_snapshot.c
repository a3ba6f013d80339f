/* VM snapshots, forks, pause/resume and rollback.
 *
 * Guest RAM lives in a file. A sandbox booted from scratch (or resumed, or
 * rolled back) maps its own file on tmpfs with share=on, so with QEMU's
 * x-ignore-shared capability the migration stream carries only device
 * state, and a snapshot copies the RAM file (sparse) while the guest is
 * stopped. A fork maps the snapshot's frozen RAM file with share=off:
 * forks share the unchanged pages through the page cache and write to
 * private copies. No sandbox ever maps a snapshot's file shared, so the
 * file never changes under a fork. A fork's own RAM is private, so its
 * snapshot and pause put the RAM into the migration stream (slower). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "vm_image.h"
#include "vm_internal.h"
#include "vm_util.h"

/* The migration speed limit; QEMU's default of 128 MiB/s applies even to a
 * stopped guest migrating into a file. */
#define MIGRATE_MAX_BANDWIDTH (1ll << 40)

/* QMP helpers. */

static json_t *capability(const char *name, bool on) {
  return json_pack("{s:s, s:b}", "capability", name, "state", (int)on);
}

int vm_qmp_prepare_migration(sl_qmp_sync *q, bool ignore_shared, sl_error *err) {
  json_t *caps = json_pack("{s:[o, o]}", "capabilities", capability("events", true),
                           capability("x-ignore-shared", ignore_shared));
  int rc = sl_qmp_sync_execute(q, "migrate-set-capabilities", caps, NULL, VM_QMP_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  json_t *params = json_pack("{s:I}", "max-bandwidth", (json_int_t)MIGRATE_MAX_BANDWIDTH);
  return sl_qmp_sync_execute(q, "migrate-set-parameters", params, NULL, VM_QMP_TIMEOUT_MS, err);
}

typedef struct migration_result {
  char status[32];
} migration_result;

static bool match_migration_end(const char *event, json_t *data, void *arg) {
  if (strcmp(event, "MIGRATION") != 0) return false;
  const char *status = json_string_value(json_object_get(data, "status"));
  if (status == NULL || (strcmp(status, "completed") != 0 && strcmp(status, "failed") != 0 &&
                         strcmp(status, "cancelled") != 0))
    return false;
  snprintf(((migration_result *)arg)->status, sizeof ((migration_result *)arg)->status, "%s",
           status);
  return true;
}

/* The error text QEMU keeps for a failed migration (query-migrate). */
static void add_migration_error(sl_qmp_sync *q, sl_error *err) {
  json_t *info = NULL;
  sl_error ignored = {0};
  if (sl_qmp_sync_execute(q, "query-migrate", NULL, &info, VM_QMP_TIMEOUT_MS, &ignored) < 0)
    return;
  const char *desc = json_string_value(json_object_get(info, "error-desc"));
  if (desc != NULL) {
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, ": %s", desc);
  }
  json_decref(info);
}

/* QEMU 7.2 sends the MIGRATION "completed" event while the source is still
 * in the finish-migrate run state, in which cont fails with "Migration is
 * not finalized yet". Wait until the run state has moved on. */
static int wait_migration_finalized(sl_qmp_sync *q, sl_error *err) {
  double deadline = sl_clock_ms() + VM_QMP_TIMEOUT_MS;
  for (;;) {
    json_t *status = NULL;
    int rc = sl_qmp_sync_execute(q, "query-status", NULL, &status, VM_QMP_TIMEOUT_MS, err);
    if (rc < 0) return rc;
    bool finishing =
        strcmp(json_string_value(json_object_get(status, "status")) ?: "", "finish-migrate") == 0;
    json_decref(status);
    if (!finishing) return 0;
    if (sl_clock_ms() > deadline)
      return sl_error_set(err, ETIMEDOUT, "timed out waiting for the end of finish-migrate");
    usleep(500);
  }
}

int vm_qmp_migrate_fd(sl_qmp_sync *q, int fd, bool incoming, sl_error *err) {
  static const char fdname[] = "sandlot-state";
  int rc = sl_qmp_sync_send_fd(q, fdname, fd, VM_QMP_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  json_t *args = json_pack("{s:s}", "uri", "fd:sandlot-state");
  rc = sl_qmp_sync_execute(q, incoming ? "migrate-incoming" : "migrate", args, NULL,
                           VM_QMP_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  migration_result result = {""};
  rc = sl_qmp_sync_wait_event(q, match_migration_end, &result, VM_MIGRATE_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  if (strcmp(result.status, "completed") != 0) {
    rc = sl_error_set(err, EIO, "migration %s", result.status);
    if (!incoming) add_migration_error(q, err);
    return rc;
  }
  return incoming ? 0 : wait_migration_finalized(q, err);
}

/* Small helpers. */

static const char *conf_str(json_t *conf, const char *key) {
  return json_string_value(json_object_get(conf, key));
}

static bool ram_shared(const sl_vm *vm) {
  const char *mode = conf_str(vm->conf, "ram_mode");
  return mode != NULL && strcmp(mode, "shared") == 0;
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The machine keys that must match between a state file and its QEMU. */
static const char *const machine_keys[] = {"memory_mb", "vcpus", "agent_ports", "accel",
                                           "kernel", "initrd", "cmdline", NULL};

static json_t *machine_of(json_t *conf) {
  json_t *m = json_object();
  for (size_t i = 0; m && machine_keys[i]; i++)
    json_object_set(m, machine_keys[i], json_object_get(conf, machine_keys[i]));
  return m;
}

/* Snapshot. */

typedef struct capture_paths {
  char dir[VM_PATH_MAX];
  char state[VM_PATH_MAX];
  char ram[VM_PATH_MAX];
  char disk[VM_PATH_MAX];
} capture_paths;

static int capture_paths_of(const char *dir, capture_paths *p, sl_error *err) {
  snprintf(p->dir, sizeof p->dir, "%s", dir);
  int rc = vm_path(p->state, dir, "state", err);
  if (rc == 0) rc = vm_path(p->ram, dir, "ram", err);
  if (rc == 0) rc = vm_path(p->disk, dir, "disk.qcow2", err);
  return rc;
}

/* Migrate the stopped guest's state into the new file `path`. */
static int save_state(sl_qmp_sync *q, const char *path, sl_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return sl_error_errno(err, errno, "create %s", path);
  int rc = vm_qmp_migrate_fd(q, fd, false, err);
  close(fd);
  return rc;
}

/* The work done while the guest is stopped: disk, RAM, device state. */
static int capture_stopped(sl_vm *vm, sl_qmp_sync *q, const capture_paths *p, bool copy_disk,
                           sl_vm_snapshot_stats *st, sl_error *err) {
  char disk[VM_PATH_MAX];
  int rc = vm_path(disk, vm->dir, "disk.qcow2", err);
  double t = sl_clock_ms();
  /* QEMU flushes the qcow2 metadata on stop, so the file is consistent. */
  if (rc == 0 && copy_disk) rc = sl_copy_sparse(disk, p->disk, err);
  st->disk_ms = sl_clock_ms() - t;
  t = sl_clock_ms();
  if (rc == 0 && ram_shared(vm)) rc = sl_copy_sparse(conf_str(vm->conf, "ram_path"), p->ram, err);
  st->ram_ms = sl_clock_ms() - t;
  t = sl_clock_ms();
  if (rc == 0) rc = save_state(q, p->state, err);
  st->state_ms = sl_clock_ms() - t;
  st->state_bytes = file_size(p->state);
  return rc;
}

static int query_running(sl_qmp_sync *q, bool *running, sl_error *err) {
  json_t *status = NULL;
  int rc = sl_qmp_sync_execute(q, "query-status", NULL, &status, VM_QMP_TIMEOUT_MS, err);
  *running = rc == 0 && json_is_true(json_object_get(status, "running"));
  json_decref(status);
  return rc;
}

/* Stop the guest, capture it into `p`, then either continue it (snapshot:
 * `keep_running`) or end QEMU (pause). A guest that was frozen before
 * stays frozen after a snapshot. A failed capture continues the guest in
 * both cases, so the sandbox is left as it was. */
static int stop_capture_cont(sl_vm *vm, const capture_paths *p, bool copy_disk,
                             bool keep_running, sl_vm_snapshot_stats *st, sl_error *err) {
  sl_qmp_sync *q = NULL;
  bool was_running = false;
  int rc = vm_qmp_connect(vm, &q, err);
  if (rc == 0) rc = query_running(q, &was_running, err);
  if (rc == 0) rc = vm_qmp_prepare_migration(q, ram_shared(vm), err);
  if (rc < 0) {
    sl_qmp_sync_close(q);
    return rc;
  }
  double start = sl_clock_ms();
  rc = sl_qmp_sync_execute(q, "stop", NULL, NULL, VM_QMP_TIMEOUT_MS, err);
  if (rc == 0) rc = capture_stopped(vm, q, p, copy_disk, st, err);
  bool resume = was_running && (keep_running || rc < 0);
  sl_error cont_err = {0};
  int cont_rc = resume ? sl_qmp_sync_execute(q, "cont", NULL, NULL, VM_QMP_TIMEOUT_MS, &cont_err)
                       : 0;
  st->pause_ms = sl_clock_ms() - start;
  if (cont_rc < 0) SL_ERROR("vm.cont_failed", "sandbox=%s error=\"%s\"", vm->id, cont_err.msg);
  if (rc == 0 && cont_rc < 0) {
    *err = cont_err;
    rc = cont_rc;
  }
  if (rc == 0 && !keep_running)
    rc = sl_qmp_sync_execute(q, "quit", NULL, NULL, VM_QMP_TIMEOUT_MS, err);
  sl_qmp_sync_close(q);
  return rc;
}

static int write_snapshot_conf(sl_vm *vm, const char *dir, sl_error *err) {
  json_t *conf = machine_of(vm->conf);
  if (conf == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  json_object_set_new(conf, "ram_in_state", json_boolean(!ram_shared(vm)));
  json_object_set_new(conf, "source", json_string(vm->id));
  json_object_set(conf, "uses", json_object_get(vm->conf, "uses"));
  int rc = vm_conf_save(dir, conf, err);
  json_decref(conf);
  return rc;
}

int sl_vm_snapshot(sl_vm *vm, const char *snap_id, sl_vm_snapshot_stats *stats,
                   sl_error *err) {
  sl_vm_snapshot_stats local = {0};
  sl_vm_snapshot_stats *st = stats ? stats : &local;
  memset(st, 0, sizeof *st);
  if (snap_id == NULL || snap_id[0] == '\0' || strchr(snap_id, '/') || snap_id[0] == '.')
    return sl_error_set(err, EINVAL, "invalid snapshot id: \"%s\"", snap_id ? snap_id : "");
  int rc = vm_require_running(vm, err);
  if (rc < 0) return sl_error_wrap(err, "snapshot");
  char dir[VM_PATH_MAX];
  vm_snapshot_dir(vm->home, snap_id, dir, sizeof dir);
  capture_paths p;
  rc = capture_paths_of(dir, &p, err);
  char parent[VM_PATH_MAX];
  if (rc == 0) rc = sl_path_format(parent, sizeof parent, err, "%s/snapshots", vm->home);
  if (rc == 0) rc = sl_mkdir_p(parent, 0700, err);
  if (rc == 0 && mkdir(dir, 0700) < 0)
    rc = errno == EEXIST ? sl_error_set(err, EEXIST, "snapshot exists: %s", snap_id)
                         : sl_error_errno(err, errno, "mkdir %s", dir);
  if (rc < 0) return sl_error_wrap(err, "snapshot %s", vm->id);
  rc = write_snapshot_conf(vm, dir, err);
  if (rc == 0) rc = stop_capture_cont(vm, &p, true, true, st, err);
  if (rc < 0) {
    sl_remove_tree(dir, NULL);
    return sl_error_wrap(err, "snapshot %s", vm->id);
  }
  SL_INFO("vm.snapshot", "sandbox=%s snapshot=%s pause_ms=%.1f disk_ms=%.1f ram_ms=%.1f "
          "state_ms=%.1f state_bytes=%lld", vm->id, snap_id, st->pause_ms, st->disk_ms,
          st->ram_ms, st->state_ms, st->state_bytes);
  return 0;
}

/* Restore. */

/* Load `state` into the freshly launched, incoming QEMU of `vm` and
 * continue it. */
static int load_state(sl_vm *vm, const char *state, bool ram_in_state, sl_error *err) {
  int fd = open(state, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", state);
  sl_qmp_sync *q = NULL;
  int rc = vm_qmp_connect(vm, &q, err);
  if (rc == 0) rc = vm_qmp_prepare_migration(q, !ram_in_state, err);
  if (rc == 0) rc = vm_qmp_migrate_fd(q, fd, true, err);
  close(fd);
  /* An incoming QEMU stays paused after the migration; start it. */
  if (rc == 0) rc = sl_qmp_sync_execute(q, "cont", NULL, NULL, VM_QMP_TIMEOUT_MS, err);
  sl_qmp_sync_close(q);
  if (rc < 0) vm_add_console_tail(vm, err);
  return rc;
}

/* Give a restored guest fresh entropy and its own hostname, so forks of one
 * snapshot neither share /dev/urandom output nor a name. */
static int refresh_identity(sl_vm *vm, sl_error *err) {
  unsigned char entropy[64];
  if (getrandom(entropy, sizeof entropy, 0) != (ssize_t)sizeof entropy)
    return sl_error_errno(err, errno, "getrandom");
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, SL_VM_AGENT_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  int exit_code = 0;
  rc = sl_agent_post_restore(&conn, vm->id, entropy, sizeof entropy, NULL,
                             SL_VM_AGENT_TIMEOUT_MS, &exit_code, err);
  sl_vm_agent_close(&conn, lock);
  if (rc < 0) return sl_error_wrap(err, "post-restore of %s", vm->id);
  return 0;
}

/* Launch an incoming QEMU for `vm` and load `state`; kill QEMU on failure. */
static int launch_and_load(sl_vm *vm, const char *state, bool ram_in_state, sl_error *err) {
  int rc = vm_launch(vm, true, err);
  if (rc == 0) rc = load_state(vm, state, ram_in_state, err);
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

static int load_snapshot_conf(const char *home, const char *snap_id, json_t **conf,
                              capture_paths *p, sl_error *err) {
  if (snap_id == NULL || snap_id[0] == '\0' || strchr(snap_id, '/') || snap_id[0] == '.')
    return sl_error_set(err, EINVAL, "invalid snapshot id: \"%s\"", snap_id ? snap_id : "");
  char dir[VM_PATH_MAX];
  vm_snapshot_dir(home, snap_id, dir, sizeof dir);
  int rc = vm_conf_load(dir, conf, err);
  if (rc == -ENOENT) return sl_error_set(err, ENOENT, "snapshot not found: %s", snap_id);
  if (rc == 0) rc = capture_paths_of(dir, p, err);
  if (rc == 0 && !sl_path_exists(p->state))
    rc = sl_error_set(err, ENOENT, "snapshot %s has no state file", snap_id);
  if (rc < 0) {
    json_decref(*conf);
    *conf = NULL;
  }
  return rc;
}

/* Point `vm`'s conf at snapshot `snap_id`: its machine, and RAM either
 * private from the snapshot (fork) or copied to a live file (rollback). */
static int conf_from_snapshot(sl_vm *vm, json_t *snap, const capture_paths *p,
                              const char *snap_id, bool copy_ram, sl_error *err) {
  json_t *conf = machine_of(snap);
  if (conf == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  bool ram_in_state = json_is_true(json_object_get(snap, "ram_in_state"));
  char live[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, live, sizeof live);
  bool shared = copy_ram || ram_in_state;
  json_object_set_new(conf, "ram_mode", json_string(shared ? "shared" : "private"));
  json_object_set_new(conf, "ram_path", json_string(shared ? live : p->ram));
  json_object_set_new(conf, "paused", json_false());
  json_object_set_new(conf, "uses", json_string(snap_id));
  json_decref(vm->conf);
  vm->conf = conf;
  int rc = 0;
  unlink(live);
  if (copy_ram && !ram_in_state) rc = sl_copy_sparse(p->ram, live, err);
  return rc;
}

/* The steps of a fork after its directory exists, with their times from
 * `start` in `st`. On failure QEMU is gone; the caller removes the files. */
static int fork_steps(sl_vm *vm, json_t *snap, const capture_paths *p, const char *snap_id,
                      double start, sl_vm_fork_stats *st, sl_error *err) {
  char disk[VM_PATH_MAX];
  bool ram_in_state = json_is_true(json_object_get(snap, "ram_in_state"));
  int rc = conf_from_snapshot(vm, snap, p, snap_id, false, err);
  if (rc == 0) rc = vm_path(disk, vm->dir, "disk.qcow2", err);
  if (rc == 0) rc = sl_vm_disk_overlay(p->disk, disk, err);
  if (rc == 0) rc = vm_conf_save(vm->dir, vm->conf, err);
  st->disk_ms = sl_clock_ms() - start;
  if (rc == 0) rc = vm_launch(vm, true, err);
  st->launch_ms = sl_clock_ms() - start;
  if (rc == 0) rc = load_state(vm, p->state, ram_in_state, err);
  st->running_ms = sl_clock_ms() - start;
  if (rc == 0) rc = refresh_identity(vm, err);
  st->ready_ms = sl_clock_ms() - start;
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

static int make_sandbox_dir(sl_vm *vm, sl_error *err) {
  if (mkdir(vm->dir, 0700) == 0) return 0;
  if (errno == EEXIST) return sl_error_set(err, EEXIST, "sandbox exists: %s", vm->id);
  return sl_error_errno(err, errno, "mkdir %s", vm->dir);
}

int sl_vm_fork(const char *home, const char *snap_id, const char *id,
               sl_vm_fork_stats *stats, sl_vm **out, sl_error *err) {
  if (id == NULL || id[0] == '\0' || strchr(id, '/') || id[0] == '.')
    return sl_error_set(err, EINVAL, "invalid sandbox id: \"%s\"", id ? id : "");
  json_t *snap = NULL;
  capture_paths p;
  int rc = load_snapshot_conf(home, snap_id, &snap, &p, err);
  if (rc < 0) return sl_error_wrap(err, "fork %s", id);
  sl_vm *vm = vm_alloc(home, id, err);
  if (vm == NULL) {
    json_decref(snap);
    return -ENOMEM;
  }
  double start = sl_clock_ms();
  sl_vm_fork_stats st = {0};
  rc = make_sandbox_dir(vm, err);
  if (rc == 0) {
    rc = fork_steps(vm, snap, &p, snap_id, start, &st, err);
    if (rc < 0) sl_remove_tree(vm->dir, NULL);
  }
  json_decref(snap);
  if (rc < 0) {
    sl_vm_close(vm);
    return sl_error_wrap(err, "fork %s from %s", id, snap_id);
  }
  if (stats != NULL) *stats = st;
  SL_INFO("vm.forked",
          "sandbox=%s snapshot=%s pid=%d disk_ms=%.1f launch_ms=%.1f running_ms=%.1f "
          "ready_ms=%.1f",
          id, snap_id, (int)vm->pid, st.disk_ms, st.launch_ms, st.running_ms, st.ready_ms);
  *out = vm;
  return 0;
}

/* Pause and resume. */

int sl_vm_pause(sl_vm *vm, sl_error *err) {
  int rc = vm_require_running(vm, err);
  if (rc < 0) return sl_error_wrap(err, "pause");
  capture_paths p;
  rc = capture_paths_of(vm->dir, &p, err);
  if (rc < 0) return rc;
  unlink(p.state);
  unlink(p.ram);
  sl_vm_snapshot_stats st;
  rc = stop_capture_cont(vm, &p, false, false, &st, err);
  if (rc == 0) rc = vm_wait_exit(vm, 10000, err);
  if (rc < 0) {
    unlink(p.state);
    unlink(p.ram);
    return sl_error_wrap(err, "pause %s", vm->id);
  }
  bool ram_in_state = !ram_shared(vm);
  if (!ram_in_state) unlink(conf_str(vm->conf, "ram_path"));
  json_object_set_new(vm->conf, "paused", json_true());
  json_object_set_new(vm->conf, "ram_in_state", json_boolean(ram_in_state));
  rc = vm_conf_save(vm->dir, vm->conf, err);
  SL_INFO("vm.paused", "sandbox=%s state_bytes=%lld", vm->id, st.state_bytes);
  return rc;
}

int sl_vm_resume(sl_vm *vm, sl_error *err) {
  if (!sl_vm_is_paused(vm)) return sl_error_set(err, EINVAL, "sandbox is not paused: %s", vm->id);
  capture_paths p;
  int rc = capture_paths_of(vm->dir, &p, err);
  if (rc < 0) return rc;
  bool ram_in_state = json_is_true(json_object_get(vm->conf, "ram_in_state"));
  char live[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, live, sizeof live);
  unlink(live);
  if (!ram_in_state) rc = sl_copy_sparse(p.ram, live, err);
  json_object_set_new(vm->conf, "ram_mode", json_string("shared"));
  json_object_set_new(vm->conf, "ram_path", json_string(live));
  if (rc == 0) rc = launch_and_load(vm, p.state, ram_in_state, err);
  if (rc < 0) {
    unlink(live);
    json_decref(vm->conf);
    vm->conf = NULL;
    vm_conf_load(vm->dir, &vm->conf, NULL);
    return sl_error_wrap(err, "resume %s", vm->id);
  }
  json_object_set_new(vm->conf, "paused", json_false());
  json_object_del(vm->conf, "ram_in_state");
  unlink(p.state);
  unlink(p.ram);
  return vm_conf_save(vm->dir, vm->conf, err);
}

/* Rollback. */

static int replace_disk(sl_vm *vm, const capture_paths *p, sl_error *err) {
  char disk[VM_PATH_MAX], old[VM_PATH_MAX];
  int rc = vm_path(disk, vm->dir, "disk.qcow2", err);
  if (rc == 0) rc = vm_path(old, vm->dir, "disk.qcow2.old", err);
  if (rc == 0 && rename(disk, old) < 0) rc = sl_error_errno(err, errno, "rename %s", disk);
  if (rc < 0) return rc;
  rc = sl_vm_disk_overlay(p->disk, disk, err);
  if (rc < 0) {
    rename(old, disk);
    return rc;
  }
  unlink(old);
  return 0;
}

int sl_vm_rollback(sl_vm *vm, const char *snap_id, sl_error *err) {
  json_t *snap = NULL;
  capture_paths p;
  int rc = load_snapshot_conf(vm->home, snap_id, &snap, &p, err);
  if (rc < 0) return sl_error_wrap(err, "rollback %s", vm->id);
  rc = sl_vm_kill(vm, err);
  if (rc == 0) rc = replace_disk(vm, &p, err);
  if (rc == 0) rc = conf_from_snapshot(vm, snap, &p, snap_id, true, err);
  if (rc == 0) rc = vm_conf_save(vm->dir, vm->conf, err);
  if (rc == 0)
    rc = launch_and_load(vm, p.state, json_is_true(json_object_get(snap, "ram_in_state")), err);
  if (rc == 0) rc = refresh_identity(vm, err);
  json_decref(snap);
  char state[VM_PATH_MAX];
  if (vm_path(state, vm->dir, "state", NULL) == 0) unlink(state);
  if (vm_path(state, vm->dir, "ram", NULL) == 0) unlink(state);
  if (rc < 0) return sl_error_wrap(err, "rollback %s to %s", vm->id, snap_id);
  SL_INFO("vm.rollback", "sandbox=%s snapshot=%s pid=%d", vm->id, snap_id, (int)vm->pid);
  return 0;
}

/* Deletion. */

int sl_vm_delete(const char *home, const char *id, sl_error *err) {
  sl_vm *vm = NULL;
  int rc = sl_vm_open(home, id, &vm, err);
  if (rc < 0) return rc;
  rc = sl_vm_kill(vm, err);
  char ram[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, ram, sizeof ram);
  unlink(ram);
  if (rc == 0) rc = sl_remove_tree(vm->dir, err);
  sl_vm_close(vm);
  if (rc < 0) return sl_error_wrap(err, "delete %s", id);
  return 0;
}

/* True when a vm.json under `parent`/<entry> names `snap_id` in "uses". */
static bool any_uses(const char *parent, const char *snap_id, char *user, size_t user_len) {
  DIR *d = opendir(parent);
  if (d == NULL) return false;
  struct dirent *e;
  bool found = false;
  while (!found && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char dir[VM_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", parent, e->d_name);
    json_t *conf = NULL;
    if (vm_conf_load(dir, &conf, NULL) < 0) continue;
    const char *uses = conf_str(conf, "uses");
    if (uses != NULL && strcmp(uses, snap_id) == 0) {
      snprintf(user, user_len, "%s", e->d_name);
      found = true;
    }
    json_decref(conf);
  }
  closedir(d);
  return found;
}

int sl_vm_snapshot_delete(const char *home, const char *snap_id, sl_error *err) {
  json_t *snap = NULL;
  capture_paths p;
  int rc = load_snapshot_conf(home, snap_id, &snap, &p, err);
  json_decref(snap);
  if (rc < 0) return rc;
  char parent[VM_PATH_MAX], user[256];
  snprintf(parent, sizeof parent, "%s/sandboxes", home);
  bool busy = any_uses(parent, snap_id, user, sizeof user);
  if (!busy) {
    snprintf(parent, sizeof parent, "%s/snapshots", home);
    busy = any_uses(parent, snap_id, user, sizeof user);
  }
  if (busy) return sl_error_set(err, EBUSY, "snapshot %s is in use by %s", snap_id, user);
  return sl_remove_tree(p.dir, err);
}
