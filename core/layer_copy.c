/* Layer copy and removal with directory file descriptors. */
#include "layer_copy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define OVERLAY_XATTR_PREFIX "trusted.overlay."
#define OVERLAY_OPAQUE "trusted.overlay.opaque"

/* Hard links already copied: source (dev, ino) to the destination path
 * relative to the destination root. */
typedef struct {
  dev_t dev;
  ino_t ino;
  char *path;
} link_entry;

typedef struct {
  int dst_root;
  unsigned flags;  /* SL_COPY_* */
  dev_t root_dev;  /* device of the source root, for SL_COPY_ONE_FILE_SYSTEM */
  link_entry *links;
  size_t link_count;
  size_t link_capacity;
  sl_layer_copy_stats stats;
  sl_error *err;
  char path[4096]; /* current path relative to the roots, for messages and links */
} copy_ctx;

static int fail(copy_ctx *c, int code, const char *what) {
  return sl_error_errno(c->err, code, "cannot %s %s", what, c->path[0] ? c->path : ".");
}

/* Keep an xattr unless it is overlayfs bookkeeping other than opacity. */
static bool keep_xattr(const char *name) {
  if (strncmp(name, OVERLAY_XATTR_PREFIX, strlen(OVERLAY_XATTR_PREFIX)) != 0) return true;
  return strcmp(name, OVERLAY_OPAQUE) == 0;
}

/* Copy extended attributes between two open regular files or
 * directories. Values are at most XATTR_SIZE_MAX (64 KiB) on Linux. */
static int copy_xattrs(copy_ctx *c, int src_fd, int dst_fd) {
  char names[8192];
  ssize_t len = flistxattr(src_fd, names, sizeof names);
  if (len < 0) return errno == ENOTSUP ? 0 : fail(c, errno, "list xattrs of");
  char *value = malloc(65536);
  if (value == NULL) return sl_error_set(c->err, ENOMEM, "out of memory copying a layer");
  int rc = 0;
  for (char *name = names; rc == 0 && name < names + len; name += strlen(name) + 1) {
    if (!keep_xattr(name)) continue;
    ssize_t n = fgetxattr(src_fd, name, value, 65536);
    if (n < 0)
      rc = fail(c, errno, "read xattr of");
    else if (fsetxattr(dst_fd, name, value, (size_t)n, 0) < 0)
      rc = fail(c, errno, "set xattr on");
  }
  free(value);
  return rc;
}

/* Owner, mode and times, after the content so the times stay. */
static int copy_metadata(copy_ctx *c, int dst_dir, const char *name, const struct stat *st) {
  if (fchownat(dst_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
    return fail(c, errno, "set the owner of");
  if (!S_ISLNK(st->st_mode) && fchmodat(dst_dir, name, st->st_mode & 07777, 0) < 0)
    return fail(c, errno, "set the mode of");
  struct timespec times[2] = {st->st_atim, st->st_mtim};
  if (utimensat(dst_dir, name, times, AT_SYMLINK_NOFOLLOW) < 0)
    return fail(c, errno, "set the times of");
  return 0;
}

/* Copy [*in_off, end) with pread and pwrite, for file systems between
 * which copy_file_range() does not work. */
static int copy_range_by_hand(copy_ctx *c, int in, off_t *in_off, int out, off_t *out_off,
                              off_t end) {
  char buf[65536];
  while (*in_off < end) {
    size_t want = (size_t)(end - *in_off) < sizeof buf ? (size_t)(end - *in_off) : sizeof buf;
    ssize_t n = pread(in, buf, want, *in_off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(c, errno, "read");
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(out, buf + done, (size_t)(n - done), *out_off + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail(c, errno, "write");
      done += w;
    }
    *in_off += n;
    *out_off += n;
    c->stats.bytes += (uint64_t)n;
  }
  return 0;
}

/* Copy the data segments of a regular file, leaving holes as holes.
 * copy_file_range() fails with EXDEV between file systems of different
 * types (seen from a sandbox's tmpfs to the store's ext4 on Linux 6.18),
 * and those ranges are copied by hand. */
static int copy_data(copy_ctx *c, int in, int out, off_t size) {
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) return fail(c, errno, "seek in");
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) return fail(c, errno, "seek in");
    off_t in_off = data, out_off = data;
    while (in_off < hole) {
      ssize_t n = copy_file_range(in, &in_off, out, &out_off, (size_t)(hole - in_off), 0);
      if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
        int rc = copy_range_by_hand(c, in, &in_off, out, &out_off, hole);
        if (rc < 0) return rc;
        break;
      }
      if (n < 0) return fail(c, errno, "copy");
      if (n == 0) break;
      c->stats.bytes += (uint64_t)n;
    }
    pos = hole;
  }
  if (ftruncate(out, size) < 0) return fail(c, errno, "set the size of");
  return 0;
}

