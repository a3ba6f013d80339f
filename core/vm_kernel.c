/* Fetch and unpack the guest kernel and pick the modules the guest needs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "vm_image.h"
#include "vm_util.h"

/* virtio_mmio finds the devices of the microvm machine, virtio_blk is the
 * root disk, virtio_console the agent ports, and virtio_balloon reports
 * free guest pages so that QEMU punches them out of the RAM file, which
 * keeps snapshot copies small. ext4 and the 8250 serial console are built
 * into Debian's cloud kernel (6.1). */
const char *const sl_vm_guest_modules[] = {"virtio_mmio", "virtio_blk", "virtio_console",
                                           "virtio_balloon", NULL};

#define MODULES_MAX 16

int sl_kmod_depends(const void *ko, size_t len, char **depends, sl_error *err) {
  static const char tag[] = "depends=";
  const char *p = ko, *end = p + len;
  while (p < end) {
    const char *hit = memmem(p, (size_t)(end - p), tag, sizeof tag - 1);
    if (hit == NULL) break;
    /* A .modinfo entry starts after a NUL byte, which distinguishes it
     * from the same text inside another string. */
    if (hit > (const char *)ko && hit[-1] == '\0') {
      const char *value = hit + sizeof tag - 1;
      const char *nul = memchr(value, '\0', (size_t)(end - value));
      if (nul == NULL) break;
      *depends = strndup(value, (size_t)(nul - value));
      if (*depends == NULL) return sl_error_set(err, ENOMEM, "out of memory");
      return 0;
    }
    p = hit + 1;
  }
  return sl_error_set(err, ENOENT, "module has no depends= entry in .modinfo");
}

/* Module files found under one kernel's lib/modules tree. */
typedef struct module_index {
  char *names[4096];
  char *paths[4096];
  size_t n;
} module_index;

static module_index *walk_index; /* nftw passes no user pointer */

static int index_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  const char *base = path + ftw->base;
  size_t len = strlen(base);
  if (flag != FTW_F || len < 4 || strcmp(base + len - 3, ".ko") != 0) return 0;
  if (walk_index->n >= sizeof walk_index->names / sizeof walk_index->names[0]) return 0;
  char *name = strndup(base, len - 3);
  for (char *c = name; c && *c; c++)
    if (*c == '-') *c = '_';
  walk_index->names[walk_index->n] = name;
  walk_index->paths[walk_index->n] = strdup(path);
  walk_index->n++;
  return 0;
}

static const char *index_find(const module_index *idx, const char *name) {
  for (size_t i = 0; i < idx->n; i++)
    if (idx->names[i] && strcmp(idx->names[i], name) == 0) return idx->paths[i];
  return NULL;
}

static void index_free(module_index *idx) {
  for (size_t i = 0; i < idx->n; i++) {
    free(idx->names[i]);
    free(idx->paths[i]);
  }
}

typedef struct module_order {
  char names[MODULES_MAX][64];
  size_t n;
} module_order;

static bool order_has(const module_order *o, const char *name) {
  for (size_t i = 0; i < o->n; i++)
    if (strcmp(o->names[i], name) == 0) return true;
  return false;
}

/* Append `name` after its dependencies (depth-first). */
static int order_add(module_order *o, const module_index *idx, const char *name, int depth,
                     sl_error *err) {
  if (order_has(o, name)) return 0;
  if (depth > 8) return sl_error_set(err, ELOOP, "module dependencies too deep at %s", name);
  const char *path = index_find(idx, name);
  if (path == NULL) return sl_error_set(err, ENOENT, "kernel module not found: %s", name);
  char *ko = NULL, *depends = NULL;
  size_t len = 0;
  int rc = sl_read_file(path, 64u << 20, &ko, &len, err);
  if (rc == 0) rc = sl_kmod_depends(ko, len, &depends, err);
  free(ko);
  if (rc < 0) return sl_error_wrap(err, "module %s", name);
  char *save = NULL;
  for (char *dep = strtok_r(depends, ",", &save); dep && rc == 0; dep = strtok_r(NULL, ",", &save))
    rc = order_add(o, idx, dep, depth + 1, err);
  free(depends);
  if (rc < 0) return rc;
  if (o->n == MODULES_MAX) return sl_error_set(err, E2BIG, "too many guest modules");
  snprintf(o->names[o->n++], sizeof o->names[0], "%s", name);
  return 0;
}

