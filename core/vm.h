/* The microVM backend: one QEMU process per sandbox, driven over QMP.
 *
 * Files (see docs/ARCHITECTURE.md, VM backend):
 *   $SANDLOT_HOME/sandboxes/<id>/   disk.qcow2 (overlay), qmp.sock, events.sock,
 *       agent-<n>.sock and agent-<n>.lock, console.log, qemu.pid, vm.json,
 *       and while paused: state (device state) and ram
 *   $SANDLOT_HOME/snapshots/<id>/   state, ram, disk.qcow2, vm.json
 *   $SANDLOT_VM_RAM_DIR/sandlot-<id>.ram   live guest RAM (default /dev/shm)
 *
 * Every function blocks (QEMU start, QMP round trips, file copies); the Lua
 * layer runs them on the uv threadpool. State-changing calls on one sandbox
 * must not run concurrently; the caller serializes them (op.lock). */
#ifndef SANDLOT_VM_H
#define SANDLOT_VM_H

#include <stdbool.h>
#include <sys/types.h>

#include "agent_client.h"
#include "error.h"
#include "vm_argv.h"

#define SL_VM_DEFAULT_MEMORY_MB 256u
/* The agent serves one port in stream mode (sandlot.agent.0); host
 * processes share it through its lock (see sl_vm_agent_connect). */
#define SL_VM_DEFAULT_PORTS 1u
/* How long a fork's agent may take for the post-restore hooks. */
#define SL_VM_AGENT_TIMEOUT_MS 30000

/* How to create a VM sandbox. Zero fields take the defaults. */
typedef struct sl_vm_options {
  const char *home;      /* store root ($SANDLOT_HOME) */
  const char *base_disk; /* qcow2 root disk of the template, absolute path */
  const char *agent;     /* static agent binary for the initramfs */
  unsigned memory_mb;
  unsigned vcpus;
  unsigned agent_ports;
  int boot_timeout_ms;   /* until the agent opens its port; default 120 s */
} sl_vm_options;

/* An open VM sandbox. */
typedef struct sl_vm sl_vm;

/* Timings of one snapshot, in milliseconds. */
typedef struct sl_vm_snapshot_stats {
  double pause_ms;  /* from QMP stop to the reply of cont */
  double disk_ms;   /* copy of the disk overlay */
  double ram_ms;    /* copy of the RAM file */
  double state_ms;  /* migration of device state to the state file */
  long long state_bytes;
} sl_vm_snapshot_stats;

/* Directory of the guest kernel, initramfs and template disks:
 * $SANDLOT_VM_CACHE when set, else <home>/vm. */
void sl_vm_cache_dir(const char *home, char *out, size_t len);

/* Boot a new VM `id` and wait until its agent replies to hello. Its
 * directory may exist already (empty, made by the sandbox store). On
 * failure nothing is left: no QEMU process, no files. */
int sl_vm_create(const sl_vm_options *opt, const char *id, sl_vm **out, sl_error *err);

/* Open an existing VM sandbox `id` (running or paused). */
int sl_vm_open(const char *home, const char *id, sl_vm **out, sl_error *err);

void sl_vm_close(sl_vm *vm);

const char *sl_vm_id(const sl_vm *vm);
pid_t sl_vm_pid(const sl_vm *vm); /* 0 when no QEMU runs */
bool sl_vm_is_paused(const sl_vm *vm);
const char *sl_vm_dir(const sl_vm *vm);
const char *sl_vm_console_log(const sl_vm *vm);

/* QEMU's run state: "running", or "paused" or "postmigrate" when frozen, ...
 * -ESRCH when the VM is paused to disk or its QEMU has exited. */
int sl_vm_query_status(sl_vm *vm, char *status, size_t len, sl_error *err);

/* Stop or continue the guest's vCPUs (QMP stop / cont). */
int sl_vm_freeze(sl_vm *vm, sl_error *err);
int sl_vm_thaw(sl_vm *vm, sl_error *err);

/* Capture RAM, device state and disk of the running VM as snapshot `snap_id`
 * with a brief pause; the VM keeps running afterwards. */
int sl_vm_snapshot(sl_vm *vm, const char *snap_id, sl_vm_snapshot_stats *stats,
                   sl_error *err);

/* Timings of one fork, in milliseconds from the start of the call. */
typedef struct sl_vm_fork_stats {
  double disk_ms;    /* overlay and vm.json written */
  double launch_ms;  /* QEMU listening, waiting for migrate-incoming */
  double running_ms; /* state loaded and the reply to cont received */
  double ready_ms;   /* hostname and entropy set by the agent: returned */
} sl_vm_fork_stats;

/* Start a new VM `id` from snapshot `snap_id`; it runs when this returns.
 * `stats` may be NULL. */
int sl_vm_fork(const char *home, const char *snap_id, const char *id,
               sl_vm_fork_stats *stats, sl_vm **out, sl_error *err);

/* Save the VM's state into its directory and end QEMU; the same id comes
 * back with sl_vm_resume(). */
int sl_vm_pause(sl_vm *vm, sl_error *err);
int sl_vm_resume(sl_vm *vm, sl_error *err);

/* Put the running or paused VM back to snapshot `snap_id`, keeping its id. */
int sl_vm_rollback(sl_vm *vm, const char *snap_id, sl_error *err);

/* End QEMU (SIGKILL), wait for it to exit and release its live RAM file.
 * The sandbox's directory stays (see sl_vm_delete). */
int sl_vm_kill(sl_vm *vm, sl_error *err);

/* Release what a VM whose QEMU has gone (crashed, killed, powered off)
 * still holds: its live RAM file on tmpfs. `*cleaned` tells whether
 * there was something. A running VM is left alone. */
int sl_vm_gc(sl_vm *vm, bool *cleaned, sl_error *err);

/* Kill the VM if it runs and remove all its files. */
int sl_vm_delete(const char *home, const char *id, sl_error *err);

/* Remove snapshot `snap_id`. -EBUSY while a sandbox or snapshot uses its
 * disk or RAM file. */
int sl_vm_snapshot_delete(const char *home, const char *snap_id, sl_error *err);

/* Connect to one of the VM's agent ports. QEMU's socket chardev serves one
 * connection at a time, so a caller owns a port for as long as it holds
 * its flock: the first free port is taken, else the call waits for port
 * (pid mod ports). Returns the connected socket; `*lock_fd` must be closed
 * after the socket to release the port. */
int sl_vm_agent_connect(sl_vm *vm, int *lock_fd, sl_error *err);

/* sl_vm_agent_connect() plus the stream-mode sync marker: `conn` is ready
 * for sl_agent_conn_call(). Release with sl_vm_agent_close(). */
int sl_vm_agent_open(sl_vm *vm, sl_agent_conn *conn, int *lock_fd, int timeout_ms,
                     sl_error *err);
void sl_vm_agent_close(sl_agent_conn *conn, int lock_fd);

#endif
