/* Copying an overlay upper directory into a layer, and removing layers.
 * Needs root: whiteouts are device nodes and opacity is a trusted xattr. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "error.h"
#include "layer_copy.h"
#include "test.h"

static char base[64];
static char src[128], dst[128];

static void path_in(char *buf, size_t size, const char *root, const char *rel) {
  snprintf(buf, size, "%s/%s", root, rel);
}

static int write_file(const char *root, const char *rel, const char *text) {
  char p[256];
  path_in(p, sizeof p, root, rel);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int read_file(const char *root, const char *rel, char *buf, size_t size) {
  char p[256];
  path_in(p, sizeof p, root, rel);
  int fd = open(p, O_RDONLY | O_NOFOLLOW);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return 0;
}

/* An upper directory with every kind of entry overlayfs may leave. */
static int make_source(void) {
  char p[256], q[256];
  if (mkdir(src, 0755) < 0) return -1;
  if (write_file(src, "plain", "hello layer\n") < 0) return -1;
  path_in(p, sizeof p, src, "plain");
  struct timespec times[2] = {{1000000000, 0}, {1200000000, 500}};
  if (utimensat(AT_FDCWD, p, times, 0) < 0 || chown(p, 1234, 4321) < 0 || chmod(p, 0640) < 0)
    return -1;

  path_in(p, sizeof p, src, "sparse");
  int fd = open(p, O_WRONLY | O_CREAT, 0600);
  if (fd < 0 || pwrite(fd, "end", 3, 64 << 20) != 3) return -1;
  close(fd);

  path_in(p, sizeof p, src, "opaque");
  if (mkdir(p, 0750) < 0) return -1;
  if (setxattr(p, "trusted.overlay.opaque", "y", 1, 0) < 0) return -1;
  if (setxattr(p, "trusted.overlay.origin", "xyz", 3, 0) < 0) return -1;
  if (setxattr(p, "user.note", "kept", 4, 0) < 0) return -1;
  if (write_file(src, "opaque/inner", "inner\n") < 0) return -1;

  path_in(p, sizeof p, src, "deleted");
  if (mknod(p, S_IFCHR | 0000, makedev(0, 0)) < 0) return -1;
  path_in(p, sizeof p, src, "to-passwd");
  if (symlink("/etc/passwd", p) < 0) return -1;
  path_in(p, sizeof p, src, "to-root");
  if (symlink("/", p) < 0) return -1;
  path_in(p, sizeof p, src, "pipe");
  if (mkfifo(p, 0600) < 0) return -1;

  if (write_file(src, "linked-a", "same inode\n") < 0) return -1;
  path_in(p, sizeof p, src, "linked-a");
  path_in(q, sizeof q, src, "opaque/linked-b");
  return link(p, q);
}

static void setup(void) {
  snprintf(base, sizeof base, "/tmp/sandlot-layer-XXXXXX");
  if (mkdtemp(base) == NULL) SKIP("cannot create a temporary directory");
  path_in(src, sizeof src, base, "upper");
  path_in(dst, sizeof dst, base, "layer");
}

