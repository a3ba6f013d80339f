/* File requests. Paths are resolved by the kernel in the agent's own root
 * (the sandbox's, or the --root chroot in tests), exactly as for the
 * sandbox's processes, so `..` and symlinks cannot leave it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* Reply to a failed file operation in the error contract's words; the
 * path is quoted when it is empty or has spaces or control bytes. */
static void reply_file_error(conn *c, uint32_t id, int code, const char *op, const char *path) {
  char quoted[SL_SUBJECT_MAX];
  const char *subject = sl_subject(quoted, sizeof quoted, path);
  switch (code) {
  case ENOENT: reply_error(c, id, code, "no such file: %s", subject); break;
  case EISDIR: reply_error(c, id, code, "is a directory: %s", subject); break;
  case ENOTDIR: reply_error(c, id, code, "not a directory: %s", subject); break;
  case EEXIST: reply_error(c, id, code, "already exists: %s", subject); break;
  case ENOTEMPTY: reply_error(c, id, code, "directory not empty: %s", subject); break;
  case EACCES:
  case EPERM: reply_error(c, id, code, "permission denied: %s", subject); break;
  case EINVAL: reply_error(c, id, code, "not a regular file: %s", subject); break;
  default: reply_error(c, id, code, "%s %s failed: %s", op, subject, strerror(code));
  }
}

static void parent_of(const char *path, char *out, size_t len);

/* Reply to ENOENT from creating `path` (a file, or a directory without
 * `parents`): name the missing parent directory when that is the cause. */
static void reply_create_error(conn *c, uint32_t id, int code, const char *op, const char *path) {
  char parent[PATH_MAX];
  struct stat st;
  parent_of(path, parent, sizeof parent);
  if (code != ENOENT || stat(parent, &st) == 0 || errno != ENOENT) {
    reply_file_error(c, id, code, op, path);
    return;
  }
  char quoted[SL_SUBJECT_MAX];
  reply_error(c, id, ENOENT,
              "no such file or directory: %s (a parent directory is missing: pass parents = true "
              "to create it)",
              sl_subject(quoted, sizeof quoted, path));
}

static int64_t mtime_ms(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static const char *type_name(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "dir";
  if (S_ISLNK(mode)) return "symlink";
  return "other";
}

static void put_stat(sl_buf *b, const char *path, const struct stat *st) {
  sl_frame_put_str(b, SL_F_TYPE, type_name(st->st_mode));
  sl_frame_put_i64(b, SL_F_SIZE, st->st_size);
  sl_frame_put_i64(b, SL_F_MODE, st->st_mode & 07777);
  sl_frame_put_i64(b, SL_F_MTIME_MS, mtime_ms(st));
  if (S_ISLNK(st->st_mode) && path != NULL) {
    char target[4096];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n >= 0) sl_frame_put_bytes(b, SL_F_LINK_TARGET, target, (size_t)n);
  }
}

/* Read the PATH field, which every file request needs. */
static char *request_path(conn *c, const sl_frame *f, uint8_t key) {
  char *path = NULL;
  sl_error err = {0};
  int rc = sl_frame_get_str(f, key, &path, &err);
  if (rc < 0) {
    reply_sl_error(c, f->id, &err);
    return NULL;
  }
  if (rc == 0 || path[0] == '\0') {
    reply_error(c, f->id, EINVAL, "missing path");
    free(path);
    return NULL;
  }
  return path;
}

static int64_t get_i64_or(const sl_frame *f, uint8_t key, int64_t def) {
  int64_t v = def;
  if (sl_frame_get_i64(f, key, &v, NULL) <= 0) return def;
  return v;
}

