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
  CHECK_OK(sl_run_output(argv, NULL, &err), &err);

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
  CHECK(strstr(sl_vm_init_script, "switch_root /newroot /.sandlot/agent \"$@\" $ports") != NULL);
  /* Every agent port becomes one --serial of the agent. */
  CHECK(strstr(sl_vm_init_script, "--serial /dev/${p##*/}") != NULL);
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

/* From tmpfs to the store's file system, where copy_file_range(2) fails
 * with EXDEV and the copy goes through sendfile(2): every data range lands
 * at its offset and the holes stay holes. */
static void copy_sparse_across_file_systems(void) {
  char src[] = "/dev/shm/sandlot-sparse-XXXXXX", dir[] = "/tmp/sandlot-sparse-XXXXXX";
  int fd = mkstemp(src);
  if (fd < 0) {
    fprintf(stderr, "no /dev/shm here, cross-file-system copy not checked\n");
    return;
  }
  CHECK(mkdtemp(dir) != NULL);
  static char pattern[5 << 20];
  for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (char)(i * 7 + i / 4096);
  CHECK_INT(pwrite(fd, pattern, sizeof pattern, 12 << 20), ==, (long)sizeof pattern);
  CHECK_INT(pwrite(fd, "page", 4, 4096), ==, 4);
  CHECK_INT(ftruncate(fd, 40 << 20), ==, 0);
  close(fd);
  char dst[256];
  snprintf(dst, sizeof dst, "%s/dst", dir);
  sl_error err = {0};
  CHECK_OK(sl_copy_sparse(src, dst, &err), &err);
  unlink(src);
  struct stat st;
  CHECK_INT(stat(dst, &st), ==, 0);
  CHECK_INT(st.st_size, ==, 40 << 20);
  CHECK_INT(st.st_blocks * 512, <, 6 << 20);
  static char back[5 << 20];
  fd = open(dst, O_RDONLY);
  CHECK_INT(pread(fd, back, sizeof back, 12 << 20), ==, (long)sizeof back);
  char page[5] = "";
  CHECK_INT(pread(fd, page, 4, 4096), ==, 4);
  close(fd);
  CHECK(memcmp(back, pattern, sizeof pattern) == 0);
  CHECK_STR(page, "page");
  CHECK_OK(sl_remove_tree(dir, &err), &err);
}

/* The overlay written without qemu-img passes qemu-img check, names its
 * backing file, reads through to it and takes writes. */
static void overlay_passes_qemu_img_check(void) {
  char dir[] = "/tmp/sandlot-qcow2-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char base[128], overlay[128], overlay2[128];
  snprintf(base, sizeof base, "%s/base.qcow2", dir);
  snprintf(overlay, sizeof overlay, "%s/overlay.qcow2", dir);
  snprintf(overlay2, sizeof overlay2, "%s/overlay2.qcow2", dir);
  sl_error err = {0};
  const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", base, "3G", NULL};
  CHECK_OK(sl_run_output(create, NULL, &err), &err);
  const char *fill[] = {"qemu-io", "-c", "write -P 0x5a 1M 64k", base, NULL};
  CHECK_OK(sl_run_output(fill, NULL, &err), &err);

  CHECK_OK(sl_vm_disk_overlay(base, overlay, &err), &err);
  const char *check[] = {"qemu-img", "check", "-q", overlay, NULL};
  CHECK_OK(sl_run_output(check, NULL, &err), &err);
  char *info = NULL;
  const char *info_argv[] = {"qemu-img", "info", "--output=json", overlay, NULL};
  CHECK_OK(sl_run_output(info_argv, &info, &err), &err);
  CHECK(strstr(info, "\"virtual-size\": 3221225472") != NULL);
  CHECK(strstr(info, base) != NULL);
  CHECK(strstr(info, "\"backing-filename-format\": \"qcow2\"") != NULL);
  free(info);
  const char *read_base[] = {"qemu-io", "-c", "read -P 0x5a 1M 64k", overlay, NULL};
  CHECK_OK(sl_run_output(read_base, NULL, &err), &err);
  const char *write[] = {"qemu-io", "-c", "write -P 0xa5 2G 128k", overlay, NULL};
  CHECK_OK(sl_run_output(write, NULL, &err), &err);
  CHECK_OK(sl_run_output(check, NULL, &err), &err);
  const char *read_back[] = {"qemu-io", "-c", "read -P 0xa5 2G 128k", overlay, NULL};
  CHECK_OK(sl_run_output(read_back, NULL, &err), &err);

  /* An overlay on an overlay, as a fork of a fork has. */
  CHECK_OK(sl_vm_disk_overlay(overlay, overlay2, &err), &err);
  const char *read_chain[] = {"qemu-io", "-c", "read -P 0xa5 2G 128k", overlay2, NULL};
  CHECK_OK(sl_run_output(read_chain, NULL, &err), &err);

  CHECK_INT(sl_vm_disk_overlay(base, overlay, &err), ==, -EEXIST);
  CHECK_INT(sl_vm_disk_overlay("relative.qcow2", overlay2, &err), ==, -EINVAL);
  char raw[128];
  snprintf(raw, sizeof raw, "%s/raw", dir);
  CHECK_OK(sl_write_file_atomic(raw, "not an image", 12, 0644, &err), &err);
  CHECK_INT(sl_vm_disk_overlay(raw, overlay2, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "not a qcow2 image") != NULL);
  CHECK_OK(sl_remove_tree(dir, &err), &err);
}

