/* Forks of full snapshots: the lower layers of a fork, the restore with
 * the agent's post-restore hooks, and the host's handle on the restored
 * agent's socket. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "criu_tree.h"

/* The agent socket inside a sandbox, relative to its root. */
#define AGENT_SOCKET_IN_SANDBOX "run/sandlot/agent.sock"
#define DEFAULT_CRIU_TIMEOUT_MS 120000
#define AGENT_CONNECT_TIMEOUT_MS 5000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int sl_snapshot_lowerdirs(sl_catalog *cat, const char *snapshot_ref, char *buf, size_t size,
                          sl_error *err) {
  sl_snapshot sn = {0};
  sl_layer_list stack = {0};
  int rc = sl_catalog_snapshot_resolve(cat, snapshot_ref, &sn, err);
  if (rc == 0 && sn.kind != SL_SNAPSHOT_FULL)
    rc = sl_error_set(err, EINVAL,
                      "snapshot %s has no memory (filesystem only): boot a fresh sandbox on it",
                      sn.id);
  if (rc == 0) rc = sl_catalog_layer_stack(cat, sn.layer_id, &stack, err);
  size_t used = 0;
  if (size > 0) buf[0] = '\0';
  for (size_t i = 0; rc == 0 && i < stack.count; i++) {
    int n = snprintf(buf + used, size - used, "%s%s", i ? ":" : "", stack.items[i].path);
    if (n < 0 || (size_t)n >= size - used)
      rc = sl_error_set(err, ENAMETOOLONG, "lower layers of %s do not fit", sn.id);
    else
      used += (size_t)n;
  }
  sl_layer_list_free(&stack);
  sl_snapshot_clear(&sn);
  return rc;
}

int sl_agent_socket_open_in_root(const char *root, sl_error *err) {
  int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return sl_error_errno(err, errno, "cannot open %s", root);
  struct open_how how = {
      .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  int fd = (int)syscall(SYS_openat2, root_fd, AGENT_SOCKET_IN_SANDBOX, &how, sizeof how);
  int saved = errno;
  close(root_fd);
  if (fd < 0) return sl_error_errno(err, saved, "cannot open the agent socket in %s", root);
  /* O_PATH | O_NOFOLLOW opens a symlink itself; connecting or binding
   * through /proc/self/fd would then follow it on the host. */
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
    close(fd);
    return sl_error_set(err, ELOOP, "the agent socket in %s is not a socket", root);
  }
  return fd;
}

int sl_agent_socket_publish(const char *root, const char *host_path, sl_error *err) {
  int fd = sl_agent_socket_open_in_root(root, err);
  if (fd < 0) return fd;
  int rc = 0;
  umount2(host_path, MNT_DETACH);
  unlink(host_path);
  int placeholder = open(host_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (placeholder < 0)
    rc = sl_error_errno(err, errno, "cannot create %s", host_path);
  else
    close(placeholder);
  char source[64];
  snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
  if (rc == 0 && mount(source, host_path, NULL, MS_BIND, NULL) < 0)
    rc = sl_error_errno(err, errno, "cannot bind the agent socket on %s", host_path);
  close(fd);
  return rc;
}

/* Set the hostname of the tree whose PID 1 is `init_pid` from the host:
 * a child joins its UTS namespace and calls sethostname(). The agent of a
 * process sandbox cannot do it, because its bounding set lacks
 * CAP_SYS_ADMIN. The child makes only async-signal-safe calls. */
static int set_hostname_of(pid_t init_pid, const char *hostname, sl_error *err) {
  char ns[64];
  snprintf(ns, sizeof ns, "/proc/%d/ns/uts", (int)init_pid);
  size_t len = strlen(hostname);
  pid_t child = fork();
  if (child < 0) return sl_error_errno(err, errno, "fork to set the hostname");
  if (child == 0) {
    int fd = open(ns, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWUTS) < 0 || sethostname(hostname, len) < 0) _exit(errno);
    _exit(0);
  }
  int status;
  while (waitpid(child, &status, 0) < 0)
    if (errno != EINTR) return sl_error_errno(err, errno, "wait for the hostname helper");
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
  if (code != 0) return sl_error_errno(err, code, "cannot set the hostname %s in %s", hostname, ns);
  return 0;
}

