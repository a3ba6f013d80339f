#include "proc_init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "proc_mounts.h"

/* The bounding set of a sandbox: what a root user needs to administer its
 * own files and processes (the set Docker grants by default, less MKNOD
 * because /dev is populated before the agent starts). Everything else is
 * dropped, notably SYS_ADMIN (mounts, namespaces), SYS_PTRACE,
 * SYS_MODULE, SYS_RAWIO, SYS_TIME, NET_ADMIN, DAC_READ_SEARCH
 * (open_by_handle_at escapes), SYS_RESOURCE, SYS_BOOT, BPF, PERFMON and
 * CHECKPOINT_RESTORE. */
static const int kept_caps[] = {
    CAP_CHOWN,             /* chown files of its own root */
    CAP_DAC_OVERRIDE,      /* root ignores file modes, as package scripts expect */
    CAP_FOWNER,            /* chmod and utime on any file */
    CAP_FSETID,            /* keep setgid bits when changing files */
    CAP_KILL,              /* signal its own processes of any uid */
    CAP_SETGID,            /* su, setpriv, daemons dropping privileges */
    CAP_SETUID,
    CAP_SETPCAP,           /* drop capabilities further */
    CAP_SETFCAP,           /* dpkg installs files with capabilities */
    CAP_NET_BIND_SERVICE,  /* ports < 1024 on its own loopback */
    CAP_NET_RAW,           /* ping on its own loopback */
    CAP_SYS_CHROOT,        /* chroot within its root */
    CAP_AUDIT_WRITE,       /* login tools write audit records */
};

int sl_proc_cap_kept(int cap) {
  for (size_t i = 0; i < sizeof kept_caps / sizeof kept_caps[0]; i++)
    if (kept_caps[i] == cap) return 1;
  return 0;
}

const sl_proc_device sl_proc_devices[] = {
    {"null", 1, 3}, {"zero", 1, 5},    {"full", 1, 7}, {"random", 1, 8},
    {"urandom", 1, 9}, {"tty", 5, 0}, {NULL, 0, 0},
};

static const sl_proc_init *current;

/* Report the failed step to the monitor and exit. */
__attribute__((format(printf, 2, 3))) _Noreturn static void fail(int code, const char *fmt, ...) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%d ", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  size_t len = strlen(msg);
  if (code != 0 && len + 2 < sizeof msg) snprintf(msg + len, sizeof msg - len, ": %s", strerror(code));
  ssize_t ignored = write(current->error_fd, msg, strlen(msg));
  (void)ignored;
  _exit(127);
}

static void mount_or_fail(const char *src, const char *target, const char *type,
                          unsigned long flags, const char *data) {
  if (mount(src, target, type, flags, data) < 0) {
    const char *what = type;
    if (what == NULL) what = src != NULL ? src : "(remount)";
    fail(errno, "mount %s on %s", what, target);
  }
}

/* Format a path; a path that does not fit fails the start. */
__attribute__((format(printf, 3, 4))) static void format_path(char *buf, size_t len,
                                                              const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= len) fail(ENAMETOOLONG, "path too long: %.200s...", buf);
}

static void path_in_root(char *buf, size_t len, const char *sub) {
  format_path(buf, len, "%s%s", current->root, sub);
}

static void make_dir(const char *path, mode_t mode) {
  if (mkdir(path, mode) < 0 && errno != EEXIST) fail(errno, "mkdir %s", path);
}

/* Mount the tmpfs of core/proc_mounts.h for `sandbox_path` at `host_path`:
 * a restore rebuilds each with the same flags and options. */
static void mount_tmpfs(const char *host_path, const char *sandbox_path) {
  const sl_tmpfs_mount *m = sl_tmpfs_mount_by_path(sandbox_path);
  if (m == NULL) fail(EINVAL, "no tmpfs options for %s", sandbox_path);
  mount_or_fail("tmpfs", host_path, "tmpfs", m->flags, m->options);
}

/* Create the working directory and its missing parents (mode 0755) in
 * the sandbox's own root, so a cwd such as /work need not be in the
 * template. */
static void make_cwd(const char *cwd) {
  char path[4096];
  format_path(path, sizeof path, "%s", cwd);
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    make_dir(path, 0755);
    *p = '/';
  }
  make_dir(path, 0755);
}

static void populate_dev(const char *dev) {
  char path[4096];
  mode_t old = umask(0);
  for (const sl_proc_device *d = sl_proc_devices; d->name; d++) {
    format_path(path, sizeof path, "%s/%s", dev, d->name);
    if (mknod(path, S_IFCHR | 0666, makedev(d->major, d->minor)) < 0) fail(errno, "mknod %s", path);
  }
  static const char *const links[][2] = {
      {"ptmx", "pts/ptmx"},          {"fd", "/proc/self/fd"},
      {"stdin", "/proc/self/fd/0"},  {"stdout", "/proc/self/fd/1"},
      {"stderr", "/proc/self/fd/2"},
  };
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    format_path(path, sizeof path, "%s/%s", dev, links[i][0]);
    if (symlink(links[i][1], path) < 0) fail(errno, "symlink %s", path);
  }
  format_path(path, sizeof path, "%s/pts", dev);
  make_dir(path, 0755);
  /* newinstance: a devpts of its own, so the host's terminals stay out of
   * reach; gid 5 is the tty group of Debian. */
  mount_or_fail("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5");
  format_path(path, sizeof path, "%s/shm", dev);
  make_dir(path, 01777);
  mount_tmpfs(path, "/dev/shm");
  umask(old);
}

