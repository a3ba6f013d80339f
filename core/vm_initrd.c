/* The initramfs: a newc cpio archive written directly (no cpio tool), with
 * busybox, the guest modules, the agent and an /init script. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "vm_image.h"
#include "vm_util.h"

/* The kernel runs /init as PID 1 with the kernel command line parameter
 * sandlot.ports=N, the number of agent ports on the host side. /init loads
 * the virtio modules, mounts the root disk and puts the agent on a tmpfs
 * at /.sandlot, so the root disk needs no copy of it. Once the N ports
 * exist it hands PID 1 to the agent, which serves each of them in stream
 * mode, with the process backend's default PATH, HOME and LANG and the
 * sandlot.env and sandlot.cwd of the command line (vm_argv.h). On any failure it prints the reason on the console and
 * powers off, which ends QEMU (-no-reboot) so the host sees the failure
 * at once. */
const char sl_vm_init_script[] =
    "#!/bin/busybox sh\n"
    "bb=/bin/busybox\n"
    "fail() { echo \"sandlot-init: $*\"; $bb poweroff -f; }\n"
    "$bb mount -t proc proc /proc\n"
    "$bb mount -t sysfs sysfs /sys\n"
    "$bb mount -t devtmpfs devtmpfs /dev\n"
    "while read -r m; do $bb insmod /modules/$m.ko || fail \"insmod $m failed\"; done "
    "</modules/order\n"
    "want=1; env=''; cwd=''\n"
    "for arg in $($bb cat /proc/cmdline); do\n"
    "  case $arg in\n"
    "    sandlot.ports=*) want=${arg#sandlot.ports=} ;;\n"
    "    sandlot.env=*) env=${arg#sandlot.env=} ;;\n"
    "    sandlot.cwd=*) cwd=${arg#sandlot.cwd=} ;;\n"
    "  esac\n"
    "done\n"
    "i=0\n"
    "while [ ! -b /dev/vda ]; do\n"
    "  i=$((i + 1)); [ $i -gt 1000 ] && fail 'root disk /dev/vda missing'\n"
    "  $bb sleep 0.01\n"
    "done\n"
    "$bb mount -t ext4 /dev/vda /newroot || fail 'mount of /dev/vda failed'\n"
    "for d in .sandlot proc sys dev tmp run; do $bb mkdir -p /newroot/$d; done\n"
    "$bb mount -t tmpfs -o mode=0755,size=64m sandlot /newroot/.sandlot\n"
    "$bb cp /sandlot/agent /newroot/.sandlot/agent || fail 'copy of the agent failed'\n"
    "set --\n"
    "if [ -n \"$env\" ]; then\n"
    "  echo \"$env\" | $bb base64 -d >/newroot/.sandlot/env || fail 'invalid sandlot.env'\n"
    "  set -- --env-file /.sandlot/env\n"
    "fi\n"
    "if [ -n \"$cwd\" ]; then\n"
    "  cwd=$(echo \"$cwd\" | $bb base64 -d) || fail 'invalid sandlot.cwd'\n"
    "  set -- \"$@\" --cwd \"$cwd\"\n"
    "fi\n"
    "i=0\n"
    "while :; do\n"
    "  ports=''; n=0\n"
    "  for p in /sys/class/virtio-ports/*; do\n"
    "    [ -e \"$p/name\" ] && [ -c \"/dev/${p##*/}\" ] || continue\n"
    "    case $($bb cat \"$p/name\") in\n"
    "      sandlot.agent.*) ports=\"$ports --serial /dev/${p##*/}\"; n=$((n + 1)) ;;\n"
    "    esac\n"
    "  done\n"
    "  [ $n -ge $want ] && break\n"
    "  i=$((i + 1)); [ $i -gt 1000 ] && fail \"found $n of $want agent ports\"\n"
    "  $bb sleep 0.01\n"
    "done\n"
    "$bb mount --move /dev /newroot/dev\n"
    "$bb mount --move /sys /newroot/sys\n"
    "$bb mount --move /proc /newroot/proc\n"
    "$bb mkdir -p /newroot/dev/pts /newroot/dev/shm\n"
    "$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts\n"
    "$bb mount -t tmpfs -o mode=1777 shm /newroot/dev/shm\n"
    "$bb mount -t tmpfs -o mode=1777 tmp /newroot/tmp\n"
    "$bb mount -t tmpfs -o mode=0755 run /newroot/run\n"
    "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
    "LANG=C.UTF-8\n"
    "unset TERM\n"
    "exec $bb switch_root /newroot /.sandlot/agent \"$@\" $ports\n";