/* Write `hostname` to /etc/hostname (mode 0644) in the fork's root, so
 * that the file agrees with hostname(1) as PID 1 makes it agree at a
 * fresh start: the restored file still names the snapshot's sandbox. The
 * path is resolved inside the root (RESOLVE_IN_ROOT), so a symlink the
 * sandbox planted cannot send the write to a host file, and a symlink
 * at /etc/hostname itself fails with ELOOP. A root without /etc keeps
 * none. */
static int write_hostname_file_in(const char *root, const char *hostname, sl_error *err) {
  int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return sl_error_errno(err, errno, "cannot open %s", root);
  struct open_how how = {
      .flags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
      .mode = 0644,
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  int fd = (int)syscall(SYS_openat2, root_fd, "etc/hostname", &how, sizeof how);
  int saved = errno;
  close(root_fd);
  if (fd < 0 && saved == ENOENT) return 0;
  if (fd < 0) return sl_error_errno(err, saved, "cannot open /etc/hostname in %s", root);
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", hostname);
  int rc = 0;
  if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n)
    rc = sl_error_errno(err, errno ? errno : EIO, "cannot write /etc/hostname in %s", root);
  close(fd);
  return rc;
}

/* Connect to the restored agent through a descriptor resolved inside the
 * fork's root, then set the hostname, add entropy and run on_fork. The
 * agent's listening socket is restored by CRIU, so it accepts at once;
 * the retries cover a lazy restore still paging it in. */
static int run_fork_hooks(const sl_fork_launch *launch, pid_t init_pid, int *exit_code,
                          sl_error *err) {
  if (launch->hostname != NULL && (set_hostname_of(init_pid, launch->hostname, err) < 0 ||
                                   write_hostname_file_in(launch->root, launch->hostname, err) < 0))
    return -err->code;
  int sock = sl_agent_socket_open_in_root(launch->root, err);
  if (sock < 0) return sl_error_wrap(err, "agent of the fork");
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", sock);
  sl_agent_conn conn;
  int rc = -ETIMEDOUT;
  double deadline = now_ms() + AGENT_CONNECT_TIMEOUT_MS;
  for (;;) {
    rc = sl_agent_conn_open(&conn, path, 1000, 0, err);
    if (rc == 0 || now_ms() > deadline) break;
    usleep(2000);
  }
  close(sock);
  if (rc < 0) return sl_error_wrap(err, "agent of the fork");
  unsigned char entropy[32];
  if (getrandom(entropy, sizeof entropy, 0) != (ssize_t)sizeof entropy)
    rc = sl_error_errno(err, errno, "getrandom failed");
  int64_t timeout = launch->on_fork_timeout_ms > 0 ? launch->on_fork_timeout_ms : 60000;
  if (rc == 0)
    rc = sl_agent_post_restore(&conn, NULL, entropy, sizeof entropy, launch->on_fork, timeout,
                               exit_code, err);
  sl_agent_conn_close(&conn);
  if (rc == 0 && launch->agent_publish_path != NULL)
    rc = sl_agent_socket_publish(launch->root, launch->agent_publish_path, err);
  return rc;
}

int sl_snapshot_launch_fork(const sl_fork_launch *launch, sl_fork_result *result,
                            sl_error *err) {
  sl_fork_result local;
  sl_fork_result *res = result ? result : &local;
  memset(res, 0, sizeof *res);
  sl_criu_restore_request req = {
      .images_dir = launch->images_dir,
      .work_dir = launch->work_dir,
      .root = launch->root,
      .cgroup_procs = launch->cgroup_procs,
      .cgroup_count = launch->cgroup_count,
      .lazy_pages = launch->lazy_pages,
      .timeout_ms = launch->timeout_ms > 0 ? launch->timeout_ms : DEFAULT_CRIU_TIMEOUT_MS,
  };
  sl_criu_restore_result restored;
  int rc = sl_criu_restore_tree(&req, &restored, err);
  res->restore_ms = restored.elapsed_ms;
  if (rc < 0) return rc;
  res->init_pid = restored.init_pid;
  double start = now_ms();
  /* The agent was quiesced for the dump and leaves new connections
   * waiting until it gets this signal. */
  rc = sl_agent_end_quiesce(restored.init_pid, 0, err);
  if (rc == 0) rc = run_fork_hooks(launch, restored.init_pid, &res->on_fork_exit, err);
  res->hooks_ms = now_ms() - start;
  if (rc < 0) {
    if (launch->cgroup_count > 0) sl_cgroup_kill_tasks(launch->cgroup_procs[0]);
    return sl_error_wrap(err, "fork from %s", launch->images_dir);
  }
  return 0;
}