static int remember_link(copy_ctx *c, const struct stat *st) {
  if (c->link_count == c->link_capacity) {
    size_t capacity = c->link_capacity ? c->link_capacity * 2 : 16;
    link_entry *grown = realloc(c->links, capacity * sizeof *grown);
    if (grown == NULL) return sl_error_set(c->err, ENOMEM, "out of memory copying a layer");
    c->links = grown;
    c->link_capacity = capacity;
  }
  char *path = strdup(c->path);
  if (path == NULL) return sl_error_set(c->err, ENOMEM, "out of memory copying a layer");
  c->links[c->link_count++] = (link_entry){st->st_dev, st->st_ino, path};
  return 0;
}

static const char *find_link(const copy_ctx *c, const struct stat *st) {
  for (size_t i = 0; i < c->link_count; i++)
    if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino) return c->links[i].path;
  return NULL;
}

static int copy_regular(copy_ctx *c, int src_dir, int dst_dir, const char *name,
                        const struct stat *st) {
  int in = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (in < 0) return fail(c, errno, "open");
  int out = openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) {
    close(in);
    return fail(c, errno, "create");
  }
  int rc = copy_data(c, in, out, st->st_size);
  if (rc == 0) rc = copy_xattrs(c, in, out);
  close(in);
  close(out);
  return rc;
}

/* Symlinks, fifos, sockets and device nodes (whiteouts are 0:0 char
 * devices). */
static int copy_special(copy_ctx *c, int src_dir, int dst_dir, const char *name,
                        const struct stat *st) {
  if (S_ISLNK(st->st_mode)) {
    char target[4096];
    ssize_t n = readlinkat(src_dir, name, target, sizeof target - 1);
    if (n < 0) return fail(c, errno, "read the symlink");
    target[n] = '\0';
    if (symlinkat(target, dst_dir, name) < 0) return fail(c, errno, "create the symlink");
    return 0;
  }
  /* NOTE: xattrs of symlinks, fifos, sockets and device nodes are not
   * copied because no descriptor-based xattr call reaches them. Overlayfs
   * whiteouts carry none. */
  if (mknodat(dst_dir, name, st->st_mode & (S_IFMT | 07777), st->st_rdev) < 0)
    return fail(c, errno, "create the node");
  return 0;
}

static int copy_tree(copy_ctx *c, int src_dir, int dst_dir);

static int copy_directory(copy_ctx *c, int src_dir, int dst_dir, const char *name) {
  if (mkdirat(dst_dir, name, 0700) < 0) return fail(c, errno, "create the directory");
  int in = openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) return fail(c, errno, "open");
  int out = openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (out < 0) {
    close(in);
    return fail(c, errno, "open");
  }
  struct stat st;
  int rc = fstat(in, &st) < 0 ? fail(c, errno, "stat") : 0;
  /* A mount point below the root (e.g. /dev/pts under /dev) stays an empty
   * directory with SL_COPY_ONE_FILE_SYSTEM. */
  bool descend = !(c->flags & SL_COPY_ONE_FILE_SYSTEM) || st.st_dev == c->root_dev;
  if (rc == 0 && descend) rc = copy_tree(c, in, out);
  if (rc == 0 && descend) rc = copy_xattrs(c, in, out);
  close(in);
  close(out);
  return rc;
}

static int copy_entry(copy_ctx *c, int src_dir, int dst_dir, const char *name) {
  struct stat st;
  if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return fail(c, errno, "stat");
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    const char *first = find_link(c, &st);
    if (first != NULL) {
      if (linkat(c->dst_root, first, dst_dir, name, 0) < 0) return fail(c, errno, "link");
      c->stats.links++;
      return 0;
    }
    int rc = remember_link(c, &st);
    if (rc < 0) return rc;
  }

  int rc;
  if (S_ISDIR(st.st_mode))
    rc = copy_directory(c, src_dir, dst_dir, name);
  else if (S_ISREG(st.st_mode))
    rc = copy_regular(c, src_dir, dst_dir, name, &st);
  else
    rc = copy_special(c, src_dir, dst_dir, name, &st);
  if (rc == 0) rc = copy_metadata(c, dst_dir, name, &st);
  if (rc == 0) c->stats.files++;
  return rc;
}

static int copy_tree(copy_ctx *c, int src_dir, int dst_dir) {
  int fd = dup(src_dir);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d == NULL) {
    if (fd >= 0) close(fd);
    return fail(c, errno, "list");
  }
  size_t base = strlen(c->path);
  int rc = 0;
  struct dirent *e;
  errno = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int n = snprintf(c->path + base, sizeof c->path - base, "%s%s", base ? "/" : "", e->d_name);
    if (n < 0 || (size_t)n >= sizeof c->path - base) {
      rc = sl_error_set(c->err, ENAMETOOLONG, "path too long in layer: %s", c->path);
      break;
    }
    rc = copy_entry(c, src_dir, dst_dir, e->d_name);
    c->path[base] = '\0';
    errno = 0;
  }
  if (rc == 0 && errno != 0) rc = fail(c, errno, "list");
  closedir(d);
  return rc;
}

