/* VM snapshots: migration to a file, the RAM copy, and the switch of the
 * disk overlay.
 *
 * Guest RAM lives in a file. A sandbox booted from scratch (or resumed, or
 * rolled back) maps its own file on tmpfs with share=on, so with QEMU's
 * x-ignore-shared capability the migration stream carries only device
 * state, and a snapshot copies the RAM file (sparse) while the guest is
 * stopped. A fork maps the snapshot's frozen RAM file with share=off:
 * forks share the unchanged pages through the page cache and write to
 * private copies. A fork's own RAM is private, so its snapshot and pause
 * put the RAM into the migration stream (slower).
 *
 * The disk is not copied. While the guest is stopped, the active overlay
 * gets a second name, the snapshot's disk, and QEMU continues on a new
 * overlay stacked on it (blockdev-add, then blockdev-snapshot). Nothing
 * writes to the old overlay after that: QEMU keeps it open only as a
 * backing file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The machine keys that must match between a state file and its QEMU. */
static const char *const machine_keys[] = {"memory_mb", "vcpus", "agent_ports", "accel",
                                           "kernel", "initrd", "cmdline", NULL};

json_t *vm_machine_of(json_t *conf) {
  json_t *m = json_object();
  for (size_t i = 0; m && machine_keys[i]; i++)
    json_object_set(m, machine_keys[i], json_object_get(conf, machine_keys[i]));
  return m;
}

/* The disk switch. */

typedef struct disk_switch {
  char next_path[VM_PATH_MAX]; /* the new active overlay */
  char next_node[32];
  int next_seq;
  bool linked, created, added;
} disk_switch;