/* A base disk is built once per key, sized for the tree plus free space. */
static void base_disk_built_once(void) {
  char dir[] = "/tmp/sandlot-base-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char root[128], file[160], path[256], again[256];
  snprintf(root, sizeof root, "%s/root", dir);
  snprintf(file, sizeof file, "%s/root/etc/hello", dir);
  sl_error err = {0};
  CHECK_OK(sl_mkdir_p(root, 0755, &err), &err);
  snprintf(path, sizeof path, "%s/etc", root);
  CHECK_OK(sl_mkdir_p(path, 0755, &err), &err);
  CHECK_OK(sl_write_file_atomic(file, "hello\n", 6, 0644, &err), &err);

  CHECK_OK(sl_vm_base_disk(dir, "ly-0123456789ab", root, 64, path, sizeof path, &err), &err);
  struct stat first;
  CHECK_INT(stat(path, &first), ==, 0);
  char *info = NULL;
  const char *info_argv[] = {"qemu-img", "info", "--output=json", path, NULL};
  CHECK_OK(sl_run_output(info_argv, &info, &err), &err);
  /* Twice the tree (a few KiB, so 1 MiB) plus 1 GiB. */
  CHECK(strstr(info, "\"virtual-size\": 1075838976") != NULL);
  free(info);

  CHECK_OK(sl_vm_base_disk(dir, "ly-0123456789ab", root, 64, again, sizeof again, &err), &err);
  CHECK_STR(again, path);
  struct stat second;
  CHECK_INT(stat(again, &second), ==, 0);
  CHECK_INT(second.st_ino, ==, first.st_ino);
  CHECK_INT(second.st_mtime, ==, first.st_mtime);

  CHECK_INT(sl_vm_base_disk(dir, "../x", root, 64, again, sizeof again, &err), ==, -EINVAL);
  CHECK_INT(sl_vm_base_disk(dir, "ly-missing", "/nonexistent/root", 64, again, sizeof again, &err),
            ==, -ENOENT);
  CHECK_OK(sl_remove_tree(dir, &err), &err);
}

static void run_reports_stderr(void) {
  const char *argv[] = {"sh", "-c", "echo out; echo 'bad thing' >&2; exit 3", NULL};
  char *output = NULL;
  sl_error err = {0};
  CHECK_INT(sl_run_output(argv, &output, &err), ==, -EIO);
  CHECK_STR(err.msg, "sh failed: exit status 3: bad thing");
  CHECK(output == NULL);
  const char *ok[] = {"sh", "-c", "echo out", NULL};
  CHECK_OK(sl_run_output(ok, &output, &err), &err);
  CHECK_STR(output, "out\n");
  free(output);
  const char *missing[] = {"/nonexistent/prog", NULL};
  CHECK_INT(sl_run_output(missing, NULL, &err), ==, -ENOENT);
}

int main(void) {
  RUN(depends_found_after_nul);
  RUN(depends_empty_list);
  RUN(depends_missing_tag);
  RUN(cpio_unpacks_with_busybox);
  RUN(init_script_starts_agent);
  RUN(copy_sparse_keeps_holes);
  RUN(copy_sparse_across_file_systems);
  RUN(overlay_passes_qemu_img_check);
  RUN(base_disk_built_once);
  RUN(run_reports_stderr);
  TEST_EXIT();
}
