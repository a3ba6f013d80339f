/* The config of a VM sandbox's monitor: sandboxes/<id>/vm-monitor.json,
 * written by the creator (or by resume) before it starts sandlot-monitor
 * with --backend vm, and read by that monitor: how the VM starts and what
 * the monitor enforces. */
#ifndef SANDLOT_VM_MONITOR_CONFIG_H
#define SANDLOT_VM_MONITOR_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "catalog.h"
#include "error.h"

#define SL_VM_MONITOR_CONFIG "vm-monitor.json"

typedef enum {
  SL_VM_LAUNCH_BOOT,   /* boot the kernel on a new overlay of base_disk */
  SL_VM_LAUNCH_FORK,   /* load a snapshot's memory (image_dir, image_disk) */
  SL_VM_LAUNCH_RESUME, /* continue a paused VM from its own folder */
} sl_vm_launch_mode;

typedef struct sl_vm_monitor_config {
  sl_vm_launch_mode launch;
  char base_disk[PATH_MAX];  /* boot: a template's disk or a snapshot's */
  char agent[PATH_MAX];      /* boot: the agent binary for the initramfs */
  unsigned memory_mb;        /* boot */
  char image_dir[PATH_MAX];  /* fork: the snapshot's memory folder */
  char image_disk[PATH_MAX]; /* fork: the snapshot's disk */
  char hostname[SL_NAME_SIZE]; /* set at boot, fork and rollback */
  char **env;                /* boot: "NAME=value" entries, NULL-terminated,
                                or NULL; owned, see _free */
  char cwd[PATH_MAX];        /* boot: the agent's working directory, or "" */
  char on_fork[4096];        /* fork: a command run by /bin/sh -c, or "" */
  int64_t timeout_ms;        /* 0: none; counted from the launch */
  sl_on_timeout on_timeout;
  int auto_kill;
} sl_vm_monitor_config;

const char *sl_vm_launch_name(sl_vm_launch_mode mode);

/* Write the config into the sandbox folder `dir`, replacing it atomically. */
int sl_vm_monitor_config_write(const char *dir, const sl_vm_monitor_config *cfg, sl_error *err);

/* Read the config from `dir`. EINVAL for a malformed file. Release it
 * with sl_vm_monitor_config_free(). */
int sl_vm_monitor_config_read(const char *dir, sl_vm_monitor_config *cfg, sl_error *err);

void sl_vm_monitor_config_free(sl_vm_monitor_config *cfg);

#endif
