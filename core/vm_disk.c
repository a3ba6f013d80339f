/* Root disk images: an ext4 file system made from a directory, stored as a
 * qcow2 base, and per-sandbox qcow2 overlays on top of it. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
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
  int rc = sl_run_output(mke2fs, NULL, err);
  if (rc == 0) rc = sl_run_output(convert, NULL, err);
  if (rc == 0 && rename(tmp, qcow2) < 0) rc = sl_error_errno(err, errno, "rename to %s", qcow2);
  unlink(raw);
  unlink(tmp);
  if (rc < 0) return sl_error_wrap(err, "root disk from %s", root);
  return 0;
}

/* A qcow2 overlay is written directly rather than by qemu-img, which saves
 * starting a process (15 to 25 ms of a fork on a loaded host). The layout
 * is the one qemu-img 7.2 writes for an empty overlay. Cluster 0 contains
 * the version 3 header, the backing format extension and the backing file
 * name. Cluster 1 is the refcount table, cluster 2 a refcount block that
 * counts clusters 0 to 3, and cluster 3 the L1 table. All L1 entries are
 * zero, so every read goes to the backing file. */
#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_CLUSTER_BITS 16
#define QCOW2_CLUSTER ((uint64_t)1 << QCOW2_CLUSTER_BITS)
#define QCOW2_HEADER_LENGTH 112
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau

static void put_be32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* The virtual size of the qcow2 image at `path`. */
static int qcow2_virtual_size(const char *path, uint64_t *size, sl_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", path);
  uint8_t header[32];
  ssize_t n = pread(fd, header, sizeof header, 0);
  close(fd);
  if (n != (ssize_t)sizeof header || (get_be64(header) >> 32) != QCOW2_MAGIC)
    return sl_error_set(err, EINVAL, "not a qcow2 image: %s", path);
  *size = get_be64(header + 24);
  return 0;
}

/* Fill the first cluster: header, extensions, backing file name. */
static int qcow2_header(uint8_t *c0, const char *backing, uint64_t size, uint32_t l1_size,
                        sl_error *err) {
  size_t name_len = strlen(backing);
  size_t name_offset = QCOW2_HEADER_LENGTH + 16 + 8; /* after two extensions */
  if (name_offset + name_len > 1023)
    return sl_error_set(err, ENAMETOOLONG, "backing file path too long: %s", backing);
  put_be32(c0, QCOW2_MAGIC);
  put_be32(c0 + 4, 3);
  put_be64(c0 + 8, name_offset);
  put_be32(c0 + 16, (uint32_t)name_len);
  put_be32(c0 + 20, QCOW2_CLUSTER_BITS);
  put_be64(c0 + 24, size);
  put_be32(c0 + 36, l1_size);
  put_be64(c0 + 40, 3 * QCOW2_CLUSTER);  /* L1 table */
  put_be64(c0 + 48, 1 * QCOW2_CLUSTER);  /* refcount table */
  put_be32(c0 + 56, 1);                  /* refcount table clusters */
  put_be32(c0 + 96, 4);                  /* refcount order: 16-bit refcounts */
  put_be32(c0 + 100, QCOW2_HEADER_LENGTH);
  uint8_t *ext = c0 + QCOW2_HEADER_LENGTH;
  put_be32(ext, QCOW2_EXT_BACKING_FORMAT);
  put_be32(ext + 4, 5);
  memcpy(ext + 8, "qcow2", 5); /* padded with zeros to 8 bytes */
  /* The end-of-extensions marker (type 0, length 0) is already zero. */
  memcpy(c0 + name_offset, backing, name_len);
  return 0;
}

static int write_all_at(int fd, const void *data, size_t len, off_t offset, sl_error *err) {
  const uint8_t *p = data;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_error_errno(err, errno, "write");
    p += n;
    len -= (size_t)n;
    offset += n;
  }
  return 0;
}

