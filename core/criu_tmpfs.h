/* The tmpfs mounts of a sandbox (core/proc_mounts.h) that a dump leaves
 * out of CRIU's images and a restore rebuilds from copies. Internal to
 * criu_tree.c. */
#ifndef SANDLOT_CRIU_TMPFS_H
#define SANDLOT_CRIU_TMPFS_H

#include <stddef.h>
#include <sys/types.h>

#include "criu.h"
#include "error.h"

#define SL_CRIU_TMPFS_MAX 6

typedef struct sl_criu_tmpfs {
  size_t count;
  char keys[256];                           /* "dev shm tmp", for the action */
  char externals[SL_CRIU_TMPFS_MAX][4300];  /* --external values */
  char mounts[SL_CRIU_TMPFS_MAX][4200];     /* restore: host-side tmpfs mounts */
} sl_criu_tmpfs;

/* Dump: find the tmpfs mounts of sl_tmpfs_mounts in the mount table of
 * `pid` and fill "mnt[/tmp]:sandlot-tmp" externals and the key list. */
int sl_criu_tmpfs_for_dump(pid_t pid, sl_criu_tmpfs *out, sl_error *err);

/* Restore: for each copy in <images>/<key>, mount a tmpfs with the
 * mount's flags and options at <work>/<key>, fill it from the copy, and
 * add "mnt[sandlot-<key>]:<work>/<key>". On failure unmounts what it
 * mounted. */
int sl_criu_tmpfs_for_restore(const char *images, const char *work, sl_criu_tmpfs *out,
                              sl_error *err);

/* Detach the host side of the restore's tmpfs mounts: the restored tree
 * keeps its own bind of each. */
void sl_criu_tmpfs_release(sl_criu_tmpfs *t);

#endif
