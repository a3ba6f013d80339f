/* The overlay root file system of a process sandbox: read-only layers
 * (top first) under one writable upper directory, mounted in the host
 * mount namespace so that CRIU can later restore with --root there. */
#ifndef SANDLOT_PROC_OVERLAY_H
#define SANDLOT_PROC_OVERLAY_H

#include <stddef.h>

#include "error.h"

/* Build the overlayfs mount data "lowerdir=L1:L2,upperdir=U,workdir=W"
 * with lowers[0] as the top layer. Paths must be absolute and free of
 * ':', ',' and '\\' (overlayfs would read them as separators), else
 * EINVAL naming the path; ENAMETOOLONG when the text exceeds `len` or the
 * page-sized limit of mount(2) data. Pure. */
int sl_overlay_options(const char *const *lowers, size_t nlowers, const char *upper,
                       const char *work, char *buf, size_t len, sl_error *err);

/* Mount the overlay at `target` (nodev: device nodes in the layers cannot
 * be opened through it). */
int sl_overlay_mount(const char *const *lowers, size_t nlowers, const char *upper,
                     const char *work, const char *target, sl_error *err);

/* Detach the mount at `target` (lazily, so a namespace that still holds a
 * copy does not block it). Not mounted is not an error. */
int sl_overlay_unmount(const char *target, sl_error *err);

/* Whether `path` is a mount point in the caller's mount namespace. */
int sl_is_mount_point(const char *path);

/* Collect the mount points at or below `prefix` listed in mountinfo
 * text, last mounted first, which is the order to unmount them in.
 * Returns a NULL-terminated heap array of heap strings for
 * sl_strv_free(). Pure. */
char **sl_mounts_below(const char *mountinfo, const char *prefix, size_t *count);

#endif
