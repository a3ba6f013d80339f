/* Unit tests of the initramfs writer and the module dependency reader.
 * The archive is unpacked with busybox cpio, a separate implementation. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "vm_image.h"
#include "vm_util.h"

static void depends_found_after_nul(void) {
  static const char ko[] = "\x7f" "ELF junk depends=fake\0license=GPL\0depends=virtio,virtio_ring\0name=x";
  char *deps = NULL;
  sl_error err = {0};
  CHECK_OK(sl_kmod_depends(ko, sizeof ko - 1, &deps, &err), &err);
  CHECK_STR(deps, "virtio,virtio_ring");
  free(deps);
}

static void depends_empty_list(void) {
  static const char ko[] = "x\0depends=\0vermagic=6.1";
  char *deps = NULL;
  sl_error err = {0};
  CHECK_OK(sl_kmod_depends(ko, sizeof ko - 1, &deps, &err), &err);
  CHECK_STR(deps, "");
  free(deps);
}

static void depends_missing_tag(void) {
  static const char ko[] = "x\0license=GPL\0";
  char *deps = NULL;
  sl_error err = {0};
  CHECK_INT(sl_kmod_depends(ko, sizeof ko - 1, &deps, &err), ==, -ENOENT);
  CHECK(deps == NULL);
}

static void cpio_unpacks_with_busybox(void) {
  char dir[] = "/tmp/sandlot-cpio-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char archive[256], out[256], path[300];
  snprintf(archive, sizeof archive, "%s/a.cpio", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  CHECK_INT(mkdir(out, 0755), ==, 0);

  int fd = open(archive, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  sl_cpio c = {.fd = fd, .next_ino = 1};
  sl_error err = {0};
  CHECK_OK(sl_cpio_add_dir(&c, "bin", 0755, &err), &err);
  CHECK_OK(sl_cpio_add_file(&c, "bin/hello", 0750, "hello\n", 6, &err), &err);
  CHECK_OK(sl_cpio_add_file(&c, "odd", 0644, "abc", 3, &err), &err);
  CHECK_OK(sl_cpio_add_file(&c, "empty", 0600, NULL, 0, &err), &err);
  CHECK_OK(sl_cpio_add_symlink(&c, "link", "bin/hello", &err), &err);
  CHECK_OK(sl_cpio_finish(&c, &err), &err);
  close(fd);
  CHECK_INT(c.offset % 4, ==, 0);

  const char *argv[] = {"busybox", "sh", "-c", "cd \"$0\" && busybox cpio -i -d <\"$1\"",
                        out, archive, NULL};
  CHECK_OK(sl_run(argv, NULL, &err), &err);

  char *data = NULL;
  snprintf(path, sizeof path, "%s/bin/hello", out);
  CHECK_OK(sl_read_file(path, 100, &data, NULL, &err), &err);
  CHECK_STR(data, "hello\n");
  free(data);
  struct stat st;
  CHECK_INT(stat(path, &st), ==, 0);
  CHECK_INT(st.st_mode & 07777, ==, 0750);
  snprintf(path, sizeof path, "%s/odd", out);
  CHECK_OK(sl_read_file(path, 100, &data, NULL, &err), &err);
  CHECK_STR(data, "abc");
  free(data);
  snprintf(path, sizeof path, "%s/empty", out);
  CHECK_INT(stat(path, &st), ==, 0);
  CHECK_INT(st.st_size, ==, 0);
  char target[64] = "";
  snprintf(path, sizeof path, "%s/link", out);
  CHECK_INT(readlink(path, target, sizeof target - 1), ==, 9);
  CHECK_STR(target, "bin/hello");
  CHECK_OK(sl_remove_tree(dir, &err), &err);
  CHECK(!sl_path_exists(dir));
}

static void init_script_starts_agent(void) {
  CHECK(strncmp(sl_vm_init_script, "#!/bin/busybox sh\n", 18) == 0);
  CHECK(strstr(sl_vm_init_script, "switch_root /newroot /.sandlot/agent --serial $port") != NULL);
  CHECK(strstr(sl_vm_init_script, "sandlot.ports=") != NULL);
}

static void copy_sparse_keeps_holes(void) {
  char dir[] = "/tmp/sandlot-sparse-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char src[256], dst[256];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  int fd = open(src, O_WRONLY | O_CREAT, 0600);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, "head", 4, 0), ==, 4);
  CHECK_INT(pwrite(fd, "tail", 4, 64 << 20), ==, 4);
  close(fd);
  sl_error err = {0};
  CHECK_OK(sl_copy_sparse(src, dst, &err), &err);
  struct stat st;
  CHECK_INT(stat(dst, &st), ==, 0);
  CHECK_INT(st.st_size, ==, (64 << 20) + 4);
  CHECK_INT(st.st_blocks * 512, <, 1 << 20);
  char buf[5] = "";
  fd = open(dst, O_RDONLY);
  CHECK_INT(pread(fd, buf, 4, 64 << 20), ==, 4);
  close(fd);
  CHECK_STR(buf, "tail");
  CHECK_INT(sl_copy_sparse(src, dst, &err), ==, -EEXIST);
  CHECK_OK(sl_remove_tree(dir, &err), &err);
}

static void run_reports_stderr(void) {
  const char *argv[] = {"sh", "-c", "echo out; echo 'bad thing' >&2; exit 3", NULL};
  char *output = NULL;
  sl_error err = {0};
  CHECK_INT(sl_run(argv, &output, &err), ==, -EIO);
  CHECK_STR(err.msg, "sh failed: exit status 3: bad thing");
  CHECK(output == NULL);
  const char *ok[] = {"sh", "-c", "echo out", NULL};
  CHECK_OK(sl_run(ok, &output, &err), &err);
  CHECK_STR(output, "out\n");
  free(output);
  const char *missing[] = {"/nonexistent/prog", NULL};
  CHECK_INT(sl_run(missing, NULL, &err), ==, -ENOENT);
}

int main(void) {
  RUN(depends_found_after_nul);
  RUN(depends_empty_list);
  RUN(depends_missing_tag);
  RUN(cpio_unpacks_with_busybox);
  RUN(init_script_starts_agent);
  RUN(copy_sparse_keeps_holes);
  RUN(run_reports_stderr);
  TEST_EXIT();
}