static void test_copy_preserves_entries(void) {
  CHECK_INT(make_source(), ==, 0);
  sl_error err = {0};
  sl_layer_copy_stats stats;
  CHECK_OK(sl_layer_copy(src, dst, &stats, &err), &err);
  CHECK_INT(stats.links, ==, 1);
  CHECK(stats.files >= 9);

  char buf[256], p[256], q[256];
  CHECK_INT(read_file(dst, "plain", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "hello layer\n");
  struct stat st;
  path_in(p, sizeof p, dst, "plain");
  CHECK_INT(lstat(p, &st), ==, 0);
  CHECK_INT(st.st_uid, ==, 1234);
  CHECK_INT(st.st_gid, ==, 4321);
  CHECK_INT(st.st_mode & 07777, ==, 0640);
  CHECK_INT(st.st_mtim.tv_sec, ==, 1200000000);
  CHECK_INT(st.st_mtim.tv_nsec, ==, 500);

  path_in(p, sizeof p, dst, "deleted");
  CHECK_INT(lstat(p, &st), ==, 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK_INT(st.st_rdev, ==, makedev(0, 0));

  path_in(p, sizeof p, dst, "to-passwd");
  CHECK_INT(lstat(p, &st), ==, 0);
  CHECK(S_ISLNK(st.st_mode));
  ssize_t n = readlink(p, buf, sizeof buf - 1);
  CHECK_INT(n, ==, 11);
  buf[n] = '\0';
  CHECK_STR(buf, "/etc/passwd");
  path_in(p, sizeof p, dst, "to-root");
  CHECK_INT(lstat(p, &st), ==, 0);
  CHECK(S_ISLNK(st.st_mode));

  path_in(p, sizeof p, dst, "pipe");
  CHECK_INT(lstat(p, &st), ==, 0);
  CHECK(S_ISFIFO(st.st_mode));

  path_in(p, sizeof p, dst, "linked-a");
  path_in(q, sizeof q, dst, "opaque/linked-b");
  struct stat a, b;
  CHECK_INT(lstat(p, &a), ==, 0);
  CHECK_INT(lstat(q, &b), ==, 0);
  CHECK_INT(a.st_ino, ==, b.st_ino);
  CHECK_INT(a.st_nlink, ==, 2);
}

static void test_copy_overlay_xattrs(void) {
  char p[256], value[16];
  path_in(p, sizeof p, dst, "opaque");
  ssize_t n = getxattr(p, "trusted.overlay.opaque", value, sizeof value);
  CHECK_INT(n, ==, 1);
  CHECK_INT(value[0], ==, 'y');
  CHECK_INT(getxattr(p, "trusted.overlay.origin", value, sizeof value), ==, -1);
  CHECK_INT(errno, ==, ENODATA);
  n = getxattr(p, "user.note", value, sizeof value);
  CHECK_INT(n, ==, 4);
  CHECK(memcmp(value, "kept", 4) == 0);
  struct stat st;
  CHECK_INT(stat(p, &st), ==, 0);
  CHECK_INT(st.st_mode & 07777, ==, 0750);
}

static void test_copy_keeps_holes(void) {
  char p[256];
  path_in(p, sizeof p, dst, "sparse");
  struct stat st;
  CHECK_INT(stat(p, &st), ==, 0);
  CHECK_INT(st.st_size, ==, (64 << 20) + 3);
  CHECK(st.st_blocks * 512 < (1 << 20));
  int fd = open(p, O_RDONLY);
  CHECK(fd >= 0);
  char tail[4] = {0};
  CHECK_INT(pread(fd, tail, 3, 64 << 20), ==, 3);
  close(fd);
  CHECK_STR(tail, "end");
}

static void test_copy_rejects_existing_target(void) {
  sl_error err = {0};
  CHECK_INT(sl_layer_copy(src, dst, NULL, &err), ==, -EEXIST);
  CHECK(strstr(err.msg, dst) != NULL);
}

static void test_copy_missing_source(void) {
  char missing[256], target[256];
  path_in(missing, sizeof missing, base, "no-such-upper");
  path_in(target, sizeof target, base, "never-made");
  sl_error err = {0};
  CHECK_INT(sl_layer_copy(missing, target, NULL, &err), ==, -ENOENT);
  CHECK_INT(access(target, F_OK), ==, -1);
}

/* A tree with a tmpfs mounted below it, copied into an existing folder
 * without crossing into the mount (how a sandbox's /dev is captured). */
static void test_copy_one_file_system(void) {
  char tree[200], mnt[256], into[200], p[300];
  path_in(tree, sizeof tree, base, "devlike");
  path_in(mnt, sizeof mnt, tree, "pts");
  path_in(into, sizeof into, base, "devcopy");
  CHECK_INT(mkdir(tree, 0755), ==, 0);
  CHECK_INT(mkdir(mnt, 0755), ==, 0);
  CHECK_INT(write_file(tree, "top", "top\n"), ==, 0);
  CHECK_INT(mount("tmpfs", mnt, "tmpfs", 0, "size=1m"), ==, 0);
  int written = write_file(mnt, "inside", "inside\n");
  CHECK_INT(mkdir(into, 0700), ==, 0);
  sl_error err = {0};
  int rc = sl_layer_copy_ex(tree, into, SL_COPY_ONE_FILE_SYSTEM | SL_COPY_INTO_EXISTING, NULL,
                            &err);
  CHECK_INT(umount2(mnt, MNT_DETACH), ==, 0);
  CHECK_INT(written, ==, 0);
  CHECK_OK(rc, &err);
  char buf[64];
  CHECK_INT(read_file(into, "top", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "top\n");
  path_in(p, sizeof p, into, "pts");
  struct stat st;
  CHECK_INT(stat(p, &st), ==, 0);
  CHECK(S_ISDIR(st.st_mode));
  path_in(p, sizeof p, into, "pts/inside");
  CHECK_INT(access(p, F_OK), ==, -1);
  CHECK_INT(stat(into, &st), ==, 0);
  CHECK_INT(st.st_mode & 07777, ==, 0755);
  CHECK_OK(sl_layer_remove(tree, &err), &err);
  CHECK_OK(sl_layer_remove(into, &err), &err);
}

/* Files on a tmpfs copied to the store's file system, where
 * copy_file_range() fails with EXDEV (how a sandbox's /tmp is captured):
 * data, a hole and the file's size come through. */
static void test_copy_across_file_systems(void) {
  char mnt[200], into[200], p[300];
  path_in(mnt, sizeof mnt, base, "tmpfs");
  path_in(into, sizeof into, base, "tmpfs-copy");
  CHECK_INT(mkdir(mnt, 0755), ==, 0);
  CHECK_INT(mount("tmpfs", mnt, "tmpfs", 0, "size=8m"), ==, 0);
  int written = write_file(mnt, "counter", "1234 1\n");
  path_in(p, sizeof p, mnt, "sparse");
  int fd = open(p, O_WRONLY | O_CREAT, 0600);
  int sparse_ok = fd >= 0 && pwrite(fd, "tail", 4, 3 << 20) == 4;
  if (fd >= 0) close(fd);
  sl_error err = {0};
  sl_layer_copy_stats stats;
  int rc = sl_layer_copy(mnt, into, &stats, &err);
  CHECK_INT(umount2(mnt, MNT_DETACH), ==, 0);
  CHECK_INT(written, ==, 0);
  CHECK(sparse_ok);
  CHECK_OK(rc, &err);
  char buf[64];
  CHECK_INT(read_file(into, "counter", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "1234 1\n");
  path_in(p, sizeof p, into, "sparse");
  struct stat st;
  CHECK_INT(stat(p, &st), ==, 0);
  CHECK_INT(st.st_size, ==, (3 << 20) + 4);
  CHECK(st.st_blocks * 512 < (1 << 20));
  CHECK_INT(stats.bytes, <, 1 << 20);
  CHECK_OK(sl_layer_remove(into, &err), &err);
  rmdir(mnt);
}

static void test_remove_layer(void) {
  sl_error err = {0};
  CHECK_OK(sl_layer_remove(dst, &err), &err);
  CHECK_INT(access(dst, F_OK), ==, -1);
  CHECK_INT(access("/etc/passwd", F_OK), ==, 0);
  CHECK_OK(sl_layer_remove(dst, &err), &err);
  CHECK_OK(sl_layer_remove(src, &err), &err);
  CHECK_OK(sl_layer_remove(base, &err), &err);
  CHECK_INT(access(base, F_OK), ==, -1);
}

int main(void) {
  if (geteuid() != 0) SKIP("layer copy of whiteouts and trusted xattrs needs root");
  setup();
  RUN(test_copy_preserves_entries);
  RUN(test_copy_overlay_xattrs);
  RUN(test_copy_keeps_holes);
  RUN(test_copy_rejects_existing_target);
  RUN(test_copy_missing_source);
  RUN(test_copy_one_file_system);
  RUN(test_copy_across_file_systems);
  RUN(test_remove_layer);
  TEST_EXIT();
}
