/* The tmpfs mounts of a process sandbox, shared by its PID 1 (which
 * mounts them), CRIU's dumps and restores, and the CRIU action that
 * copies them.
 *
 * CRIU archives each tmpfs of a tree with tar and gzip while the tree is
 * frozen (5 to 10 ms each here) and unpacks it on restore. sandlot marks
 * them external instead: the post-dump action copies their files into
 * <images>/<key>, and a restore mounts a new tmpfs with the same flags
 * and options, filled from that copy, in each place. */
#ifndef SANDLOT_PROC_MOUNTS_H
#define SANDLOT_PROC_MOUNTS_H

typedef struct sl_tmpfs_mount {
  const char *path;      /* mount point inside the sandbox */
  const char *key;       /* folder in the CRIU images; "sandlot-<key>" is
                            the external mount's key */
  unsigned long flags;   /* mount(2) flags */
  const char *options;   /* tmpfs options */
} sl_tmpfs_mount;

/* /dev, /dev/shm, /tmp, and the read-only empty tmpfs mounts that cover
 * /proc/acpi and /proc/scsi. Ends with an entry whose path is NULL. */
extern const sl_tmpfs_mount sl_tmpfs_mounts[];

/* The entry for `path` or `key`, or NULL. */
const sl_tmpfs_mount *sl_tmpfs_mount_by_path(const char *path);
const sl_tmpfs_mount *sl_tmpfs_mount_by_key(const char *key);

#endif
