/* Helpers for the agent tests: start the real sandlot-agent binary in a
 * temporary folder, talk to it with the blocking client, clean up. */
#ifndef SANDLOT_AGENT_HARNESS_H
#define SANDLOT_AGENT_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"
#include "proto.h"

typedef struct harness {
  char dir[64];   /* temporary folder, removed by harness_stop */
  char sock[100]; /* the agent's --listen socket */
  pid_t pid;
} harness;

static inline const char *agent_binary(void) {
  static char path[512];
  const char *build = getenv("SANDLOT_BUILD_DIR");
  snprintf(path, sizeof path, "%s/sandlot-agent", build ? build : ".");
  return path;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static inline int socket_ready(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

/* Create the temporary folder; harness_launch() starts the agent. */
static inline int harness_init(harness *h) {
  memset(h, 0, sizeof *h);
  snprintf(h->dir, sizeof h->dir, "/tmp/sandlot-agent-test-XXXXXX");
  if (mkdtemp(h->dir) == NULL) return -1;
  snprintf(h->sock, sizeof h->sock, "%s/agent.sock", h->dir);
  return 0;
}

/* Start the agent with --listen DIR/agent.sock and `extra` arguments.
 * The `nfds` fds in `fds` are passed to the agent as fds 3, 4, ... */
static inline int harness_launch_fds(harness *h, const char *const *extra, const int *fds,
                                     int nfds) {
  const char *argv[32] = {agent_binary(), "--listen", h->sock};
  int argc = 3;
  for (; extra != NULL && *extra != NULL && argc < 31; extra++) argv[argc++] = *extra;
  argv[argc] = NULL;
  pid_t parent = getpid();
  h->pid = fork();
  if (h->pid < 0) return -1;
  if (h->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The agent logs each malformed frame; the tests send many on purpose. */
    setenv("SANDLOT_LOG", getenv("SANDLOT_AGENT_LOG") ? getenv("SANDLOT_AGENT_LOG") : "error", 1);
    if (getppid() != parent) _exit(1);
    /* Move the fds above every target first, so no dup2 overwrites an
     * fd that is still to be moved. */
    int moved[8];
    for (int i = 0; i < nfds && i < 8; i++) moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
    for (int i = 0; i < nfds && i < 8; i++) {
      dup2(moved[i], 3 + i);
      fcntl(3 + i, F_SETFD, 0);
    }
    execv(argv[0], (char **)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    if (socket_ready(h->sock)) return 0;
    int status;
    if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
      fprintf(stderr, "agent exited early with status %d\n", status);
      h->pid = 0;
      return -1;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "agent socket did not appear: %s\n", h->sock);
  return -1;
}

/* harness_launch_fds() with at most one fd, `keep_fd` (-1 for none). */
static inline int harness_launch(harness *h, const char *const *extra, int keep_fd) {
  return harness_launch_fds(h, extra, &keep_fd, keep_fd >= 0 ? 1 : 0);
}

static inline int harness_start_with(harness *h, const char *const *extra, int keep_fd) {
  return harness_init(h) < 0 ? -1 : harness_launch(h, extra, keep_fd);
}

static inline int harness_start(harness *h) { return harness_start_with(h, NULL, -1); }

static inline int remove_entry(const char *path, const struct stat *st, int type,
                               struct FTW *ftw) {
  (void)st, (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Stop the agent (SIGTERM, then SIGKILL) and remove the folder. Returns
 * the agent's wait status. */
static inline int harness_stop(harness *h) {
  int status = -1;
  if (h->pid > 0) {
    kill(h->pid, SIGTERM);
    for (int i = 0; i < 300 && waitpid(h->pid, &status, WNOHANG) == 0; i++) sleep_ms(10);
    if (status == -1) {
      kill(h->pid, SIGKILL);
      waitpid(h->pid, &status, 0);
    }
    h->pid = 0;
  }
  if (h->dir[0] != '\0') nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return status;
}

/* ---- Blocking requests -------------------------------------------------- */

typedef struct collected {
  sl_buf out[3]; /* output of fd 1 and 2 */
  int events;
} collected;

static inline void collect_event(const sl_frame *f, void *data) {
  collected *c = data;
  c->events++;
  if (f->type != SL_MSG_OUTPUT) return;
  int64_t fd = 0;
  const uint8_t *bytes;
  size_t len;
  sl_frame_get_i64(f, SL_F_FD, &fd, NULL);
  if ((fd == 1 || fd == 2) && sl_frame_get_bytes(f, SL_F_DATA, &bytes, &len))
    sl_buf_append(&c->out[fd], bytes, len);
}

static inline void collected_free(collected *c) {
  sl_buf_free(&c->out[1]);
  sl_buf_free(&c->out[2]);
}

/* 1 when the two byte ranges are equal. */
static inline int bytes_equal(const sl_buf *b, const void *expected, size_t len) {
  return b->len == len && (len == 0 || memcmp(b->data, expected, len) == 0);
}

static inline int64_t field_i64(const sl_frame *f, uint8_t key, int64_t def) {
  int64_t v = def;
  sl_frame_get_i64(f, key, &v, NULL);
  return v;
}

#endif