static int blockdev_add(sl_qmp_sync *q, const disk_switch *d, sl_error *err) {
  json_t *args = json_pack("{s:s, s:s, s:{s:s, s:s}, s:n}", "driver", "qcow2", "node-name",
                           d->next_node, "file", "driver", "file", "filename", d->next_path,
                           "backing");
  if (args == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  return sl_qmp_sync_execute(q, "blockdev-add", args, NULL, VM_QMP_TIMEOUT_MS, err);
}

static int blockdev_snapshot(sl_qmp_sync *q, const char *node, const char *overlay,
                             sl_error *err) {
  json_t *args = json_pack("{s:s, s:s}", "node", node, "overlay", overlay);
  if (args == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  return sl_qmp_sync_execute(q, "blockdev-snapshot", args, NULL, VM_QMP_TIMEOUT_MS, err);
}

/* Undo the steps of a switch that failed, newest first. */
static void undo_switch(sl_qmp_sync *q, const disk_switch *d, const char *frozen) {
  sl_error ignored = {0};
  if (d->added)
    sl_qmp_sync_execute(q, "blockdev-del", json_pack("{s:s}", "node-name", d->next_node), NULL,
                        VM_QMP_TIMEOUT_MS, &ignored);
  if (d->created) unlink(d->next_path);
  if (d->linked) unlink(frozen);
}

/* Give the active overlay the second name `frozen` and continue on a new
 * overlay stacked on it. The guest must be stopped (QEMU flushed the
 * overlay on stop). The new overlay names `frozen` as its backing file,
 * so its chain never refers to the sandbox's folder. The old name stays
 * until the next launch, because QEMU's node for it keeps that name. */
static int switch_disk(sl_vm *vm, sl_qmp_sync *q, const char *frozen, sl_error *err) {
  char active[VM_PATH_MAX], name[32];
  int rc = vm_disk_path(vm, active, err);
  if (rc < 0) return rc;
  disk_switch d = {.next_seq = (int)json_integer_value(json_object_get(vm->conf, "disk_seq")) + 1};
  snprintf(name, sizeof name, "disk-%d.qcow2", d.next_seq);
  snprintf(d.next_node, sizeof d.next_node, "disk-%d", d.next_seq);
  rc = vm_path(d.next_path, vm->dir, name, err);
  if (rc == 0 && link(active, frozen) < 0) rc = sl_error_errno(err, errno, "link %s to %s", active, frozen);
  d.linked = rc == 0;
  if (rc == 0) rc = sl_vm_disk_overlay(frozen, d.next_path, err);
  d.created = rc == 0;
  if (rc == 0) rc = blockdev_add(q, &d, err);
  d.added = rc == 0;
  const char *node = vm_conf_str(vm->conf, "disk_node");
  if (rc == 0) rc = blockdev_snapshot(q, node ? node : "disk", d.next_node, err);
  if (rc < 0) {
    undo_switch(q, &d, frozen);
    return sl_error_wrap_subject(err, "switch the disk overlay", vm->id);
  }
  json_object_set_new(vm->conf, "disk", json_string(name));
  json_object_set_new(vm->conf, "disk_seq", json_integer(d.next_seq));
  json_object_set_new(vm->conf, "disk_node", json_string(d.next_node));
  /* A lost vm.json would make a later launch open the frozen overlay; the
   * snapshot fails instead, and the caller ends the sandbox. */
  return vm_conf_save(vm->dir, vm->conf, err);
}

/* Snapshot. */

typedef struct capture_paths {
  char state[VM_PATH_MAX];
  char ram[VM_PATH_MAX];
} capture_paths;

static int capture_paths_of(const char *dir, capture_paths *p, sl_error *err) {
  int rc = vm_path(p->state, dir, "state", err);
  if (rc == 0) rc = vm_path(p->ram, dir, "ram", err);
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

/* What a stopped capture writes: RAM and state into `memory` (NULL for
 * none), the disk to `frozen_disk` (NULL to keep it). */
typedef struct capture {
  const capture_paths *memory;
  const char *frozen_disk;
} capture;

/* The work done while the guest is stopped. The disk switch comes first,
 * because the migration leaves QEMU's block nodes inactive until cont. */
static int capture_stopped(sl_vm *vm, sl_qmp_sync *q, const capture *c,
                           sl_vm_snapshot_stats *st, sl_error *err) {
  double t = sl_clock_ms();
  int rc = c->frozen_disk ? switch_disk(vm, q, c->frozen_disk, err) : 0;
  st->disk_ms = sl_clock_ms() - t;
  if (rc < 0 || c->memory == NULL) return rc;
  t = sl_clock_ms();
  if (vm_ram_shared(vm))
    rc = sl_copy_sparse(vm_conf_str(vm->conf, "ram_path"), c->memory->ram, err);
  st->ram_ms = sl_clock_ms() - t;
  t = sl_clock_ms();
  if (rc == 0) rc = save_state(q, c->memory->state, err);
  st->state_ms = sl_clock_ms() - t;
  st->state_bytes = file_size(c->memory->state);
  return rc;
}

/* A fork maps its snapshot's RAM file privately, and a migration reads
 * every page of it. Pages in the file's holes that nothing has read yet
 * then fault in one by one from the file system, inside the pause: 0.9 to
 * 1.1 s for a 256 MiB guest whose snapshot file had 130 MiB of data. So
 * the file is read through before the guest stops, which puts its pages
 * in the page cache. That takes 0.4 to 0.5 s outside the pause, and the
 * pause drops to 60 to 75 ms (measured on ext4, Linux 6.18, with a
 * timing program that bench/run.lua later replaced).
 * readahead(2) did not help, and sendfile(2) to /dev/null was slower.
 * Nothing to do for a VM whose RAM is its own shared file. Returns the
 * time taken in ms. */
static double warm_private_ram(sl_vm *vm) {
  const char *path = vm_conf_str(vm->conf, "ram_path");
  if (vm_ram_shared(vm) || path == NULL) return 0;
  double start = sl_clock_ms();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  const size_t chunk = 1u << 20;
  char *buf = fd >= 0 ? malloc(chunk) : NULL;
  while (buf != NULL && read(fd, buf, chunk) > 0) {
  }
  free(buf);
  if (fd >= 0) close(fd);
  return sl_clock_ms() - start;
}

static int query_running(sl_qmp_sync *q, bool *running, sl_error *err) {
  json_t *status = NULL;
  int rc = sl_qmp_sync_execute(q, "query-status", NULL, &status, VM_QMP_TIMEOUT_MS, err);
  *running = rc == 0 && json_is_true(json_object_get(status, "running"));
  json_decref(status);
  return rc;
}

/* Continue a guest that ran before the capture, and report a failed cont
 * only when the capture itself succeeded. */
static int cont_after(sl_vm *vm, sl_qmp_sync *q, bool was_running, int rc, sl_error *err) {
  if (!was_running) return rc;
  sl_error cont_err = {0};
  int cont_rc = sl_qmp_sync_execute(q, "cont", NULL, NULL, VM_QMP_TIMEOUT_MS, &cont_err);
  if (cont_rc == 0) return rc;
  SL_ERROR("vm.cont_failed", "sandbox=%s error=\"%s\"", vm->id, cont_err.msg);
  if (rc == 0) *err = cont_err;
  return rc == 0 ? cont_rc : rc;
}

/* Stop the guest, capture it, then either continue it (`keep_running`) or
 * end QEMU (pause). A guest that was frozen before stays frozen after a
 * snapshot. A failed capture continues the guest in both cases, so the
 * sandbox is left as it was. */
static int stop_capture(sl_vm *vm, const capture *c, bool keep_running,
                        sl_vm_snapshot_stats *st, sl_error *err) {
  sl_qmp_sync *q = NULL;
  bool was_running = false;
  int rc = vm_qmp_connect(vm, &q, err);
  if (rc == 0) rc = query_running(q, &was_running, err);
  if (rc == 0 && c->memory != NULL) rc = vm_qmp_prepare_migration(q, vm_ram_shared(vm), err);
  if (rc < 0) {
    sl_qmp_sync_close(q);
    return rc;
  }
  if (c->memory != NULL) st->warm_ms = warm_private_ram(vm);
  double start = sl_clock_ms();
  rc = sl_qmp_sync_execute(q, "stop", NULL, NULL, VM_QMP_TIMEOUT_MS, err);
  if (rc == 0) rc = capture_stopped(vm, q, c, st, err);
  if (keep_running || rc < 0) rc = cont_after(vm, q, was_running, rc, err);
  st->pause_ms = sl_clock_ms() - start;
  if (rc == 0 && !keep_running)
    rc = sl_qmp_sync_execute(q, "quit", NULL, NULL, VM_QMP_TIMEOUT_MS, err);
  sl_qmp_sync_close(q);
  return rc;
}

static int write_image_conf(sl_vm *vm, const char *dir, sl_error *err) {
  json_t *conf = vm_machine_of(vm->conf);
  if (conf == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  json_object_set_new(conf, "ram_in_state", json_boolean(!vm_ram_shared(vm)));
  json_object_set_new(conf, "source", json_string(vm->id));
  int rc = vm_conf_save(dir, conf, err);
  json_decref(conf);
  return rc;
}

static int check_image(const sl_vm_image *image, sl_error *err) {
  if (image == NULL || image->disk == NULL || image->disk[0] != '/')
    return sl_error_set(err, EINVAL, "invalid snapshot: its disk needs an absolute path");
  if (sl_path_exists(image->disk))
    return sl_error_set(err, EEXIST, "snapshot disk exists: %s", image->disk);
  return 0;
}

/* A files-only snapshot contains what the guest's file systems have on
 * the disk, so their dirty pages are written out first. A frozen guest
 * cannot do that: its snapshot gets the disk as it is. */
static int sync_guest(sl_vm *vm, sl_error *err) {
  char status[32];
  int rc = sl_vm_query_status(vm, status, sizeof status, err);
  if (rc < 0 || strcmp(status, "running") != 0) return rc;
  return vm_agent_run(vm, "sync", err);
}

/* Remove what a failed snapshot wrote into the image folder. */
static void clear_image(const char *dir) {
  static const char *const names[] = {"vm.json", "state", "ram", NULL};
  char path[VM_PATH_MAX];
  for (size_t i = 0; dir != NULL && names[i]; i++)
    if (vm_path(path, dir, names[i], NULL) == 0) unlink(path);
}

int sl_vm_snapshot(sl_vm *vm, const sl_vm_image *image, sl_vm_snapshot_stats *stats,
                   sl_error *err) {
  sl_vm_snapshot_stats local = {0};
  sl_vm_snapshot_stats *st = stats ? stats : &local;
  memset(st, 0, sizeof *st);
  int rc = check_image(image, err);
  if (rc == 0) rc = vm_reload_conf(vm, err);
  if (rc == 0) rc = vm_require_running(vm, err);
  if (rc < 0) return sl_error_wrap_subject(err, "snapshot", vm->id);
  capture_paths p;
  capture c = {.memory = NULL, .frozen_disk = image->disk};
  if (image->dir != NULL) {
    rc = capture_paths_of(image->dir, &p, err);
    if (rc == 0) rc = write_image_conf(vm, image->dir, err);
    c.memory = &p;
  } else {
    rc = sync_guest(vm, err);
  }
  if (rc == 0) rc = stop_capture(vm, &c, true, st, err);
  if (rc < 0) {
    clear_image(image->dir);
    return sl_error_wrap_subject(err, "snapshot", vm->id);
  }
  SL_INFO("vm.snapshot", "sandbox=%s disk=%s pause_ms=%.1f disk_ms=%.1f ram_ms=%.1f "
          "state_ms=%.1f state_bytes=%lld warm_ms=%.1f", vm->id, image->disk, st->pause_ms,
          st->disk_ms, st->ram_ms, st->state_ms, st->state_bytes, st->warm_ms);
  return 0;
}

/* Pause. */

int sl_vm_pause(sl_vm *vm, bool files_only, sl_error *err) {
  int rc = vm_reload_conf(vm, err);
  if (rc == 0) rc = vm_require_running(vm, err);
  if (rc < 0) return sl_error_wrap(err, "pause");
  capture_paths p;
  rc = capture_paths_of(vm->dir, &p, err);
  if (rc < 0) return rc;
  unlink(p.state);
  unlink(p.ram);
  if (files_only) rc = sync_guest(vm, err);
  capture c = {.memory = files_only ? NULL : &p, .frozen_disk = NULL};
  sl_vm_snapshot_stats st = {0};
  if (rc == 0) rc = stop_capture(vm, &c, false, &st, err);
  if (rc == 0) rc = vm_wait_exit(vm, 10000, err);
  if (rc < 0) {
    unlink(p.state);
    unlink(p.ram);
    return sl_error_wrap_subject(err, "pause", vm->id);
  }
  /* The memory is in the pause's files now (or not kept at all). */
  bool ram_in_state = !files_only && !vm_ram_shared(vm);
  vm_release_files(vm);
  json_object_set_new(vm->conf, "paused", json_true());
  json_object_set_new(vm->conf, "ram_in_state", json_boolean(ram_in_state));
  json_object_set_new(vm->conf, "files_only", json_boolean(files_only));
  rc = vm_conf_save(vm->dir, vm->conf, err);
  SL_INFO("vm.paused", "sandbox=%s files_only=%d pause_ms=%.1f state_bytes=%lld", vm->id,
          (int)files_only, st.pause_ms, st.state_bytes);
  return rc;
}