/* Writing the archive. */

static int cpio_write(sl_cpio *c, const void *data, size_t len, sl_error *err) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(c->fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_error_errno(err, errno, "write initramfs");
    p += n;
    len -= (size_t)n;
    c->offset += (uint64_t)n;
  }
  return 0;
}

static int cpio_pad(sl_cpio *c, sl_error *err) {
  static const char zeros[4] = {0};
  size_t pad = (4 - c->offset % 4) % 4;
  return pad ? cpio_write(c, zeros, pad, err) : 0;
}

/* One entry: the 110-byte newc header, the name, then the data, each padded
 * to a multiple of 4 bytes. */
static int cpio_entry(sl_cpio *c, const char *name, uint32_t mode, uint32_t rdev_major,
                      uint32_t rdev_minor, const void *data, size_t len, sl_error *err) {
  if (len > UINT32_MAX) return sl_error_set(err, EFBIG, "initramfs entry too large: %s", name);
  char header[128];
  size_t name_size = strlen(name) + 1;
  snprintf(header, sizeof header,
           "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08zX%08X",
           c->next_ino++, mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u, (uint32_t)len, 0u, 0u,
           rdev_major, rdev_minor, name_size, 0u);
  int rc = cpio_write(c, header, 110, err);
  if (rc == 0) rc = cpio_write(c, name, name_size, err);
  if (rc == 0) rc = cpio_pad(c, err);
  if (rc == 0 && len > 0) rc = cpio_write(c, data, len, err);
  if (rc == 0) rc = cpio_pad(c, err);
  return rc;
}

int sl_cpio_add_dir(sl_cpio *c, const char *name, uint32_t mode, sl_error *err) {
  return cpio_entry(c, name, S_IFDIR | (mode & 07777), 0, 0, NULL, 0, err);
}

int sl_cpio_add_file(sl_cpio *c, const char *name, uint32_t mode, const void *data,
                     size_t len, sl_error *err) {
  return cpio_entry(c, name, S_IFREG | (mode & 07777), 0, 0, data, len, err);
}

int sl_cpio_add_symlink(sl_cpio *c, const char *name, const char *target, sl_error *err) {
  return cpio_entry(c, name, S_IFLNK | 0777, 0, 0, target, strlen(target), err);
}

static int cpio_add_chardev(sl_cpio *c, const char *name, uint32_t mode, uint32_t major_nr,
                            uint32_t minor_nr, sl_error *err) {
  return cpio_entry(c, name, S_IFCHR | (mode & 07777), major_nr, minor_nr, NULL, 0, err);
}

int sl_cpio_finish(sl_cpio *c, sl_error *err) {
  return cpio_entry(c, "TRAILER!!!", 0, 0, 0, NULL, 0, err);
}

/* Building the initramfs. */

static int add_host_file(sl_cpio *c, const char *name, const char *path, uint32_t mode,
                         sl_error *err) {
  char *data = NULL;
  size_t len = 0;
  int rc = sl_read_file(path, 256u << 20, &data, &len, err);
  if (rc == 0) rc = sl_cpio_add_file(c, name, mode, data, len, err);
  free(data);
  return rc;
}

