/* What a microVM boots from: the guest kernel, the initramfs and the disks.
 *
 * The kernel is Debian's linux-image-cloud-amd64 (fetched with apt-get
 * download and unpacked with dpkg-deb, never installed on the host). Its
 * virtio drivers are modules, so the initramfs contains them together with
 * busybox (static) and the agent. Its /init loads them, mounts the root
 * disk and starts the agent there. The root disk is an ext4 image of a
 * template's root filesystem in a qcow2 base; each sandbox writes to its
 * own qcow2 overlay on top. */
#ifndef SANDLOT_VM_IMAGE_H
#define SANDLOT_VM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The kernel package sandlot boots, a Debian metapackage that depends on
 * the current linux-image-<abi>-cloud-amd64. */
#define SL_VM_KERNEL_PACKAGE "linux-image-cloud-amd64"

/* Modules the guest needs, in no particular order; their dependencies are
 * added from each module's .modinfo. */
extern const char *const sl_vm_guest_modules[];

/* A fetched kernel: `dir` contains vmlinuz, modules/<name>.ko and
 * modules/order (one module name a line, dependencies first). */
typedef struct sl_vm_kernel {
  char dir[4096];
  char vmlinuz[4096];
  char release[128]; /* e.g. "6.1.0-57-cloud-amd64" */
} sl_vm_kernel;

/* Make sure a kernel is unpacked under `cache_dir`/kernel, fetching it when
 * missing. Concurrent callers serialize on a lock file.
 * NOTE: a kernel directory that lacks a module of sl_vm_guest_modules is
 * fetched again, possibly as a newer release, in place. Snapshots taken
 * before then start their forks with the new vmlinuz file; the running
 * guest is in the restored RAM, so only a guest reboot would see it. */
int sl_vm_kernel_ensure(const char *cache_dir, sl_vm_kernel *kernel, sl_error *err);

/* The "depends=" value of a module's .modinfo section, read from the raw
 * .ko contents: a comma-separated list, possibly empty. Returns 0 with a
 * malloc'd string, or -ENOENT when the tag is missing. */
int sl_kmod_depends(const void *ko, size_t len, char **depends, sl_error *err);

/* A newc cpio archive being written to a file descriptor. */
typedef struct sl_cpio {
  int fd;
  uint64_t offset;
  uint32_t next_ino;
} sl_cpio;

int sl_cpio_add_dir(sl_cpio *c, const char *name, uint32_t mode, sl_error *err);
int sl_cpio_add_file(sl_cpio *c, const char *name, uint32_t mode, const void *data,
                     size_t len, sl_error *err);
int sl_cpio_add_symlink(sl_cpio *c, const char *name, const char *target, sl_error *err);
int sl_cpio_finish(sl_cpio *c, sl_error *err);

/* Inputs of an initramfs. `agent` is the static agent binary that /init
 * starts as the guest's PID 1 on the root disk. */
typedef struct sl_vm_initrd_spec {
  const sl_vm_kernel *kernel;
  const char *busybox; /* a static busybox */
  const char *agent;
} sl_vm_initrd_spec;

/* Build (or reuse) the initramfs for `spec` under `cache_dir`; its name
 * carries a hash of the inputs, so a new agent gives a new file.
 * NOTE: old archives are never removed, because snapshots name theirs in
 * vm.json and their forks start QEMU with it. */
int sl_vm_initrd_ensure(const char *cache_dir, const sl_vm_initrd_spec *spec, char *path,
                        size_t path_len, sl_error *err);

/* The /init script of the initramfs (exposed for tests). */
extern const char sl_vm_init_script[];

/* Make an ext4 image of the directory `root` (mke2fs -d) of `size_mb` MiB
 * and convert it to a qcow2 image at `qcow2`. */
int sl_vm_disk_build(const char *root, unsigned size_mb, const char *qcow2, sl_error *err);

/* The qcow2 root disk for the root filesystem `root` of a template layer:
 * <cache_dir>/disks/<key>.qcow2, built once (under a lock) and reused, so
 * `key` must change whenever the tree does (a layer id made from a digest
 * of its contents). The file system gets twice the tree's size plus 1 GiB,
 * at least `min_mb` MiB, as free space for the guest. */
int sl_vm_base_disk(const char *cache_dir, const char *key, const char *root, unsigned min_mb,
                    char *path, size_t path_len, sl_error *err);

/* Create a qcow2 overlay at `overlay` whose backing file is `backing`
 * (an absolute path to a qcow2 image). */
int sl_vm_disk_overlay(const char *backing, const char *overlay, sl_error *err);

#endif
