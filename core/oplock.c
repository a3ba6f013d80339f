#include "oplock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int sl_op_lock(const char *sandbox_dir, int timeout_ms, sl_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/op.lock", sandbox_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", path);
  for (int waited = 0;; waited += 5) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int saved = errno;
      close(fd);
      return sl_error_errno(err, saved, "lock %s", path);
    }
    if (waited >= timeout_ms) break;
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
  close(fd);
  return sl_error_set(err, EBUSY, "another operation holds the sandbox (%s)", path);
}

void sl_op_unlock(int fd) {
  if (fd >= 0) close(fd);
}