/* Copy the needed modules from the unpacked package into `out`/modules. */
static int install_modules(const char *modules_tree, const char *out, sl_error *err) {
  module_index *idx = calloc(1, sizeof *idx);
  if (idx == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  walk_index = idx;
  int rc = nftw(modules_tree, index_entry, 32, FTW_PHYS) < 0
               ? sl_error_errno(err, errno, "walk %s", modules_tree)
               : 0;
  module_order order = {0};
  for (size_t i = 0; rc == 0 && sl_vm_guest_modules[i]; i++)
    rc = order_add(&order, idx, sl_vm_guest_modules[i], 0, err);

  char dir[4096], path[4200], list[MODULES_MAX * 65] = "";
  if (rc == 0) rc = sl_path_format(dir, sizeof dir, err, "%s/modules", out);
  if (rc == 0) rc = sl_mkdir_p(dir, 0755, err);
  for (size_t i = 0; rc == 0 && i < order.n; i++) {
    rc = sl_path_format(path, sizeof path, err, "%s/%s.ko", dir, order.names[i]);
    if (rc == 0) rc = sl_copy_sparse(index_find(idx, order.names[i]), path, err);
    strcat(list, order.names[i]);
    strcat(list, "\n");
  }
  snprintf(path, sizeof path, "%s/order", dir);
  if (rc == 0) rc = sl_write_file_atomic(path, list, strlen(list), 0644, err);
  index_free(idx);
  free(idx);
  return rc;
}

/* The name of the first "*.deb" in `dir` that starts with `prefix`. */
static int find_deb(const char *dir, const char *prefix, char *out, size_t out_len,
                    sl_error *err) {
  DIR *d = opendir(dir);
  if (d == NULL) return sl_error_errno(err, errno, "open %s", dir);
  struct dirent *e;
  int rc = sl_error_set(err, ENOENT, "no %s*.deb downloaded in %s", prefix, dir);
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 4 &&
        strcmp(e->d_name + len - 4, ".deb") == 0) {
      snprintf(out, out_len, "%s/%s", dir, e->d_name);
      sl_error_clear(err);
      rc = 0;
      break;
    }
  }
  closedir(d);
  return rc;
}