int sl_layer_copy(const char *src_dir, const char *dst_dir, sl_layer_copy_stats *stats,
                  sl_error *err) {
  return sl_layer_copy_ex(src_dir, dst_dir, 0, stats, err);
}

int sl_layer_copy_ex(const char *src_dir, const char *dst_dir, unsigned flags,
                     sl_layer_copy_stats *stats, sl_error *err) {
  copy_ctx c = {.err = err, .flags = flags};
  struct stat st;
  int src = open(src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (src < 0) return sl_error_errno(err, errno, "cannot open layer source %s", src_dir);
  c.root_dev = fstat(src, &st) == 0 ? st.st_dev : 0;
  bool into = flags & SL_COPY_INTO_EXISTING;
  if (c.root_dev == 0 || (!into && mkdir(dst_dir, 0700) < 0)) {
    int saved = errno;
    close(src);
    return sl_error_errno(err, saved, "cannot create layer %s", dst_dir);
  }
  c.dst_root = open(dst_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int rc = c.dst_root < 0 ? sl_error_errno(err, errno, "cannot open layer %s", dst_dir)
                          : copy_tree(&c, src, c.dst_root);
  if (rc == 0) rc = copy_xattrs(&c, src, c.dst_root);
  if (rc == 0 && fchown(c.dst_root, st.st_uid, st.st_gid) < 0) rc = fail(&c, errno, "chown");
  if (rc == 0 && fchmod(c.dst_root, st.st_mode & 07777) < 0) rc = fail(&c, errno, "chmod");
  if (rc < 0) sl_error_wrap(err, "copy %s to %s", src_dir, dst_dir);
  for (size_t i = 0; i < c.link_count; i++) free(c.links[i].path);
  free(c.links);
  close(src);
  if (c.dst_root >= 0) close(c.dst_root);
  if (rc == 0 && stats != NULL) *stats = c.stats;
  return rc;
}

static int remove_tree(int dir, sl_error *err);

static int remove_entry(int dir, const char *name, sl_error *err) {
  if (unlinkat(dir, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return sl_error_errno(err, errno, "cannot remove %s", name);
  int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub < 0) return sl_error_errno(err, errno, "cannot open %s", name);
  int rc = remove_tree(sub, err);
  close(sub);
  if (rc == 0 && unlinkat(dir, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = sl_error_errno(err, errno, "cannot remove %s", name);
  return rc;
}

static int remove_tree(int dir, sl_error *err) {
  int fd = dup(dir);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d == NULL) {
    if (fd >= 0) close(fd);
    return sl_error_errno(err, errno, "cannot list a directory to remove");
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    rc = remove_entry(dir, e->d_name, err);
  }
  closedir(d);
  return rc;
}

static int size_tree(int dir, uint64_t *bytes, sl_error *err) {
  int fd = dup(dir);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d == NULL) {
    if (fd >= 0) close(fd);
    return sl_error_errno(err, errno, "cannot list a directory to measure");
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      rc = sl_error_errno(err, errno, "cannot stat %s", e->d_name);
      break;
    }
    *bytes += (uint64_t)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode)) continue;
    int sub = openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      rc = sl_error_errno(err, errno, "cannot open %s", e->d_name);
      break;
    }
    rc = size_tree(sub, bytes, err);
    close(sub);
  }
  closedir(d);
  return rc;
}

int sl_layer_size(const char *dir, uint64_t *bytes, sl_error *err) {
  *bytes = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "cannot open %s", dir);
  int rc = size_tree(fd, bytes, err);
  close(fd);
  return rc < 0 ? sl_error_wrap(err, "size of %s", dir) : 0;
}

int sl_layer_sync(const char *dir, sl_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "cannot open %s", dir);
  int rc = syncfs(fd) < 0 ? sl_error_errno(err, errno, "cannot sync %s", dir) : 0;
  close(fd);
  return rc;
}

int sl_layer_remove(const char *dir, sl_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 0;
  if (fd < 0) return sl_error_errno(err, errno, "cannot open %s", dir);
  int rc = remove_tree(fd, err);
  close(fd);
  if (rc == 0 && rmdir(dir) < 0 && errno != ENOENT)
    rc = sl_error_errno(err, errno, "cannot remove %s", dir);
  if (rc < 0) sl_error_wrap(err, "remove %s", dir);
  return rc;
}
