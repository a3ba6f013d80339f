#include "proc_mounts.h"

#include <stddef.h>
#include <string.h>
#include <sys/mount.h>

/* /dev contains a few nodes and links (size 1 MiB). /tmp and /dev/shm
 * have no size of their own, so the memory cgroup bounds them. */
const sl_tmpfs_mount sl_tmpfs_mounts[] = {
    {"/dev", "dev", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m"},
    {"/dev/shm", "shm", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"/tmp", "tmp", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"/proc/acpi", "acpi", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0"},
    {"/proc/scsi", "scsi", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0"},
    {NULL, NULL, 0, NULL},
};

const sl_tmpfs_mount *sl_tmpfs_mount_by_path(const char *path) {
  for (const sl_tmpfs_mount *m = sl_tmpfs_mounts; m->path; m++)
    if (strcmp(m->path, path) == 0) return m;
  return NULL;
}

const sl_tmpfs_mount *sl_tmpfs_mount_by_key(const char *key) {
  for (const sl_tmpfs_mount *m = sl_tmpfs_mounts; m->path; m++)
    if (strcmp(m->key, key) == 0) return m;
  return NULL;
}
