/* Shared by vm.c and vm_snapshot.c; not part of the core API. */
#ifndef SANDLOT_VM_INTERNAL_H
#define SANDLOT_VM_INTERNAL_H

#include <jansson.h>
#include <limits.h>

#include "qmp.h"
#include "vm.h"

#define VM_PATH_MAX 4096
/* QMP replies within this time, except migration, which has its own. */
#define VM_QMP_TIMEOUT_MS 30000
#define VM_MIGRATE_TIMEOUT_MS 300000
/* From QEMU's start to the agent's port, unless the caller sets one. */
#define VM_BOOT_TIMEOUT_MS 120000
/* A hostname and its NUL (RFC 1123 allows 253 characters in all). */
#define SL_VM_HOSTNAME_SIZE 256

/* vm.json of a sandbox or a snapshot: the machine (memory_mb, vcpus,
 * agent_ports, accel, kernel, initrd, cmdline), which must be identical
 * for every QEMU that loads a state, and
 *   sandbox:  "ram_mode": "shared" (RAM in the live file, share=on) or
 *             "private" (a snapshot's RAM file mapped share=off),
 *             "ram_path", "paused", "ram_in_state" and "files_only"
 *             (while paused), "disk" (file name of the active overlay),
 *             "disk_seq" (the number in it), "disk_node" (its QEMU node),
 *             "hostname" (set again when the guest boots after a
 *             files-only pause or rollback);
 *   snapshot: "ram_in_state" (no ram file: RAM is in the state file),
 *             "source". */
struct sl_vm {
  char home[VM_PATH_MAX];
  char id[64];
  char dir[VM_PATH_MAX];
  json_t *conf;
  pid_t pid;
  int pidfd; /* of `pid`, -1 when none: kill and wait by it, immune to pid reuse */
};

/* "<dir>/<name>" into `out`; -ENAMETOOLONG when it does not fit. */
int vm_path(char *out, const char *dir, const char *name, sl_error *err);
void vm_live_ram_path(const char *home, const char *id, char *out, size_t len);
/* The path of the active disk overlay ("disk" in vm.json). */
int vm_disk_path(const sl_vm *vm, char *out, sl_error *err);
const char *vm_conf_str(json_t *conf, const char *key);
bool vm_ram_shared(const sl_vm *vm);
/* The machine keys of `conf`, which must match between a state file and
 * the QEMU that loads it. NULL when out of memory. */
json_t *vm_machine_of(json_t *conf);

int vm_conf_load(const char *dir, json_t **conf, sl_error *err);

/* Read vm.json again. A handle kept open for long (the monitor's) must do
 * this before it changes the VM: another process may have changed the
 * file since (a snapshot switches the active disk), and saving a stale
 * copy would point the VM at a frozen disk. */
int vm_reload_conf(sl_vm *vm, sl_error *err);
int vm_conf_save(const char *dir, json_t *conf, sl_error *err);

/* Start QEMU for `vm` from its conf (-daemonize). `incoming`: wait for
 * migrate-incoming. Fills vm->pid. Links to disks that earlier snapshots
 * froze are removed first, since only the old QEMU used them. */
int vm_launch(sl_vm *vm, bool incoming, sl_error *err);

/* Boot the guest of a launched VM: wait until the agent opens its port,
 * exchange hello and set `hostname` (when not NULL). */
int vm_boot_wait(sl_vm *vm, int timeout_ms, const char *hostname, sl_error *err);

/* Release what only a running QEMU needs (pid file, live RAM file).
 * Returns true when the RAM file was there. */
bool vm_release_files(sl_vm *vm);

/* Remove every disk overlay of the VM's folder; only for a VM that has
 * ended. */
void vm_remove_disks(sl_vm *vm);

/* Remove the state and RAM files a pause left in the VM's folder. */
void vm_remove_pause_files(sl_vm *vm);

/* Remove what a VM that has ended held: the live RAM file, QEMU's pid
 * file, the disk overlays, the pause files, the sockets and the agent
 * ports' lock files. vm.json and console.log stay. */
void vm_release_ended(sl_vm *vm);

/* Kill QEMU and remove the VM's files from its sandbox's folder (what a
 * failed create or fork left), and the folder when nothing else is in
 * it: the sandbox store's op.lock and the monitor's log stay. */
void vm_remove_files(sl_vm *vm);

/* Wait up to `timeout_ms` for the VM's QEMU to exit, then SIGKILL it and
 * wait for that. Forgets the process afterwards. */
int vm_wait_exit(sl_vm *vm, int timeout_ms, sl_error *err);

int vm_qmp_connect(sl_vm *vm, sl_qmp_sync **q, sl_error *err);

/* -ESRCH unless the VM is running: not paused and its QEMU alive. */
int vm_require_running(sl_vm *vm, sl_error *err);

/* Enable the migration capabilities sandlot uses ("events", and
 * "x-ignore-shared" when `ignore_shared`) and lift the bandwidth limit. */
int vm_qmp_prepare_migration(sl_qmp_sync *q, bool ignore_shared, sl_error *err);

/* Migrate to (or, with `incoming`, from) the open file `fd` and wait for
 * the MIGRATION event "completed"; "failed" is -EIO. */
int vm_qmp_migrate_fd(sl_qmp_sync *q, int fd, bool incoming, sl_error *err);

/* Open an agent session and exchange hello, proving the agent serves. */
int vm_agent_hello(sl_vm *vm, sl_error *err);

/* Run `command` through /bin/sh -c in the guest and wait for it; a
 * non-zero exit is EIO naming the command. */
int vm_agent_run(sl_vm *vm, const char *command, sl_error *err);

/* Set the hostname, add 64 bytes of host entropy and run `on_fork` (may
 * be NULL) in a restored guest; see sl_agent_post_restore. */
int vm_refresh_identity(sl_vm *vm, const char *hostname, const char *on_fork, int *on_fork_exit,
                        sl_error *err);

/* Load `state` into the freshly launched, incoming QEMU of `vm` and
 * continue it. */
int vm_load_state(sl_vm *vm, const char *state, bool ram_in_state, sl_error *err);

sl_vm *vm_alloc(const char *home, const char *id, sl_error *err);
/* Read qemu.pid and, when it names this sandbox's QEMU, set vm->pid and
 * open vm->pidfd. */
int vm_read_pid(sl_vm *vm);

/* Append the last lines of the console log to `err` (boot failures print
 * their reason there). */
void vm_add_console_tail(sl_vm *vm, sl_error *err);

#endif
