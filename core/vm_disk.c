/* Root disk images: an ext4 file system made from a directory, stored as a
 * qcow2 base, and per-sandbox qcow2 overlays on top of it. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "vm_image.h"
#include "vm_util.h"

int sl_vm_disk_build(const char *root, unsigned size_mb, const char *qcow2, sl_error *err) {
  char raw[4200], tmp[4200], size[32];
  snprintf(raw, sizeof raw, "%s.raw.%d", qcow2, (int)getpid());
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", qcow2, (int)getpid());
  snprintf(size, sizeof size, "%uM", size_mb);
  /* Zero the inode tables and the journal now, on the host, where the zeros
   * cost nothing in the qcow2 image. Left lazy, the guest's ext4lazyinit
   * thread would write them into every sandbox's overlay. */
  const char *mke2fs[] = {"mke2fs", "-q", "-F", "-t", "ext4", "-L", "sandlot-root",
                          "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", root,
                          raw, size, NULL};
  const char *convert[] = {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                           raw, tmp, NULL};
  int rc = sl_run(mke2fs, NULL, err);
  if (rc == 0) rc = sl_run(convert, NULL, err);
  if (rc == 0 && rename(tmp, qcow2) < 0) rc = sl_error_errno(err, errno, "rename to %s", qcow2);
  unlink(raw);
  unlink(tmp);
  if (rc < 0) return sl_error_wrap(err, "root disk from %s", root);
  return 0;
}

int sl_vm_disk_overlay(const char *backing, const char *overlay, sl_error *err) {
  if (backing[0] != '/')
    return sl_error_set(err, EINVAL, "backing image path is not absolute: %s", backing);
  const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                        "-b", backing, overlay, NULL};
  int rc = sl_run(argv, NULL, err);
  if (rc < 0) return sl_error_wrap(err, "disk overlay %s", overlay);
  return 0;
}