/* mkdir -p: create every missing directory of `path` (the last one too). */
static int make_dirs(char *path, mode_t mode) {
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(path, mode);
    *p = '/';
    if (rc < 0 && errno != EEXIST) return -1;
  }
  if (mkdir(path, mode) < 0 && errno != EEXIST) return -1;
  struct stat st;
  if (stat(path, &st) < 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

static int make_parent_dirs(const char *path) {
  char *copy = strdup(path);
  if (copy == NULL) return -1;
  char *slash = strrchr(copy, '/');
  int rc = 0;
  if (slash != NULL && slash != copy) {
    *slash = '\0';
    rc = make_dirs(copy, 0755);
  }
  free(copy);
  return rc;
}

/* Open a regular file for a read request; replies on error. */
static int open_for_read(conn *c, uint32_t id, const char *path, struct stat *st) {
  /* O_NONBLOCK: opening a FIFO must not hang the agent. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 || fstat(fd, st) < 0) {
    reply_file_error(c, id, errno, "read", path);
    if (fd >= 0) close(fd);
    return -1;
  }
  if (S_ISDIR(st->st_mode)) {
    reply_file_error(c, id, EISDIR, "read", path);
    close(fd);
    return -1;
  }
  if (!S_ISREG(st->st_mode)) {
    reply_file_error(c, id, EINVAL, "read", path);
    close(fd);
    return -1;
  }
  return fd;
}

static void handle_read(conn *c, const sl_frame *f, const char *path) {
  int64_t offset = get_i64_or(f, SL_F_OFFSET, 0);
  int64_t length = get_i64_or(f, SL_F_LENGTH, SL_PROTO_CHUNK);
  if (offset < 0 || length < 0) {
    reply_error(c, f->id, EINVAL, "invalid offset or length for %s", path);
    return;
  }
  if (length > SL_PROTO_CHUNK) length = SL_PROTO_CHUNK;
  struct stat st;
  int fd = open_for_read(c, f->id, path, &st);
  if (fd < 0) return;

  uint8_t *data = malloc(length ? (size_t)length : 1);
  ssize_t n = data ? pread(fd, data, (size_t)length, offset) : -1;
  int code = data ? errno : ENOMEM;
  close(fd);
  if (n < 0) {
    reply_file_error(c, f->id, code, "read", path);
  } else {
    reply r = reply_begin(c, SL_MSG_OK, f->id);
    sl_frame_put_bytes(r.b, SL_F_DATA, data, (size_t)n);
    sl_frame_put_i64(r.b, SL_F_OFFSET, offset);
    sl_frame_put_i64(r.b, SL_F_SIZE, st.st_size);
    sl_frame_put_i64(r.b, SL_F_EOF, n < length || offset + n >= st.st_size);
    reply_end(&r);
  }
  free(data);
}

static int write_all(int fd, const uint8_t *data, size_t len, int64_t offset, int append) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = append ? write(fd, data + done, len - done)
                       : pwrite(fd, data + done, len - done, offset + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

/* Open `path` for a write request with SL_FILE_* flags; replies on error. */
static int open_for_write(conn *c, uint32_t id, const char *path, int64_t flags, mode_t mode) {
  if ((flags & SL_FILE_PARENTS) && make_parent_dirs(path) < 0) {
    reply_file_error(c, id, errno, "write", path);
    return -1;
  }
  int oflags = O_WRONLY | O_CLOEXEC | O_NONBLOCK;
  if (flags & SL_FILE_CREATE) oflags |= O_CREAT;
  if (flags & SL_FILE_TRUNCATE) oflags |= O_TRUNC;
  if (flags & SL_FILE_APPEND) oflags |= O_APPEND;
  if (flags & SL_FILE_EXCL) oflags |= O_EXCL | O_CREAT;
  int fd = open(path, oflags, mode);
  struct stat st;
  if (fd < 0 && (flags & SL_FILE_CREATE)) {
    reply_create_error(c, id, errno, "write", path);
    return -1;
  }
  if (fd < 0 || fstat(fd, &st) < 0) {
    reply_file_error(c, id, errno, "write", path);
    if (fd >= 0) close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    reply_file_error(c, id, EINVAL, "write", path);
    close(fd);
    return -1;
  }
  return fd;
}

static void handle_write(conn *c, const sl_frame *f, const char *path) {
  int64_t flags = get_i64_or(f, SL_F_FLAGS, SL_FILE_CREATE | SL_FILE_TRUNCATE);
  int64_t mode = get_i64_or(f, SL_F_MODE, 0644);
  int64_t offset = get_i64_or(f, SL_F_OFFSET, 0);
  const uint8_t *data = NULL;
  size_t len = 0;
  sl_frame_get_bytes(f, SL_F_DATA, &data, &len);
  if (offset < 0 || mode < 0 || mode > 07777) {
    reply_error(c, f->id, EINVAL, "invalid offset or mode for %s", path);
    return;
  }
  int fd = open_for_write(c, f->id, path, flags, (mode_t)mode);
  if (fd < 0) return;

  int rc = write_all(fd, data, len, offset, (flags & SL_FILE_APPEND) != 0);
  int code = errno;
  if (close(fd) < 0 && rc == 0) {
    rc = -1;
    code = errno;
  }
  if (rc < 0) {
    reply_file_error(c, f->id, code, "write", path);
    return;
  }
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_LENGTH, (int64_t)len);
  reply_end(&r);
}

static void handle_list_dir(conn *c, const sl_frame *f, const char *path) {
  DIR *dir = opendir(path);
  if (dir == NULL) {
    reply_file_error(c, f->id, errno, "list", path);
    return;
  }
  int64_t count = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    reply r = reply_begin(c, SL_MSG_ENTRY, f->id);
    sl_frame_put_str(r.b, SL_F_NAME, de->d_name);
    sl_frame_put_str(r.b, SL_F_TYPE, type_name(st.st_mode));
    sl_frame_put_i64(r.b, SL_F_SIZE, st.st_size);
    sl_frame_put_i64(r.b, SL_F_MODE, st.st_mode & 07777);
    sl_frame_put_i64(r.b, SL_F_MTIME_MS, mtime_ms(&st));
    reply_end(&r);
    count++;
  }
  closedir(dir);
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_COUNT, count);
  reply_end(&r);
}

