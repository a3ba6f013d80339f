/* The microVM backend: one QEMU process per sandbox, driven over QMP.
 *
 * Files (see docs/ARCHITECTURE.md, VM backend):
 *   $SANDLOT_HOME/sandboxes/<id>/   disk-<n>.qcow2 (the active overlay and
 *       links to the ones earlier snapshots froze), qmp.sock, events.sock,
 *       agent-<n>.sock and agent-<n>.lock, console.log, qemu.pid, vm.json,
 *       and while paused: state (device state) and ram
 *   a snapshot (sl_vm_image): a disk image and a folder with state, ram
 *       and vm.json, wherever the caller puts them
 *   $SANDLOT_VM_RAM_DIR/sandlot-<hash>-<id>.ram   live guest RAM (default
 *       /dev/shm)
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
/* The agent serves every port in stream mode. A host process owns a port
 * while it holds the port's lock (agent_ports.h). So this many host
 * processes talk to one guest at once, and more wait for a free port. */
#define SL_VM_DEFAULT_PORTS 8u
/* How long a fork's agent may take for the post-restore hooks. */
#define SL_VM_AGENT_TIMEOUT_MS 30000

/* How to create a VM sandbox. Zero fields take the defaults. */
typedef struct sl_vm_options {
  const char *home;      /* store root ($SANDLOT_HOME) */
  const char *base_disk; /* qcow2 root disk (a template's, or a snapshot's
                            disk), absolute path */
  const char *agent;     /* static agent binary for the initramfs */
  const char *hostname;  /* set through the agent after boot; NULL: none */
  const char *const *env; /* "NAME=value" entries for the agent and so for
                             every command, NULL-terminated; on the kernel
                             command line, so about 1.3 KiB at most */
  const char *cwd;       /* the agent's working directory, created when
                            missing; NULL: "/" */
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
  double disk_ms;   /* the switch of the disk overlay */
  double ram_ms;    /* copy of the RAM file */
  double state_ms;  /* migration of device state to the state file */
  long long state_bytes;
  double warm_ms;   /* a fork's RAM file read into the page cache, before
                       the pause (see vm_snapshot.c) */
} sl_vm_snapshot_stats;

/* Directory of the guest kernel, initramfs and template disks:
 * $SANDLOT_VM_CACHE when set, else <home>/vm. */
void sl_vm_cache_dir(const char *home, char *out, size_t len);

/* Fetch the guest kernel and build the initramfs with `agent` in the VM
 * cache, when missing (the first use on a machine downloads the kernel
 * package). sl_vm_create() does the same, so this only moves the wait. */
int sl_vm_prepare_boot(const char *home, const char *agent, sl_error *err);

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

/* Where a snapshot's files are. `disk` is the frozen disk overlay: the
 * snapshot's layer, a qcow2 image whose backing chain ends at the
 * template's base disk. `dir` contains vm.json (the machine), `state` (the
 * device state, or all state when the RAM was private) and `ram` (the
 * guest RAM, sparse); NULL for a files-only snapshot. */
typedef struct sl_vm_image {
  const char *dir;
  const char *disk;
} sl_vm_image;

/* Snapshot the VM with a brief pause; it keeps running afterwards (a
 * frozen VM stays frozen). While the guest is stopped, its disk overlay
 * is hard-linked to image->disk (a new path in an existing folder on the
 * file system of the sandbox's folder) and becomes read-only, and the VM
 * continues on a new overlay stacked on it: the pause does not depend on
 * how much the guest wrote. With a `dir` (an existing empty folder), RAM
 * and device state go there too. Without one, the guest's file systems
 * are synced through the agent first (unless it is frozen) and only the
 * disk is taken. On failure the VM runs as before and nothing is left in
 * `dir`. Nothing is left at `disk` either, unless the failure came after
 * the switch (the RAM copy or the migration failed): then the VM runs on
 * an overlay stacked on `disk`, which must stay. */
