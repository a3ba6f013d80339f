/* The QEMU command line of a microVM, built from a description.
 *
 * Building is pure: no file is opened and no process started, so every
 * device, the memory backend, the accelerator and the incoming mode are
 * unit-tested without root or KVM. Starting the process is vm.c's job. */
#ifndef SANDLOT_VM_ARGV_H
#define SANDLOT_VM_ARGV_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Bounds that sl_vm_argv_build() enforces on a spec. */
#define SL_VM_MEMORY_MIN_MB 64u
#define SL_VM_MEMORY_MAX_MB (1024u * 1024u)
#define SL_VM_VCPUS_MAX 64u
#define SL_VM_AGENT_PORTS_MAX 8u

typedef enum { SL_VM_ACCEL_TCG = 0, SL_VM_ACCEL_KVM = 1 } sl_vm_accel;

/* A growable NULL-terminated vector of owned strings, ready for execv().
 * (criu.h has its own sl_argv, filled only by its builder.) */
typedef struct sl_args {
  char **v;
  size_t n;
  size_t cap;
} sl_args;

int sl_args_push(sl_args *argv, const char *arg, sl_error *err);
int sl_args_pushf(sl_args *argv, sl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_args_free(sl_args *argv);

/* Everything that differs between two QEMU processes of sandlot. A fork or a
 * restore must use the spec of its source with only the paths, `ram_shared`
 * and `incoming_defer` changed, because QEMU loads device state only into a
 * machine with the same devices in the same order. */
typedef struct sl_vm_spec {
  const char *qemu;      /* QEMU binary, run by this path */
  sl_vm_accel accel;
  unsigned memory_mb;
  unsigned vcpus;
  const char *kernel;    /* bzImage */
  const char *initrd;    /* initramfs (newc cpio) */
  const char *cmdline;   /* kernel command line */
  const char *disk;      /* qcow2 image of the root disk, read-write */
  const char *ram_path;  /* file backing guest RAM */
  bool ram_shared;       /* share=on: guest writes reach the file */
  const char *qmp_socket;
  const char *events_socket; /* a second QMP monitor for watchers, or NULL */
  const char *console_log;
  const char *pidfile;   /* NULL: no -pidfile */
  unsigned agent_ports;  /* virtio-serial ports, each behind its own socket */
  const char *agent_sockets[SL_VM_AGENT_PORTS_MAX];
  bool daemonize;        /* -daemonize: QEMU detaches once set up */
  bool incoming_defer;   /* -incoming defer: wait for migrate-incoming */
} sl_vm_spec;

/* Prefix of the agent ports' guest names ("sandlot.agent.0", ...). The agent
 * finds its ports by these names under /sys/class/virtio-ports. */
#define SL_VM_AGENT_PORT_PREFIX "sandlot.agent."

/* Fill `out` (which must be zeroed) with the argv for `spec`, argv[0] being
 * spec->qemu. Returns 0, or -EINVAL with the offending field named. */
int sl_vm_argv_build(const sl_vm_spec *spec, sl_args *out, sl_error *err);

/* What goes on the guest kernel's command line. */
typedef struct sl_vm_cmdline_spec {
  unsigned agent_ports;    /* sandlot.ports= for /init */
  unsigned tsc_khz;        /* > 0: skip TSC calibration (TCG) */
  const char *const *env;  /* "NAME=value" entries for the agent, or NULL */
  const char *cwd;         /* the agent's working directory, or NULL */
} sl_vm_cmdline_spec;

/* The maximum length of an x86_64 Linux kernel command line, without its
 * NUL (COMMAND_LINE_SIZE is 2048). */
#define SL_VM_CMDLINE_MAX 2047

/* Write the kernel command line for `spec` into `buf`. env and cwd go in
 * as sandlot.env= (the entries, each ended by a NUL byte) and
 * sandlot.cwd=, base64-encoded, for /init to decode. EINVAL for an entry
 * without "=", a relative cwd, or a line longer than
 * SL_VM_CMDLINE_MAX or than `size` allows. */
int sl_vm_cmdline_build(const sl_vm_cmdline_spec *spec, char *buf, size_t size, sl_error *err);

/* Return a copy of `value` with every ',' doubled, as QEMU's option parser
 * requires inside "key=value,..." lists. NULL when out of memory. */
char *sl_qemu_escape(const char *value);

const char *sl_vm_accel_name(sl_vm_accel accel);

#endif
