/* Starting VMs from saved state: forks of a snapshot, resume after a
 * pause, rollback in place. */
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

int vm_load_state(sl_vm *vm, const char *state, bool ram_in_state, sl_error *err) {
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

/* A restored guest has the CRNG state of its snapshot, so forks of one
 * snapshot would read the same /dev/urandom bytes: give it fresh entropy,
 * and its own hostname. */
int vm_refresh_identity(sl_vm *vm, const char *hostname, const char *on_fork, int *on_fork_exit,
                        sl_error *err) {
  unsigned char entropy[64];
  if (getrandom(entropy, sizeof entropy, 0) != (ssize_t)sizeof entropy)
    return sl_error_errno(err, errno, "getrandom");
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, SL_VM_AGENT_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  int exit_code = 0;
  rc = sl_agent_post_restore(&conn, hostname ? hostname : vm->id, entropy, sizeof entropy,
                             on_fork, SL_VM_AGENT_TIMEOUT_MS, &exit_code, err);
  sl_vm_agent_close(&conn, lock);
  if (rc < 0) return sl_error_wrap(err, "post-restore");
  if (on_fork_exit != NULL) *on_fork_exit = exit_code;
  return 0;
}

/* Launch an incoming QEMU for `vm` and load `state`; kill QEMU on failure. */
static int launch_and_load(sl_vm *vm, const char *state, bool ram_in_state, sl_error *err) {
  int rc = vm_launch(vm, true, err);
  if (rc == 0) rc = vm_load_state(vm, state, ram_in_state, err);
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

/* A snapshot's vm.json and the paths of its state and RAM. */
typedef struct image_files {
  json_t *conf;
  char state[VM_PATH_MAX];
  char ram[VM_PATH_MAX];
  bool ram_in_state;
} image_files;

static int load_image(const sl_vm_image *image, image_files *f, sl_error *err) {
  memset(f, 0, sizeof *f);
  if (image == NULL || image->disk == NULL || image->disk[0] != '/')
    return sl_error_set(err, EINVAL, "invalid snapshot: its disk needs an absolute path");
  if (!sl_path_exists(image->disk))
    return sl_error_set(err, ENOENT, "snapshot disk not found: %s", image->disk);
  if (image->dir == NULL) return 0;
  int rc = vm_conf_load(image->dir, &f->conf, err);
  if (rc == -ENOENT) return sl_error_set(err, ENOENT, "snapshot not found: %s", image->dir);
  if (rc == 0) rc = vm_path(f->state, image->dir, "state", err);
  if (rc == 0) rc = vm_path(f->ram, image->dir, "ram", err);
  if (rc == 0 && !sl_path_exists(f->state))
    rc = sl_error_set(err, ENOENT, "snapshot has no state file: %s", f->state);
  f->ram_in_state = json_is_true(json_object_get(f->conf, "ram_in_state"));
  if (rc == 0 && !f->ram_in_state && !sl_path_exists(f->ram))
    rc = sl_error_set(err, ENOENT, "snapshot has no RAM file: %s", f->ram);
  if (rc < 0) {
    json_decref(f->conf);
    f->conf = NULL;
  }
  return rc;
}

/* Point `vm`'s conf at a snapshot's machine, with the RAM either private
 * from the snapshot's file (fork) or copied to a live file (rollback). */
static int conf_from_image(sl_vm *vm, const image_files *f, bool copy_ram, sl_error *err) {
  json_t *conf = vm_machine_of(f->conf);
  if (conf == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  char live[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, live, sizeof live);
  bool shared = copy_ram || f->ram_in_state;
  json_object_set_new(conf, "ram_mode", json_string(shared ? "shared" : "private"));
  json_object_set_new(conf, "ram_path", json_string(shared ? live : f->ram));
  json_object_set_new(conf, "paused", json_false());
  /* A rollback keeps numbering its overlays after the ones it has. */
  json_t *seq = vm->conf ? json_object_get(vm->conf, "disk_seq") : NULL;
  if (seq != NULL) json_object_set(conf, "disk_seq", seq);
  json_t *hostname = vm->conf ? json_object_get(vm->conf, "hostname") : NULL;
  if (hostname != NULL) json_object_set(conf, "hostname", hostname);
  json_decref(vm->conf);
  vm->conf = conf;
  unlink(live);
  if (copy_ram && !f->ram_in_state) return sl_copy_sparse(f->ram, live, err);
  return 0;
}

/* A new active overlay on `backing`, replacing the VM's disk. The old
 * overlay (and the links earlier snapshots left) go at the next launch. */
static int new_overlay(sl_vm *vm, const char *backing, sl_error *err) {
  int seq = (int)json_integer_value(json_object_get(vm->conf, "disk_seq")) + 1;
  char name[32], path[VM_PATH_MAX];
  snprintf(name, sizeof name, "disk-%d.qcow2", seq);
  int rc = vm_path(path, vm->dir, name, err);
  if (rc == 0) rc = sl_vm_disk_overlay(backing, path, err);
  if (rc < 0) return rc;
  json_object_set_new(vm->conf, "disk", json_string(name));
  json_object_set_new(vm->conf, "disk_seq", json_integer(seq));
  return 0;
}

int sl_vm_image_memory_mb(const char *dir, unsigned *memory_mb, sl_error *err) {
  json_t *conf = NULL;
  int rc = vm_conf_load(dir, &conf, err);
  if (rc == -ENOENT) return sl_error_set(err, ENOENT, "snapshot memory not found: %s", dir);
  if (rc < 0) return rc;
  json_int_t mb = json_integer_value(json_object_get(conf, "memory_mb"));
  json_decref(conf);
  if (mb <= 0) return sl_error_set(err, EBADMSG, "invalid memory_mb in %s/vm.json", dir);
  *memory_mb = (unsigned)mb;
  return 0;
}

/* Fork. */

/* The steps of a fork after its directory exists, with their times from
 * `start` in `st`. On failure QEMU is gone; the caller removes the files. */
static int fork_steps(sl_vm *vm, const sl_vm_fork_options *opt, const image_files *f,
                      int *on_fork_exit, double start, sl_vm_fork_stats *st, sl_error *err) {
  int rc = conf_from_image(vm, f, false, err);
  if (rc == 0)
    json_object_set_new(vm->conf, "hostname", json_string(opt->hostname ? opt->hostname : vm->id));
  if (rc == 0) rc = new_overlay(vm, opt->from.disk, err);
  if (rc == 0) rc = vm_conf_save(vm->dir, vm->conf, err);
  st->disk_ms = sl_clock_ms() - start;
  if (rc == 0) rc = vm_launch(vm, true, err);
  st->launch_ms = sl_clock_ms() - start;
  if (rc == 0) rc = vm_load_state(vm, f->state, f->ram_in_state, err);
  st->running_ms = sl_clock_ms() - start;
  if (rc == 0) rc = vm_refresh_identity(vm, opt->hostname, opt->on_fork, on_fork_exit, err);
  st->ready_ms = sl_clock_ms() - start;
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

/* The sandbox's folder may exist (the store makes it for op.lock), but
 * it must not hold a VM yet. */
static int make_sandbox_dir(sl_vm *vm, sl_error *err) {
  char conf[VM_PATH_MAX];
  int rc = sl_mkdir_p(vm->dir, 0700, err);
  if (rc == 0) rc = vm_path(conf, vm->dir, "vm.json", err);
  if (rc == 0 && sl_path_exists(conf)) rc = sl_error_set(err, EEXIST, "sandbox exists: %s", vm->id);
  return rc;
}

int sl_vm_fork(const sl_vm_fork_options *opt, int *on_fork_exit, sl_vm_fork_stats *stats,
               sl_vm **out, sl_error *err) {
  if (opt->id == NULL || opt->id[0] == '\0' || strchr(opt->id, '/') || opt->id[0] == '.')
    return sl_error_set(err, EINVAL, "invalid sandbox id: \"%s\"", opt->id ? opt->id : "");
  if (opt->from.dir == NULL)
    return sl_error_set(err, EINVAL, "fork %s: the snapshot has no memory to fork", opt->id);
  image_files f;
  int rc = load_image(&opt->from, &f, err);
  if (rc < 0) return sl_error_wrap_subject(err, "fork", opt->id);
  sl_vm *vm = vm_alloc(opt->home, opt->id, err);
  if (vm == NULL) {
    json_decref(f.conf);
    return -ENOMEM;
  }
  double start = sl_clock_ms();
  sl_vm_fork_stats st = {0};
  rc = make_sandbox_dir(vm, err);
  if (rc == 0) rc = fork_steps(vm, opt, &f, on_fork_exit, start, &st, err);
  json_decref(f.conf);
  if (rc < 0) {
    vm_remove_files(vm);
    sl_vm_close(vm);
    return sl_error_wrap_subject(err, "fork", opt->id);
  }
  if (stats != NULL) *stats = st;
  SL_INFO("vm.forked",
          "sandbox=%s image=%s pid=%d disk_ms=%.1f launch_ms=%.1f running_ms=%.1f "
          "ready_ms=%.1f",
          opt->id, opt->from.dir, (int)vm->pid, st.disk_ms, st.launch_ms, st.running_ms,
          st.ready_ms);
  *out = vm;
  return 0;
}

/* A fresh live RAM file for a guest that boots again. */
static void use_new_live_ram(sl_vm *vm) {
  char live[VM_PATH_MAX];
  vm_live_ram_path(vm->home, vm->id, live, sizeof live);
  unlink(live);
  json_object_set_new(vm->conf, "ram_mode", json_string("shared"));
  json_object_set_new(vm->conf, "ram_path", json_string(live));
}

/* Resume. */

/* The hostname the guest had, set again after it boots. */
static const char *hostname_of(sl_vm *vm) {
  const char *name = vm_conf_str(vm->conf, "hostname");
  return name != NULL ? name : vm->id;
}

static int resume_files_only(sl_vm *vm, sl_error *err) {
  use_new_live_ram(vm);
  int rc = vm_launch(vm, false, err);
  if (rc == 0) rc = vm_boot_wait(vm, 0, hostname_of(vm), err);
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

static int resume_memory(sl_vm *vm, sl_error *err) {
  char state[VM_PATH_MAX], ram[VM_PATH_MAX], live[VM_PATH_MAX];
  int rc = vm_path(state, vm->dir, "state", err);
  if (rc == 0) rc = vm_path(ram, vm->dir, "ram", err);
  if (rc < 0) return rc;
  bool ram_in_state = json_is_true(json_object_get(vm->conf, "ram_in_state"));
  vm_live_ram_path(vm->home, vm->id, live, sizeof live);
  unlink(live);
  if (!ram_in_state) rc = sl_copy_sparse(ram, live, err);
  json_object_set_new(vm->conf, "ram_mode", json_string("shared"));
  json_object_set_new(vm->conf, "ram_path", json_string(live));
  if (rc == 0) rc = launch_and_load(vm, state, ram_in_state, err);
  if (rc < 0) unlink(live);
  return rc;
}

int sl_vm_resume(sl_vm *vm, sl_error *err) {
  if (vm_reload_conf(vm, err) < 0) return sl_error_wrap_subject(err, "resume", vm->id);
  if (!sl_vm_is_paused(vm)) return sl_error_set(err, EINVAL, "sandbox is not paused: %s", vm->id);
  bool files_only = json_is_true(json_object_get(vm->conf, "files_only"));
  /* The agent calls of the boot need a VM that does not read as paused;
   * a failure reloads the conf from the file. */
  json_object_set_new(vm->conf, "paused", json_false());
  int rc = files_only ? resume_files_only(vm, err) : resume_memory(vm, err);
  if (rc < 0) {
    /* Back to the conf on disk, which still says paused. */
    json_decref(vm->conf);
    vm->conf = NULL;
    vm_conf_load(vm->dir, &vm->conf, NULL);
    return sl_error_wrap_subject(err, "resume", vm->id);
  }
  json_object_set_new(vm->conf, "paused", json_false());
  json_object_del(vm->conf, "ram_in_state");
  json_object_del(vm->conf, "files_only");
  char path[VM_PATH_MAX];
  if (vm_path(path, vm->dir, "state", NULL) == 0) unlink(path);
  if (vm_path(path, vm->dir, "ram", NULL) == 0) unlink(path);
  return vm_conf_save(vm->dir, vm->conf, err);
}

/* Rollback. */

static int rollback_steps(sl_vm *vm, const sl_vm_image *image, const image_files *f,
                          const char *hostname, sl_error *err) {
  int rc = sl_vm_kill(vm, err);
  if (rc == 0 && f->conf != NULL) rc = conf_from_image(vm, f, true, err);
  if (rc == 0 && f->conf == NULL) use_new_live_ram(vm);
  if (rc == 0) rc = new_overlay(vm, image->disk, err);
  json_object_set_new(vm->conf, "paused", json_false());
  json_object_del(vm->conf, "ram_in_state");
  json_object_del(vm->conf, "files_only");
  if (rc == 0) rc = vm_conf_save(vm->dir, vm->conf, err);
  if (rc < 0) return rc;
  if (f->conf == NULL) {
    /* A files-only snapshot: boot again on its disk. */
    rc = vm_launch(vm, false, err);
    if (rc == 0) rc = vm_boot_wait(vm, 0, hostname, err);
    if (rc < 0) sl_vm_kill(vm, NULL);
    return rc;
  }
  rc = launch_and_load(vm, f->state, f->ram_in_state, err);
  if (rc == 0) rc = vm_refresh_identity(vm, hostname, NULL, NULL, err);
  if (rc < 0) sl_vm_kill(vm, NULL);
  return rc;
}

int sl_vm_rollback(sl_vm *vm, const sl_vm_image *image, const char *hostname, sl_error *err) {
  image_files f;
  int rc = vm_reload_conf(vm, err);
  if (rc == 0) rc = load_image(image, &f, err);
  if (rc < 0) return sl_error_wrap_subject(err, "rollback", vm->id);
  if (hostname != NULL) json_object_set_new(vm->conf, "hostname", json_string(hostname));
  char name[SL_VM_HOSTNAME_SIZE];
  snprintf(name, sizeof name, "%s", hostname_of(vm));
  hostname = name;
  rc = rollback_steps(vm, image, &f, hostname, err);
  json_decref(f.conf);
  char path[VM_PATH_MAX];
  if (vm_path(path, vm->dir, "state", NULL) == 0) unlink(path);
  if (vm_path(path, vm->dir, "ram", NULL) == 0) unlink(path);
  if (rc < 0) return sl_error_wrap_subject(err, "rollback", vm->id);
  SL_INFO("vm.rollback", "sandbox=%s disk=%s pid=%d", vm->id, image->disk, (int)vm->pid);
  return 0;
}