int sl_vm_snapshot(sl_vm *vm, const sl_vm_image *image, sl_vm_snapshot_stats *stats,
                   sl_error *err);

/* Timings of one fork, in milliseconds from the start of the call. */
typedef struct sl_vm_fork_stats {
  double disk_ms;    /* overlay and vm.json written */
  double launch_ms;  /* QEMU listening, waiting for migrate-incoming */
  double running_ms; /* state loaded and the reply to cont received */
  double ready_ms;   /* hostname, entropy and on_fork done: returned */
} sl_vm_fork_stats;

/* The guest RAM size of the snapshot whose memory is in `dir`, which
 * every fork of it has. ENOENT when `dir` has no vm.json. */
int sl_vm_image_memory_mb(const char *dir, unsigned *memory_mb, sl_error *err);

/* How to start a new VM from a snapshot with memory. */
typedef struct sl_vm_fork_options {
  const char *home;
  const char *id;       /* the new sandbox */
  sl_vm_image from;     /* with a `dir` */
  const char *hostname; /* NULL: the id */
  const char *on_fork;  /* NULL, or a command run by /bin/sh -c before returning */
} sl_vm_fork_options;

/* Start a new VM from a snapshot: its own overlay on the snapshot's disk,
 * the snapshot's RAM file mapped privately (forks share the unchanged
 * pages), and the device state loaded. It runs when this returns, with
 * its hostname set, 64 bytes of fresh entropy in its CRNG and on_fork run
 * (its exit code in *on_fork_exit, may be NULL). `stats` may be NULL. On
 * failure nothing is left. */
int sl_vm_fork(const sl_vm_fork_options *opt, int *on_fork_exit, sl_vm_fork_stats *stats,
               sl_vm **out, sl_error *err);

/* Save the VM's state into its directory and end QEMU; the same id comes
 * back with sl_vm_resume(). With files_only the guest's file systems are
 * synced through the agent and QEMU ends without saving memory: a resume
 * boots the guest again on its disk. */
int sl_vm_pause(sl_vm *vm, bool files_only, sl_error *err);
int sl_vm_resume(sl_vm *vm, sl_error *err);

/* Put the running or paused VM back to a snapshot, keeping its id: a new
 * overlay on image->disk and, with image->dir, the snapshot's memory
 * (else the guest boots again on the disk). Its hostname becomes
 * `hostname`, or stays what it was when NULL, and it gets fresh entropy. On failure
 * no QEMU runs for the VM any more; the caller ends the sandbox. */
int sl_vm_rollback(sl_vm *vm, const sl_vm_image *image, const char *hostname, sl_error *err);

/* End QEMU (SIGKILL), wait for it to exit and release its live RAM file.
 * The sandbox's directory stays (see sl_vm_delete). */
int sl_vm_kill(sl_vm *vm, sl_error *err);

/* Release what a VM whose QEMU has gone (crashed, killed, powered off)
 * still holds: its live RAM file on tmpfs. `*cleaned` tells whether
 * there was something. A running VM is left alone. */
int sl_vm_gc(sl_vm *vm, bool *cleaned, sl_error *err);

/* Kill the VM if it runs and remove all its files. */
int sl_vm_delete(const char *home, const char *id, sl_error *err);

/* Connect to a free one of the VM's agent ports (agent_ports.h). While
 * other host processes hold all of them, wait up to `timeout_ms`, then
 * fail with EBUSY. Returns the connected socket. Close `*lock_fd` after
 * the socket to release the port. */
int sl_vm_agent_connect(sl_vm *vm, int timeout_ms, int *lock_fd, sl_error *err);

/* sl_vm_agent_connect() plus the stream-mode sync marker: `conn` is ready
 * for sl_agent_conn_call(). Release with sl_vm_agent_close(). */
int sl_vm_agent_open(sl_vm *vm, sl_agent_conn *conn, int *lock_fd, int timeout_ms,
                     sl_error *err);
void sl_vm_agent_close(sl_agent_conn *conn, int lock_fd);

#endif