static int apt_download(const char *dir, const char *package, char *deb, size_t deb_len,
                        sl_error *err) {
  const char *argv[] = {"apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
                        package, NULL};
  int rc = sl_run_output_in(dir, argv, NULL, err);
  if (rc < 0) {
    /* A machine whose package lists were never fetched (or are stale)
     * knows no current kernel package: update them once and retry. */
    SL_INFO("vm.kernel_fetch", "package=%s retry=\"after apt-get update\" error=\"%s\"",
            package, err ? err->msg : "");
    const char *update[] = {"apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "update", NULL};
    if (sl_run_output(update, NULL, err) == 0) rc = sl_run_output_in(dir, argv, NULL, err);
  }
  if (rc < 0)
    return sl_error_wrap(err, "download of the guest kernel package %s (is the apt mirror "
                         "reachable and apt-get update done?)", package);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s_", package);
  return find_deb(dir, prefix, deb, deb_len, err);
}

/* The real kernel package that the metapackage `deb` depends on. */
static int kernel_package_of(const char *deb, char *name, size_t name_len, sl_error *err) {
  const char *argv[] = {"dpkg-deb", "-f", deb, "Depends", NULL};
  char *depends = NULL;
  int rc = sl_run_output(argv, &depends, err);
  if (rc < 0) return rc;
  size_t n = strcspn(depends, " (,|\n");
  if (n == 0 || strncmp(depends, "linux-image-", 12) != 0) {
    rc = sl_error_set(err, EPROTO, "unexpected Depends of %s: %s", SL_VM_KERNEL_PACKAGE,
                      depends);
  } else {
    snprintf(name, name_len, "%.*s", (int)n, depends);
  }
  free(depends);
  return rc;
}

static int unpack_kernel(const char *tmp, const char *deb, const char *release, sl_error *err) {
  char x[4096], src[4300], out[4096], dst[4300];
  if (sl_path_format(x, sizeof x, err, "%s/x", tmp) < 0 ||
      sl_path_format(out, sizeof out, err, "%s/kernel", tmp) < 0)
    return -err->code;
  const char *argv[] = {"dpkg-deb", "-x", deb, x, NULL};
  int rc = sl_run_output(argv, NULL, err);
  if (rc == 0) rc = sl_mkdir_p(out, 0755, err);
  if (rc == 0) rc = sl_path_format(src, sizeof src, err, "%s/boot/vmlinuz-%s", x, release);
  if (rc == 0) rc = sl_path_format(dst, sizeof dst, err, "%s/vmlinuz", out);
  if (rc == 0) rc = sl_copy_sparse(src, dst, err);
  if (rc == 0) rc = sl_path_format(src, sizeof src, err, "%s/lib/modules/%s/kernel", x, release);
  if (rc == 0) rc = install_modules(src, out, err);
  if (rc == 0) rc = sl_path_format(dst, sizeof dst, err, "%s/release", out);
  if (rc == 0) rc = sl_write_file_atomic(dst, release, strlen(release), 0644, err);
  return rc;
}

static int fetch_kernel(const char *cache_dir, const char *final, sl_error *err) {
  char tmp[4096], deb[4096], package[256];
  if (sl_path_format(tmp, sizeof tmp, err, "%s/kernel.tmp.%d", cache_dir, (int)getpid()) < 0)
    return -err->code;
  sl_remove_tree(tmp, NULL);
  int rc = sl_mkdir_p(tmp, 0755, err);
  if (rc == 0) rc = apt_download(tmp, SL_VM_KERNEL_PACKAGE, deb, sizeof deb, err);
  if (rc == 0) rc = kernel_package_of(deb, package, sizeof package, err);
  if (rc == 0) rc = apt_download(tmp, package, deb, sizeof deb, err);
  const char *release = package + strlen("linux-image-");
  if (rc == 0) rc = unpack_kernel(tmp, deb, release, err);
  /* tmp fits 4096 bytes, so this fits 4200. */
  char built[4200];
  snprintf(built, sizeof built, "%s/kernel", tmp);
  if (rc == 0 && rename(built, final) < 0) rc = sl_error_errno(err, errno, "rename to %s", final);
  sl_remove_tree(tmp, NULL);
  if (rc == 0) SL_INFO("vm.kernel_fetched", "package=%s dir=%s", package, final);
  return rc;
}

/* True when `dir` contains every module of sl_vm_guest_modules. A kernel
 * unpacked by an older sandlot with fewer modules is fetched again. */
static bool kernel_complete(const char *dir) {
  for (size_t i = 0; sl_vm_guest_modules[i]; i++) {
    char path[4300];
    if (sl_path_format(path, sizeof path, NULL, "%s/modules/%s.ko", dir, sl_vm_guest_modules[i]) < 0)
      return false;
    if (!sl_path_exists(path)) return false;
  }
  return true;
}

static int kernel_load(const char *dir, sl_vm_kernel *k, sl_error *err) {
  char path[4200], *release = NULL;
  int rc = sl_path_format(path, sizeof path, err, "%s/release", dir);
  if (rc == 0) rc = sl_read_file(path, sizeof k->release - 1, &release, NULL, err);
  if (rc < 0) return rc;
  if (sl_path_format(k->dir, sizeof k->dir, err, "%s", dir) < 0 ||
      sl_path_format(k->vmlinuz, sizeof k->vmlinuz, err, "%s/vmlinuz", dir) < 0) {
    free(release);
    return -err->code;
  }
  snprintf(k->release, sizeof k->release, "%s", release);
  free(release);
  return 0;
}

int sl_vm_kernel_ensure(const char *cache_dir, sl_vm_kernel *kernel, sl_error *err) {
  char dir[4096], lock_path[4200];
  snprintf(dir, sizeof dir, "%s/kernel", cache_dir);
  snprintf(lock_path, sizeof lock_path, "%s/kernel.lock", cache_dir);
  int rc = sl_mkdir_p(cache_dir, 0755, err);
  if (rc < 0) return rc;
  int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) return sl_error_errno(err, errno, "open %s", lock_path);
  while (flock(lock, LOCK_EX) < 0 && errno == EINTR) {
  }
  if (sl_path_exists(dir) && !kernel_complete(dir)) rc = sl_remove_tree(dir, err);
  if (rc == 0 && !sl_path_exists(dir)) rc = fetch_kernel(cache_dir, dir, err);
  if (rc == 0) rc = kernel_load(dir, kernel, err);
  close(lock);
  if (rc < 0) return sl_error_wrap(err, "guest kernel");
  return 0;
}