static void handle_stat(conn *c, const sl_frame *f, const char *path) {
  int nofollow = (get_i64_or(f, SL_F_FLAGS, 0) & SL_FILE_NOFOLLOW) != 0;
  struct stat st;
  if ((nofollow ? lstat(path, &st) : stat(path, &st)) < 0) {
    reply_file_error(c, f->id, errno, "stat", path);
    return;
  }
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  put_stat(r.b, path, &st);
  reply_end(&r);
}

static void handle_mkdir(conn *c, const sl_frame *f, char *path) {
  int64_t mode = get_i64_or(f, SL_F_MODE, 0755);
  int parents = (get_i64_or(f, SL_F_FLAGS, 0) & SL_FILE_PARENTS) != 0;
  int rc = parents ? make_dirs(path, (mode_t)mode) : mkdir(path, (mode_t)mode);
  if (rc < 0 && !parents) {
    reply_create_error(c, f->id, errno, "mkdir", path);
    return;
  }
  if (rc < 0) {
    reply_file_error(c, f->id, errno, "mkdir", path);
    return;
  }
  reply_ok(c, f->id);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

/* Copy `path` without its last component into `out`: "/" for "/x",
 * "." for "x". Trailing slashes are ignored. */
static void parent_of(const char *path, char *out, size_t len) {
  snprintf(out, len, "%s", path);
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/') out[--n] = '\0';
  char *slash = strrchr(out, '/');
  if (slash == NULL) snprintf(out, len, ".");
  else if (slash == out) out[1] = '\0';
  else *slash = '\0';
}

/* Decode the octal escapes (\040 for a space) of a mountinfo field. */
static void unescape_mount_field(char *s) {
  char *out = s;
  for (char *in = s; *in != '\0'; in++) {
    if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' &&
        in[3] >= '0' && in[3] <= '7') {
      *out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
      in += 3;
    } else {
      *out++ = *in;
    }
  }
  *out = '\0';
}

/* Find a mount point at `real` (an absolute path without symlinks) or,
 * with `below`, under it. Writes it to `found` and returns 1, 0 when
 * there is none, -1 when /proc/self/mountinfo cannot be read. */
static int find_mount(const char *real, int below, char *found, size_t len) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return -1;
  char line[PATH_MAX * 2 + 256];
  size_t rlen = strlen(real);
  int hit = 0;
  while (!hit && fgets(line, sizeof line, f) != NULL) {
    /* Fields: id, parent id, major:minor, root, mount point, ... */
    char *save = NULL, *field = strtok_r(line, " ", &save);
    for (int i = 0; field != NULL && i < 4; i++) field = strtok_r(NULL, " ", &save);
    if (field == NULL) continue;
    unescape_mount_field(field);
    if (strcmp(field, real) == 0)
      hit = 1;
    else if (below && strncmp(field, real, rlen) == 0 && (rlen == 1 || field[rlen] == '/'))
      hit = 1;
    if (hit) snprintf(found, len, "%s", field);
  }
  fclose(f);
  return hit;
}

/* Whether `real` is on another file system than its parent folder: the
 * check for a mount point when mountinfo cannot be read. */
static int other_device_than_parent(const char *real) {
  char parent[PATH_MAX];
  parent_of(real, parent, sizeof parent);
  struct stat st, parent_st;
  return stat(real, &st) == 0 && stat(parent, &parent_st) == 0 && st.st_dev != parent_st.st_dev;
}

/* Reply with an error and return -1 when removing `path` would remove the
 * root, a mount point or (recursive) a folder with a mount point below
 * it. The check runs before anything is deleted, because deleting first
 * would empty most of the tree and then fail on the mount point. */
