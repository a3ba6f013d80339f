#include "agent_ports.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The protocol allows more, but QEMU's virtio-serial bus has 31 ports. */
#define PORTS_MAX 31u

static int port_file(const char *dir, unsigned port, const char *suffix, char *buf, size_t size,
                     sl_error *err) {
  if (snprintf(buf, size, "%s/agent-%u.%s", dir, port, suffix) >= (int)size)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s/agent-%u.%s", dir, port, suffix);
  return 0;
}

unsigned sl_agent_ports_count(const char *dir) {
  unsigned n = 0;
  char path[4096];
  struct stat st;
  while (n < PORTS_MAX && port_file(dir, n, "sock", path, sizeof path, NULL) == 0 &&
         lstat(path, &st) == 0)
    n++;
  return n;
}

int sl_agent_port_socket(const char *dir, unsigned port, char *buf, size_t size, sl_error *err) {
  return port_file(dir, port, "sock", buf, size, err);
}

/* Lock port `port` without waiting: the lock fd, or -EWOULDBLOCK. */
static int lock_port(const char *dir, unsigned port, sl_error *err) {
  char path[4096];
  int rc = port_file(dir, port, "lock", path, sizeof path, err);
  if (rc < 0) return rc;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", path);
  while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR) {
  }
  if (rc == 0) return fd;
  int e = errno;
  close(fd);
  return e == EWOULDBLOCK ? -EWOULDBLOCK : sl_error_errno(err, e, "flock %s", path);
}

int sl_agent_port_try(const char *dir, unsigned count, unsigned *port, sl_error *err) {
  if (count == 0) return sl_error_set(err, ENOENT, "no agent port in %s", dir);
  for (unsigned i = 0; i < count; i++) {
    int fd = lock_port(dir, i, err);
    if (fd == -EWOULDBLOCK) continue;
    if (fd >= 0) *port = i;
    return fd;
  }
  return -EWOULDBLOCK;
}

static long long monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sl_agent_port_take(const char *dir, unsigned count, int timeout_ms, unsigned *port,
                       sl_error *err) {
  struct timespec pause = {0, SL_AGENT_PORT_RETRY_MS * 1000000L};
  long long deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    int fd = sl_agent_port_try(dir, count, port, err);
    if (fd != -EWOULDBLOCK) return fd;
    if (monotonic_ms() >= deadline)
      return sl_error_set(err, EBUSY,
                          "all %u agent ports of %s are in use by other host processes "
                          "(waited %d ms)", count, dir, timeout_ms);
    nanosleep(&pause, NULL);
  }
}