static int qcow2_write_overlay(int fd, const char *backing, uint64_t size, sl_error *err) {
  uint64_t l2_span = QCOW2_CLUSTER * (QCOW2_CLUSTER / 8);
  uint64_t l1_size = (size + l2_span - 1) / l2_span;
  if (l1_size * 8 > QCOW2_CLUSTER)
    return sl_error_set(err, EFBIG, "disk too large for a one-cluster L1 table: %llu bytes",
                        (unsigned long long)size);
  uint8_t c0[1024] = {0}, reftable[8], refblock[8];
  int rc = qcow2_header(c0, backing, size, (uint32_t)l1_size, err);
  if (rc < 0) return rc;
  put_be64(reftable, 2 * QCOW2_CLUSTER);
  for (int i = 0; i < 4; i++) {
    refblock[2 * i] = 0;
    refblock[2 * i + 1] = 1;
  }
  rc = write_all_at(fd, c0, sizeof c0, 0, err);
  if (rc == 0) rc = write_all_at(fd, reftable, sizeof reftable, (off_t)QCOW2_CLUSTER, err);
  if (rc == 0) rc = write_all_at(fd, refblock, sizeof refblock, (off_t)(2 * QCOW2_CLUSTER), err);
  if (rc == 0 && ftruncate(fd, (off_t)(3 * QCOW2_CLUSTER + l1_size * 8)) < 0)
    rc = sl_error_errno(err, errno, "ftruncate");
  return rc;
}

/* Sum of the allocated sizes of the files under a tree; nftw passes no
 * user pointer, hence the static. */
static __thread unsigned long long tree_bytes;

static int add_entry_size(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)path;
  (void)flag;
  (void)ftw;
  tree_bytes += (unsigned long long)st->st_blocks * 512;
  return 0;
}

static int tree_size_mb(const char *root, unsigned *mb, sl_error *err) {
  tree_bytes = 0;
  if (nftw(root, add_entry_size, 32, FTW_PHYS) < 0)
    return sl_error_errno(err, errno, "walk %s", root);
  *mb = (unsigned)(tree_bytes >> 20) + 1;
  return 0;
}

int sl_vm_base_disk(const char *cache_dir, const char *key, const char *root, unsigned min_mb,
                    char *path, size_t path_len, sl_error *err) {
  if (key[0] == '\0' || strchr(key, '/') || key[0] == '.')
    return sl_error_set(err, EINVAL, "invalid disk key: \"%s\"", key);
  char dir[4096], lock_path[4200];
  snprintf(dir, sizeof dir, "%s/disks", cache_dir);
  snprintf(path, path_len, "%s/%s.qcow2", dir, key);
  snprintf(lock_path, sizeof lock_path, "%s/%s.lock", dir, key);
  int rc = sl_mkdir_p(dir, 0755, err);
  if (rc < 0) return rc;
  int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) return sl_error_errno(err, errno, "open %s", lock_path);
  while (flock(lock, LOCK_EX) < 0 && errno == EINTR) {
  }
  if (!sl_path_exists(path)) {
    unsigned used = 0;
    rc = tree_size_mb(root, &used, err);
    unsigned size = 2 * used + 1024;
    if (size < min_mb) size = min_mb;
    if (rc == 0) rc = sl_vm_disk_build(root, size, path, err);
  }
  close(lock);
  return rc;
}

int sl_vm_disk_overlay(const char *backing, const char *overlay, sl_error *err) {
  if (backing[0] != '/')
    return sl_error_set(err, EINVAL, "backing image path is not absolute: %s", backing);
  uint64_t size = 0;
  int rc = qcow2_virtual_size(backing, &size, err);
  if (rc < 0) return sl_error_wrap(err, "disk overlay %s", overlay);
  int fd = open(overlay, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return sl_error_errno(err, errno, "create %s", overlay);
  rc = qcow2_write_overlay(fd, backing, size, err);
  if (close(fd) < 0 && rc == 0) rc = sl_error_errno(err, errno, "close %s", overlay);
  if (rc < 0) {
    unlink(overlay);
    return sl_error_wrap(err, "disk overlay %s", overlay);
  }
  return 0;
}