static int check_removable(conn *c, uint32_t id, const char *path, const struct stat *st,
                           int recursive) {
  char real[PATH_MAX], found[PATH_MAX], quoted[SL_SUBJECT_MAX];
  /* A symlink is removed itself, never its target. */
  if (S_ISLNK(st->st_mode) || realpath(path, real) == NULL) return 0;
  sl_subject(quoted, sizeof quoted, path);
  if (strcmp(real, "/") == 0) {
    reply_error(c, id, EINVAL, "cannot remove the root directory: %s", quoted);
    return -1;
  }
  int below = recursive && S_ISDIR(st->st_mode);
  int hit = find_mount(real, below, found, sizeof found);
  if (hit < 0) {
    hit = other_device_than_parent(real);
    snprintf(found, sizeof found, "%s", real);
  }
  if (hit == 0) return 0;
  if (strcmp(found, real) == 0)
    reply_error(c, id, EBUSY, "is a mount point: %s", quoted);
  else
    reply_error(c, id, EBUSY, "directory contains the mount point %s: %s", found, quoted);
  return -1;
}

static void handle_remove(conn *c, const sl_frame *f, const char *path) {
  int recursive = (get_i64_or(f, SL_F_FLAGS, 0) & SL_FILE_RECURSIVE) != 0;
  struct stat st;
  int rc = lstat(path, &st);
  if (rc == 0 && check_removable(c, f->id, path, &st, recursive) < 0) return;
  if (rc == 0 && S_ISDIR(st.st_mode)) {
    /* FTW_PHYS: symlinks are removed, never followed. */
    rc = recursive ? nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : rmdir(path);
  } else if (rc == 0) {
    rc = unlink(path);
  }
  if (rc < 0) {
    reply_file_error(c, f->id, errno, "remove", path);
    return;
  }
  reply_ok(c, f->id);
}

/* Reply to a failed rename(2) of `from`, which existed just before, to
 * `to`: name the value the error is about. */
static void reply_rename_error(conn *c, uint32_t id, int code, const char *from, const char *to) {
  char parent[PATH_MAX], qfrom[SL_SUBJECT_MAX], qto[SL_SUBJECT_MAX], qparent[SL_SUBJECT_MAX];
  sl_subject(qfrom, sizeof qfrom, from);
  sl_subject(qto, sizeof qto, to);
  parent_of(to, parent, sizeof parent);
  sl_subject(qparent, sizeof qparent, parent);
  struct stat st;
  int parent_missing = stat(parent, &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
  switch (code) {
  case EXDEV:
    reply_error(c, id, code, "cannot rename across mounts: %s to %s (copy, then remove)", qfrom, qto);
    break;
  case EEXIST:
  case ENOTEMPTY:
  case EISDIR: reply_file_error(c, id, code, "rename", to); break;
  case ENOENT:
  case ENOTDIR:
    if (parent_missing == ENOENT) reply_error(c, id, ENOENT, "no such directory: %s", qparent);
    else if (parent_missing == ENOTDIR) reply_error(c, id, ENOTDIR, "not a directory: %s", qparent);
    else if (code == ENOTDIR) reply_file_error(c, id, code, "rename", to);
    else reply_file_error(c, id, code, "rename", from);
    break;
  case EINVAL:
    reply_error(c, id, code, "cannot move a directory into itself: %s to %s", qfrom, qto);
    break;
  case EBUSY: reply_error(c, id, code, "is a mount point: %s", qfrom); break;
  default: reply_error(c, id, code, "rename %s to %s failed: %s", qfrom, qto, strerror(code));
  }
}

static void handle_rename(conn *c, const sl_frame *f, const char *path) {
  char *target = request_path(c, f, SL_F_NEW_PATH);
  if (target == NULL) return;
  unsigned flags = (get_i64_or(f, SL_F_FLAGS, 0) & SL_FILE_NOREPLACE) ? RENAME_NOREPLACE : 0;
  /* rename(2) checks that both parents are on one mount before it looks
   * up the source, so a missing source would read as EXDEV. */
  struct stat st;
  if (lstat(path, &st) < 0)
    reply_file_error(c, f->id, errno, "rename", path);
  else if (renameat2(AT_FDCWD, path, AT_FDCWD, target, flags) < 0)
    reply_rename_error(c, f->id, errno, path, target);
  else
    reply_ok(c, f->id);
  free(target);
}

void files_handle(conn *c, const sl_frame *f) {
  char *path = request_path(c, f, SL_F_PATH);
  if (path == NULL) return;
  switch (f->type) {
  case SL_MSG_FILE_READ: handle_read(c, f, path); break;
  case SL_MSG_FILE_WRITE: handle_write(c, f, path); break;
  case SL_MSG_LIST_DIR: handle_list_dir(c, f, path); break;
  case SL_MSG_STAT: handle_stat(c, f, path); break;
  case SL_MSG_MKDIR: handle_mkdir(c, f, path); break;
  case SL_MSG_REMOVE: handle_remove(c, f, path); break;
  case SL_MSG_RENAME: handle_rename(c, f, path); break;
  default: reply_error(c, f->id, ENOSYS, "unknown request type 0x%02x", f->type);
  }
  free(path);
}
