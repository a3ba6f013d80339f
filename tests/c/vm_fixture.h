/* A guest for the VM tests and the VM benchmark: a busybox root file
 * system on the root disk, sandlot-agent as the guest's init, and helpers
 * that run commands and move files through the agent.
 * TODO: boot the base template's root file system once it exists. */
#ifndef SANDLOT_TEST_VM_FIXTURE_H
#define SANDLOT_TEST_VM_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_client.h"
#include "proto.h"
#include "vm.h"
#include "vm_image.h"
#include "vm_util.h"

/* Make a root file system at `root`: busybox with a link per applet,
 * the usual top-level folders and /data/seed. */
static inline int vm_fixture_make_root(const char *root, sl_error *err) {
  char path[700];
  const char *dirs[] = {"bin", "proc", "sys", "dev", "tmp", "run", "data", "etc", NULL};
  for (int i = 0; dirs[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
    if (sl_mkdir_p(path, 0755, err) < 0) return -1;
  }
  snprintf(path, sizeof path, "%s/bin/busybox", root);
  if (sl_copy_sparse("/bin/busybox", path, err) < 0 || chmod(path, 0755) < 0) return -1;
  const char *list[] = {"/bin/busybox", "--list", NULL};
  char *applets = NULL;
  if (sl_run_output(list, &applets, err) < 0) return -1;
  char *save = NULL;
  for (char *a = strtok_r(applets, "\n", &save); a; a = strtok_r(NULL, "\n", &save)) {
    snprintf(path, sizeof path, "%s/bin/%s", root, a);
    if (strcmp(a, "busybox") != 0 && symlink("busybox", path) < 0 && errno != EEXIST) {
      free(applets);
      return sl_error_errno(err, errno, "symlink %s", path);
    }
  }
  free(applets);
  snprintf(path, sizeof path, "%s/data/seed", root);
  return sl_write_file_atomic(path, "from-template\n", 14, 0644, err);
}

/* Build, under `home`, the root disk `base_disk` and find the agent binary
 * in $SANDLOT_BUILD_DIR. */
static inline int vm_fixture_setup(const char *home, char *base_disk, size_t base_len, char *agent,
                            size_t agent_len, sl_error *err) {
  const char *build = getenv("SANDLOT_BUILD_DIR");
  snprintf(agent, agent_len, "%s/sandlot-agent", build ? build : ".");
  if (!sl_path_exists(agent)) return sl_error_set(err, ENOENT, "agent binary not found: %s", agent);
  char root[600];
  snprintf(root, sizeof root, "%s/root", home);
  if (vm_fixture_make_root(root, err) < 0) return -1;
  return sl_vm_base_disk(home, "fixture", root, 256, base_disk, base_len, err);
}

typedef struct vm_output {
  sl_buf out;
  sl_buf errs;
} vm_output;

static inline void vm_collect(const sl_frame *f, void *data) {
  vm_output *o = data;
  int64_t fd = 0;
  const uint8_t *bytes = NULL;
  size_t len = 0;
  if (f->type != SL_MSG_OUTPUT || sl_frame_get_i64(f, SL_F_FD, &fd, NULL) < 0 ||
      !sl_frame_get_bytes(f, SL_F_DATA, &bytes, &len))
    return;
  sl_buf_append(fd == 2 ? &o->errs : &o->out, bytes, len);
}

/* Run `command` with /bin/sh -c through the agent and return its stdout
 * (malloc'd, NUL-terminated), or NULL with `err` filled. `*exit_code` gets
 * the exit code (-1 when killed by a signal). */
static inline char *vm_exec(sl_vm *vm, const char *command, int *exit_code, sl_error *err) {
  sl_agent_conn conn;
  int lock = -1;
  if (sl_vm_agent_open(vm, &conn, &lock, 60000, err) < 0) return NULL;
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_EXEC, 0);
  sl_frame_put_str(&request, SL_F_COMMAND, command);
  sl_frame_put_i64(&request, SL_F_STREAM, 1);
  sl_frame_end(&request, start, NULL);
  vm_output o = {0};
  sl_frame final;
  int rc = sl_agent_conn_call(&conn, &request, vm_collect, &o, &reply, &final, err);
  int64_t code = -1;
  if (rc == 0) sl_frame_get_i64(&final, SL_F_EXIT_CODE, &code, NULL);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  sl_buf_free(&o.errs);
  sl_vm_agent_close(&conn, lock);
  if (rc < 0) {
    sl_buf_free(&o.out);
    return NULL;
  }
  if (exit_code) *exit_code = (int)code;
  char *text = malloc(o.out.len + 1);
  if (text != NULL) {
    if (o.out.len) memcpy(text, o.out.data, o.out.len);
    text[o.out.len] = '\0';
  }
  sl_buf_free(&o.out);
  return text;
}

/* One file request through the agent; `final` is parsed into `reply`. */
static inline int vm_file_call(sl_vm *vm, sl_buf *request, sl_buf *reply, sl_frame *final,
                        sl_error *err) {
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, 60000, err);
  if (rc == 0) rc = sl_agent_conn_call(&conn, request, NULL, NULL, reply, final, err);
  sl_vm_agent_close(&conn, lock);
  return rc;
}

static inline int vm_write_file(sl_vm *vm, const char *path, const char *text, sl_error *err) {
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_FILE_WRITE, 0);
  sl_frame_put_str(&request, SL_F_PATH, path);
  sl_frame_put_bytes(&request, SL_F_DATA, text, strlen(text));
  sl_frame_put_i64(&request, SL_F_FLAGS, SL_FILE_CREATE | SL_FILE_TRUNCATE | SL_FILE_PARENTS);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  int rc = vm_file_call(vm, &request, &reply, &final, err);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  return rc;
}

/* Read a file (up to 1 MiB) through the agent; malloc'd text or NULL. */
static inline char *vm_read_file(sl_vm *vm, const char *path, sl_error *err) {
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_FILE_READ, 0);
  sl_frame_put_str(&request, SL_F_PATH, path);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  char *text = NULL;
  if (vm_file_call(vm, &request, &reply, &final, err) == 0) {
    const uint8_t *data = NULL;
    size_t len = 0;
    sl_frame_get_bytes(&final, SL_F_DATA, &data, &len);
    text = strndup((const char *)data, len);
  }
  sl_buf_free(&request);
  sl_buf_free(&reply);
  return text;
}

#endif