/* /proc of a PID namespace still exposes host-wide controls: root may
 * write sysctls in /proc/sys and trigger /proc/sysrq-trigger by file
 * permission alone. These are made read-only, and files that leak host
 * memory or kernel state are covered, as container runtimes do. */
static const char *const proc_read_only[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
                                             "/proc/bus", "/proc/fs", NULL};
static const char *const proc_masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                          "/proc/sched_debug", "/proc/kallsyms",
                                          "/proc/latency_stats", "/proc/acpi", "/proc/scsi",
                                          NULL};

static void restrict_proc(void) {
  char path[4096], null[4096];
  struct stat st;
  for (const char *const *p = proc_read_only; *p; p++) {
    path_in_root(path, sizeof path, *p);
    if (stat(path, &st) < 0) continue;
    mount_or_fail(path, path, NULL, MS_BIND | MS_REC, NULL);
    mount_or_fail(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV |
                  MS_NOEXEC, NULL);
  }
  path_in_root(null, sizeof null, "/dev/null");
  for (const char *const *p = proc_masked; *p; p++) {
    path_in_root(path, sizeof path, *p);
    if (stat(path, &st) < 0) continue;
    if (S_ISDIR(st.st_mode))
      mount_tmpfs(path, *p);
    else
      mount_or_fail(null, path, NULL, MS_BIND, NULL);
  }
}

static void mount_filesystems(void) {
  char path[4096];
  path_in_root(path, sizeof path, "/proc");
  make_dir(path, 0555);
  mount_or_fail("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  path_in_root(path, sizeof path, "/dev");
  make_dir(path, 0755);
  mount_tmpfs(path, "/dev");
  populate_dev(path);
  restrict_proc();
  path_in_root(path, sizeof path, "/tmp");
  make_dir(path, 01777);
  mount_tmpfs(path, "/tmp");
}

/* pivot_root(".", ".") stacks the old root under the new one at "/";
 * detaching it then leaves only the sandbox's mounts in its namespace. */
static void enter_root(void) {
  if (chdir(current->root) < 0) fail(errno, "chdir %s", current->root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail(errno, "pivot_root %s", current->root);
  if (umount2(".", MNT_DETACH) < 0) fail(errno, "detach the host root");
  if (chdir("/") < 0) fail(errno, "chdir /");
}

/* Write the host name to /etc/hostname (mode 0644), so that the file
 * agrees with hostname(1). A template's file comes from the machine that
 * built it: mmdebstrap copies the build host's /etc/hostname. A root
 * without /etc keeps none. */
static void write_hostname_file(const char *name) {
  int fd = open("/etc/hostname", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) return;
  if (fd < 0) fail(errno, "open /etc/hostname");
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", name);
  if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n) fail(errno, "write /etc/hostname");
  close(fd);
}

static void loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(errno, "socket for lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) fail(errno, "get flags of lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) fail(errno, "bring lo up");
  close(fd);
}

static int last_cap(void) {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  char buf[16] = {0};
  int last = CAP_LAST_CAP;
  if (fd >= 0) {
    if (read(fd, buf, sizeof buf - 1) > 0) last = atoi(buf);
    close(fd);
  }
  return last;
}

/* Drop the bounding set and the inheritable and ambient sets; the agent,
 * exec'd as uid 0, then gets exactly the kept capabilities. */
static void drop_capabilities(void) {
  int last = last_cap();
  for (int cap = 0; cap <= last; cap++)
    if (!sl_proc_cap_kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      fail(errno, "drop capability %d from the bounding set", cap);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    fail(errno, "clear ambient capabilities");
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &header, data) < 0) fail(errno, "capget");
  data[0].inheritable = data[1].inheritable = 0;
  if (syscall(SYS_capset, &header, data) < 0) fail(errno, "capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(errno, "set no_new_privs");
}

/* Leave exactly fds 0-2 on the sandbox's /dev/null, plus the
 * close-on-exec error pipe, which exec closes. */
static void reset_fds(void) {
  if (current->error_fd != 3) {
    if (dup3(current->error_fd, 3, O_CLOEXEC) < 0) fail(errno, "dup the error pipe");
    close(current->error_fd);
    ((sl_proc_init *)current)->error_fd = 3;
  }
  if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) fail(errno, "close_range");
  int null = open("/dev/null", O_RDWR);
  if (null < 0) fail(errno, "open /dev/null");
  for (int fd = 0; fd < 3; fd++)
    if (null != fd && dup2(null, fd) < 0) fail(errno, "dup2 /dev/null");
  if (null > 2) close(null);
}

_Noreturn void sl_proc_init_run(const sl_proc_init *cfg) {
  current = cfg;
  char go;
  if (read(cfg->sync_fd, &go, 1) != 1) _exit(127); /* the monitor gave up */
  close(cfg->sync_fd);

  if (setsid() < 0) fail(errno, "setsid");
  mount_or_fail(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  mount_filesystems();
  enter_root();
  if (sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
    fail(errno, "sethostname %s", cfg->hostname);
  write_hostname_file(cfg->hostname);
  loopback_up();
  make_cwd(cfg->cwd);
  if (chdir(cfg->cwd) < 0) fail(errno, "chdir %s", cfg->cwd);
  umask(022);
  reset_fds();
  drop_capabilities();
  execve(cfg->argv[0], cfg->argv, cfg->envp);
  fail(errno, "exec %s", cfg->argv[0]);
}
