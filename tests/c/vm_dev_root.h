/* A busybox root file system and a shell "agent" for VM tests and the VM
 * benchmark, used until sandlot-agent and the base template exist.
 *
 * The guest's /init hands PID 1 to the agent with "--vm" and the agent
 * port devices. This agent serves each port with a shell loop that runs
 * one command line per request and ends its output with
 * "__end__ <status>". Shell variables live in that shell's memory, so a
 * counter kept there shows whether RAM survived a snapshot. */
#ifndef SANDLOT_TEST_VM_DEV_ROOT_H
#define SANDLOT_TEST_VM_DEV_ROOT_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm.h"
#include "vm_image.h"
#include "vm_util.h"

static const char vm_dev_agent[] =
    "#!/bin/busybox sh\n"
    "shift\n"
    "/bin/busybox mount -t tmpfs tmp /tmp\n"
    "serve() {\n"
    "  exec 3<>\"$1\"\n"
    "  while :; do\n"
    "    while IFS= read -r line <&3; do\n"
    "      eval \"$line\" >&3 2>&1 </dev/null\n"
    "      echo \"__end__ $?\" >&3\n"
    "    done\n"
    "    sleep 0.05\n"
    "  done\n"
    "}\n"
    "for port in \"$@\"; do serve \"$port\" & done\n"
    "while :; do wait; sleep 1; done\n";

static int vm_dev_make_root(const char *root) {
  char path[700];
  const char *dirs[] = {"bin", "proc", "sys", "dev", "tmp", "data", NULL};
  for (int i = 0; dirs[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
    if (sl_mkdir_p(path, 0755, NULL) < 0) return -1;
  }
  snprintf(path, sizeof path, "%s/bin/busybox", root);
  if (sl_copy_sparse("/bin/busybox", path, NULL) < 0 || chmod(path, 0755) < 0) return -1;
  const char *applets[] = {"sh", "cat", "echo", "head", "od", "ls", "sleep", "mount", NULL};
  for (int i = 0; applets[i]; i++) {
    snprintf(path, sizeof path, "%s/bin/%s", root, applets[i]);
    if (symlink("busybox", path) < 0) return -1;
  }
  snprintf(path, sizeof path, "%s/data/seed", root);
  return sl_write_file_atomic(path, "from-template\n", 14, 0644, NULL);
}

/* Build, under `home`, the root disk `base_disk` and the agent script
 * `agent`. Returns 0 or -1 with `err` filled. */
static int vm_dev_setup(const char *home, char *base_disk, size_t base_len, char *agent,
                        size_t agent_len, sl_error *err) {
  char root[600];
  snprintf(root, sizeof root, "%s/root", home);
  snprintf(base_disk, base_len, "%s/base.qcow2", home);
  snprintf(agent, agent_len, "%s/agent.sh", home);
  if (vm_dev_make_root(root) < 0) return sl_error_set(err, EIO, "cannot build %s", root);
  if (sl_vm_disk_build(root, 256, base_disk, err) < 0) return -1;
  return sl_write_file_atomic(agent, vm_dev_agent, strlen(vm_dev_agent), 0755, err);
}

/* Run `command` through the agent and return its output (malloc'd) without
 * the end marker; NULL on a transport failure. */
static char *vm_dev_exec(sl_vm *vm, const char *command) {
  sl_error err = {0};
  int lock = -1;
  int fd = sl_vm_agent_connect(vm, &lock, &err);
  if (fd < 0) {
    fprintf(stderr, "agent connect: %s\n", err.msg);
    return NULL;
  }
  char line[1024];
  snprintf(line, sizeof line, "%s\n", command);
  char *out = NULL;
  if (write(fd, line, strlen(line)) == (ssize_t)strlen(line)) {
    char buf[8192];
    size_t len = 0;
    while (len + 1 < sizeof buf) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (poll(&p, 1, 60000) <= 0) break;
      ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
      if (n <= 0) break;
      len += (size_t)n;
      buf[len] = '\0';
      char *end = strstr(buf, "__end__ ");
      if (end != NULL && strchr(end, '\n') != NULL) {
        *end = '\0';
        out = strdup(buf);
        break;
      }
    }
  }
  close(fd);
  close(lock);
  return out;
}

#endif