static int add_modules(sl_cpio *c, const sl_vm_kernel *k, sl_error *err) {
  char path[4300], *order = NULL;
  snprintf(path, sizeof path, "%s/modules/order", k->dir);
  int rc = sl_read_file(path, 65536, &order, NULL, err);
  if (rc == 0) rc = sl_cpio_add_file(c, "modules/order", 0644, order, strlen(order), err);
  char *save = NULL;
  for (char *m = order ? strtok_r(order, "\n", &save) : NULL; m && rc == 0;
       m = strtok_r(NULL, "\n", &save)) {
    char name[128];
    snprintf(name, sizeof name, "modules/%s.ko", m);
    snprintf(path, sizeof path, "%s/modules/%s.ko", k->dir, m);
    rc = add_host_file(c, name, path, 0644, err);
  }
  free(order);
  return rc;
}

static int write_initrd(int fd, const sl_vm_initrd_spec *spec, sl_error *err) {
  sl_cpio c = {.fd = fd, .next_ino = 1};
  static const char *const dirs[] = {"bin", "dev", "proc", "sys", "newroot", "modules",
                                     "sandlot", NULL};
  int rc = 0;
  for (size_t i = 0; dirs[i] && rc == 0; i++) rc = sl_cpio_add_dir(&c, dirs[i], 0755, err);
  /* The kernel opens /dev/console for /init's stdio before devtmpfs is
   * mounted, so the node must be in the archive. */
  if (rc == 0) rc = cpio_add_chardev(&c, "dev/console", 0600, 5, 1, err);
  if (rc == 0)
    rc = sl_cpio_add_file(&c, "init", 0755, sl_vm_init_script, strlen(sl_vm_init_script), err);
  if (rc == 0) rc = add_host_file(&c, "bin/busybox", spec->busybox, 0755, err);
  if (rc == 0) rc = add_host_file(&c, "sandlot/agent", spec->agent, 0755, err);
  if (rc == 0) rc = add_modules(&c, spec->kernel, err);
  if (rc == 0) rc = sl_cpio_finish(&c, err);
  return rc;
}

/* FNV-1a over the script, the kernel release, the module list, busybox and
 * the agent, so a change of any of them names a new archive. */
static uint64_t hash_bytes(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static int hash_file(uint64_t *h, const char *path, sl_error *err) {
  char *data = NULL;
  size_t len = 0;
  int rc = sl_read_file(path, 256u << 20, &data, &len, err);
  if (rc == 0) *h = hash_bytes(*h, data, len);
  free(data);
  return rc;
}

static int hash_inputs(const sl_vm_initrd_spec *spec, uint64_t *out, sl_error *err) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = hash_bytes(h, sl_vm_init_script, strlen(sl_vm_init_script));
  h = hash_bytes(h, spec->kernel->release, strlen(spec->kernel->release));
  char order[4300];
  snprintf(order, sizeof order, "%s/modules/order", spec->kernel->dir);
  int rc = hash_file(&h, order, err);
  if (rc == 0) rc = hash_file(&h, spec->busybox, err);
  if (rc == 0) rc = hash_file(&h, spec->agent, err);
  *out = h;
  return rc;
}

int sl_vm_initrd_ensure(const char *cache_dir, const sl_vm_initrd_spec *spec, char *path,
                        size_t path_len, sl_error *err) {
  uint64_t h = 0;
  int rc = hash_inputs(spec, &h, err);
  if (rc < 0) return sl_error_wrap(err, "initramfs");
  snprintf(path, path_len, "%s/initrd-%016llx.cpio", cache_dir, (unsigned long long)h);
  if (sl_path_exists(path)) return 0;

  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return sl_error_errno(err, errno, "create %s", tmp);
  rc = write_initrd(fd, spec, err);
  if (close(fd) < 0 && rc == 0) rc = sl_error_errno(err, errno, "close %s", tmp);
  if (rc == 0 && rename(tmp, path) < 0) rc = sl_error_errno(err, errno, "rename %s", tmp);
  if (rc < 0) {
    unlink(tmp);
    return sl_error_wrap(err, "initramfs");
  }
  SL_INFO("vm.initrd_built", "path=%s", path);
  return 0;
}
