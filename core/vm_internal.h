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

/* vm.json of a sandbox or a snapshot: the machine (memory_mb, vcpus,
 * agent_ports, accel, kernel, initrd, cmdline), which must be identical
 * for every QEMU that loads a state, and
 *   sandbox:  "ram_mode": "shared" (RAM in the live file, share=on) or
 *             "private" (a snapshot's RAM file mapped share=off),
 *             "ram_path", "paused", "ram_in_state" (while paused),
 *             "uses": the snapshot whose files it reads, or null;
 *   snapshot: "ram_in_state" (no ram file: RAM is in the state file),
 *             "source", "uses". */
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
void vm_snapshot_dir(const char *home, const char *snap_id, char *out, size_t len);
void vm_live_ram_path(const char *home, const char *id, char *out, size_t len);

int vm_conf_load(const char *dir, json_t **conf, sl_error *err);
int vm_conf_save(const char *dir, json_t *conf, sl_error *err);

/* Start QEMU for `vm` from its conf (-daemonize). `incoming`: wait for
 * migrate-incoming. Fills vm->pid. */
int vm_launch(sl_vm *vm, bool incoming, sl_error *err);

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

sl_vm *vm_alloc(const char *home, const char *id, sl_error *err);
/* Read qemu.pid and, when it names this sandbox's QEMU, set vm->pid and
 * open vm->pidfd. */
int vm_read_pid(sl_vm *vm);

/* Append the last lines of the console log to `err` (boot failures print
 * their reason there). */
void vm_add_console_tail(sl_vm *vm, sl_error *err);

#endif
