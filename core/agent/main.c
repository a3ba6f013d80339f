/* sandlot-agent: PID 1 of a process sandbox, init of a microVM.
 *
 * Serves the agent protocol (core/proto.h) on a unix socket (--listen),
 * on byte-stream fds (--serial, --stream-fd, each may repeat), or both.
 * It keeps the state of the processes it starts, so clients may come and
 * go. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "sandlot_config.h"

agent g_agent;

int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void watch_add(int fd, uint32_t events, watch *w) {
  struct epoll_event ev = {.events = events, .data.ptr = w};
  if (epoll_ctl(g_agent.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    SL_ERROR("agent.epoll", "op=add fd=%d error=%s", fd, strerror(errno));
}

void watch_mod(int fd, uint32_t events, watch *w) {
  struct epoll_event ev = {.events = events, .data.ptr = w};
  if (epoll_ctl(g_agent.epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
    SL_ERROR("agent.epoll", "op=mod fd=%d error=%s", fd, strerror(errno));
}

void watch_del(int fd) { epoll_ctl(g_agent.epfd, EPOLL_CTL_DEL, fd, NULL); }

static void usage(FILE *out) {
  fprintf(out,
          "usage: sandlot-agent [options]\n"
          "  --listen PATH       serve the unix socket PATH (default %s\n"
          "                      when no --serial or --stream-fd is given)\n"
          "  --serial PATH       serve the byte stream of a virtio-serial port\n"
          "                      (may repeat, up to %d streams in all)\n"
          "  --stream-fd N       serve the byte stream of the inherited fd N\n"
          "                      (may repeat)\n"
          "  --root DIR          chroot into DIR first (tests; needs root)\n"
          "  --env-file PATH     set the NAME=value entries of PATH (separated by\n"
          "                      NUL bytes) in the environment of every command\n"
          "  --cwd DIR           create DIR if missing and run commands there\n"
          "  --buffer-size BYTES output buffer per stream of each process\n"
          "                      (default %u)\n"
          "  --version           print the version and exit\n",
          AGENT_DEFAULT_SOCKET, AGENT_MAX_STREAMS, AGENT_DEFAULT_BUFFER);
}

static int parse_size(const char *s, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int add_stream(agent_options *o) {
  if (o->nserial + o->nstream_fds < AGENT_MAX_STREAMS) return 0;
  fprintf(stderr, "sandlot-agent: too many --serial and --stream-fd options (at most %d)\n",
          AGENT_MAX_STREAMS);
  return -1;
}

static int add_stream_fd(agent_options *o, const char *value) {
  long long n;
  if (parse_size(value, 0, 1 << 20, &n) < 0) {
    fprintf(stderr, "sandlot-agent: invalid --stream-fd: %s\n", value);
    return -1;
  }
  if (add_stream(o) < 0) return -1;
  for (int i = 0; i < o->nstream_fds; i++) {
    if (o->stream_fds[i] != (int)n) continue;
    fprintf(stderr, "sandlot-agent: --stream-fd %s given twice\n", value);
    return -1;
  }
  o->stream_fds[o->nstream_fds++] = (int)n;
  return 0;
}

static int parse_options(int argc, char **argv, agent_options *o) {
  memset(o, 0, sizeof *o);
  o->buffer_size = AGENT_DEFAULT_BUFFER;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    long long n;
    if (strcmp(a, "--version") == 0) {
      printf("sandlot-agent %s (protocol %d)\n", SANDLOT_VERSION, SL_PROTO_VERSION);
      exit(0);
    } else if (strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (v == NULL) {
      fprintf(stderr, "sandlot-agent: missing value for %s\n", a);
      return -1;
    } else if (strcmp(a, "--listen") == 0) {
      o->listen_path = v;
    } else if (strcmp(a, "--serial") == 0) {
      if (add_stream(o) < 0) return -1;
      o->serial_paths[o->nserial++] = v;
    } else if (strcmp(a, "--stream-fd") == 0) {
      if (add_stream_fd(o, v) < 0) return -1;
    } else if (strcmp(a, "--root") == 0) {
      o->root = v;
    } else if (strcmp(a, "--env-file") == 0) {
      o->env_file = v;
    } else if (strcmp(a, "--cwd") == 0) {
      o->cwd = v;
    } else if (strcmp(a, "--buffer-size") == 0) {
      if (parse_size(v, AGENT_MIN_BUFFER, AGENT_MAX_BUFFER, &n) < 0) {
        fprintf(stderr, "sandlot-agent: invalid --buffer-size: %s (%u to %u bytes)\n", v,
                AGENT_MIN_BUFFER, AGENT_MAX_BUFFER);
        return -1;
      }
      o->buffer_size = (size_t)n;
    } else {
      fprintf(stderr, "sandlot-agent: unknown option: %s\n", a);
      usage(stderr);
      return -1;
    }
    i++;
  }
  if (o->listen_path == NULL && o->nserial == 0 && o->nstream_fds == 0)
    o->listen_path = AGENT_DEFAULT_SOCKET;
  return 0;
}

static int compare_fds(const void *a, const void *b) {
  return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* Close every inherited fd above 2 except the --stream-fd ones. The agent
 * must hold no fd that points outside the sandbox, because CRIU cannot
 * dump those. */
static void close_inherited_fds(const agent_options *o) {
  int keep[AGENT_MAX_STREAMS];
  memcpy(keep, o->stream_fds, sizeof keep);
  qsort(keep, (size_t)o->nstream_fds, sizeof keep[0], compare_fds);
  unsigned from = 3;
  for (int i = 0; i < o->nstream_fds; i++) {
    unsigned fd = (unsigned)keep[i];
    if (fd < from) continue; /* 0 to 2 stay open anyway */
    if (fd > from) syscall(SYS_close_range, from, fd - 1, 0u);
    from = fd + 1;
  }
  syscall(SYS_close_range, from, ~0u, 0u);
}

static int make_parent_dir(const char *path) {
  char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(dir, 0755);
    *p = '/';
  }
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -1;
  return 0;
}

static int open_listener(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "sandlot-agent: socket path too long: %s\n", path);
    return -1;
  }
  strcpy(addr.sun_path, path);
  if (make_parent_dir(path) < 0) {
    fprintf(stderr, "sandlot-agent: cannot create the directory of %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  unlink(path);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || chmod(path, 0600) < 0 ||
      listen(fd, 128) < 0) {
    fprintf(stderr, "sandlot-agent: cannot listen on %s: %s\n", path, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int open_signalfd(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SL_QUIESCE_END_SIGNAL);
  sigprocmask(SIG_BLOCK, &set, NULL);
  /* Writes to a closed connection must fail with EPIPE, not kill PID 1. */
  signal(SIGPIPE, SIG_IGN);
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Prepare `fd` (inherited), or when `path` is not NULL the device at
 * `path`, as a byte stream. */
static int open_stream(const char *path, int fd) {
  if (path != NULL) {
    fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      fprintf(stderr, "sandlot-agent: cannot open %s: %s\n", path, strerror(errno));
      return -1;
    }
  }
  /* A console (hvc, ttyS) is a tty: make it carry bytes unchanged. A
   * virtio-serial port is not a tty and needs nothing. */
  struct termios tio;
  if (isatty(fd) && tcgetattr(fd, &tio) == 0) {
    cfmakeraw(&tio);
    tcsetattr(fd, TCSANOW, &tio);
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    fprintf(stderr, "sandlot-agent: invalid stream fd %d: %s\n", fd, strerror(errno));
    return -1;
  }
  return fd;
}

/* Set the environment entries of `path`: "NAME=value" strings, each
 * ended by a NUL byte. */
static int load_env_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "sandlot-agent: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  static char data[256 << 10];
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  if (n < 0 || n == (ssize_t)sizeof data - 1) {
    fprintf(stderr, "sandlot-agent: cannot read %s (at most %zu bytes)\n", path, sizeof data - 2);
    return -1;
  }
  data[n] = '\0';
  for (char *entry = data; entry < data + n; entry += strlen(entry) + 1) {
    char *eq = strchr(entry, '=');
    if (eq == NULL || eq == entry) {
      fprintf(stderr, "sandlot-agent: invalid entry in %s (expected NAME=value): %s\n", path,
              entry);
      return -1;
    }
    *eq = '\0';
    setenv(entry, eq + 1, 1);
    *eq = '=';
  }
  return 0;
}

/* Create `dir` and its missing parents (mode 0755), then enter it. */
static int enter_cwd(const char *dir) {
  char path[4096];
  if (dir[0] != '/' || snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    fprintf(stderr, "sandlot-agent: invalid --cwd: %s (expected an absolute path)\n", dir);
    return -1;
  }
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  mkdir(path, 0755);
  if (chdir(path) < 0) {
    fprintf(stderr, "sandlot-agent: cannot enter %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

static int enter_root(const char *root) {
  if (chroot(root) < 0 || chdir("/") < 0) {
    fprintf(stderr, "sandlot-agent: cannot chroot into %s: %s\n", root, strerror(errno));
    return -1;
  }
  return 0;
}

static int setup(const agent_options *o) {
  g_agent.started_ms = now_ms();
  g_agent.buffer_size = o->buffer_size;
  g_agent.next_proc_id = 1;
  g_agent.listen_fd = -1;
  /* As PID 1 the agent leads the sandbox's session; elsewhere (tests) it
   * becomes a subreaper so orphans of its processes are still its to reap. */
  setsid();
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
  /* File modes in requests are exact; children get the usual 022 back. */
  umask(0);

  g_agent.epfd = epoll_create1(EPOLL_CLOEXEC);
  g_agent.signal_fd = open_signalfd();
  if (g_agent.epfd < 0 || g_agent.signal_fd < 0) {
    fprintf(stderr, "sandlot-agent: epoll or signalfd failed: %s\n", strerror(errno));
    return -1;
  }
  g_agent.signal_w = (watch){.kind = W_SIGNAL};
  watch_add(g_agent.signal_fd, EPOLLIN, &g_agent.signal_w);

  if (o->listen_path != NULL) {
    g_agent.listen_fd = open_listener(o->listen_path);
    if (g_agent.listen_fd < 0) return -1;
    g_agent.listen_w = (watch){.kind = W_LISTEN};
    watch_add(g_agent.listen_fd, EPOLLIN, &g_agent.listen_w);
    g_agent.listen_watched = 1;
  }
  /* The socket is bound first, so its path is a host path in tests. */
  if (o->root != NULL && enter_root(o->root) < 0) return -1;
  if (o->env_file != NULL && load_env_file(o->env_file) < 0) return -1;
  if (o->cwd != NULL && enter_cwd(o->cwd) < 0) return -1;
  /* Streams open last: in a VM the host waits for the first port to
   * open, so an agent that fails above exits before the host connects,
   * and the host reports its message from the console. */
  for (int i = 0; i < o->nserial + o->nstream_fds; i++) {
    int serial = i < o->nserial;
    int fd = open_stream(serial ? o->serial_paths[i] : NULL,
                         serial ? -1 : o->stream_fds[i - o->nserial]);
    if (fd < 0 || conn_new(fd, 1) == NULL) return -1;
  }
  return 0;
}

/* ---- The listener ------------------------------------------------------ */

/* Out of fds, a pending connection keeps the listener readable: stop
 * watching it for a while instead of spinning. */
#define ACCEPT_PAUSE_MS 100

/* Watch the listener unless accepting is paused (out of fds) or held by a
 * quiesce, and end a hold whose time is up. Sets *next to the time the
 * listener comes back, when that is later than `now`. */
static void update_listener(int64_t now, int64_t *next) {
  if (g_agent.listen_fd < 0) return;
  if (g_agent.hold_until_ms != 0 && g_agent.hold_until_ms <= now) {
    SL_WARN("agent.quiesce.end", "reason=hold timed out");
    g_agent.hold_until_ms = 0;
  }
  if (g_agent.listen_resume_ms != 0 && g_agent.listen_resume_ms <= now)
    g_agent.listen_resume_ms = 0;
  int64_t back = g_agent.listen_resume_ms > g_agent.hold_until_ms ? g_agent.listen_resume_ms
                                                                   : g_agent.hold_until_ms;
  if (back == 0 && !g_agent.listen_watched) {
    watch_add(g_agent.listen_fd, EPOLLIN, &g_agent.listen_w);
    g_agent.listen_watched = 1;
  } else if (back != 0 && g_agent.listen_watched) {
    watch_del(g_agent.listen_fd);
    g_agent.listen_watched = 0;
  }
  if (back != 0 && next != NULL && (*next < 0 || back < *next)) *next = back;
}

/* New connections wait in the listen backlog meanwhile: CRIU dumps a
 * listener with connections waiting to be accepted (its "in-flight"
 * connections), but not an accepted socket whose peer is outside the
 * dumped tree. */
void listener_hold(int64_t until_ms) {
  g_agent.hold_until_ms = until_ms;
  update_listener(now_ms(), NULL);
}

void quiesce_end(const char *reason) {
  if (g_agent.hold_until_ms == 0) return;
  SL_INFO("agent.quiesce.end", "reason=%s", reason);
  g_agent.hold_until_ms = 0;
  update_listener(now_ms(), NULL);
}

static void accept_clients(void) {
  /* The listener may have been held by an event earlier in this batch. */
  while (g_agent.listen_watched) {
    int fd = accept4(g_agent.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
      static unsigned long pauses;
      if (pauses++ % 100 == 0)
        SL_WARN("agent.accept", "error=%s action=pause pause_ms=%d pauses=%lu", strerror(errno),
                ACCEPT_PAUSE_MS, pauses);
      g_agent.listen_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
      update_listener(now_ms(), NULL);
      return;
    }
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        SL_WARN("agent.accept", "error=%s", strerror(errno));
      return;
    }
    if (conn_new(fd, 0) == NULL) close(fd);
  }
}

static void handle_signals(void) {
  struct signalfd_siginfo si;
  int children = 0;
  while (read(g_agent.signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      children = 1;
    } else if (si.ssi_signo == SL_QUIESCE_END_SIGNAL) {
      quiesce_end("signal");
    } else if (si.ssi_signo == SIGHUP) {
      /* A stray hangup must not end the sandbox; it is caught here rather
       * than ignored, because an ignored signal stays ignored in children. */
      SL_INFO("agent.signal", "signal=%u action=ignored", si.ssi_signo);
    } else {
      SL_INFO("agent.stop", "signal=%u", si.ssi_signo);
      g_agent.quit = 1;
    }
  }
  if (children) procs_reap_children();
}

static void dispatch(struct epoll_event *ev) {
  watch *w = ev->data.ptr;
  switch (w->kind) {
  case W_LISTEN:
    accept_clients();
    break;
  case W_SIGNAL:
    handle_signals();
    break;
  case W_CONN:
    if (!((conn *)w->obj)->dead) conn_on_event(w->obj, ev->events);
    break;
  case W_PIPE:
    if (!((proc *)w->obj)->dead) proc_on_pipe(w->obj, w->fd_index, ev->events);
    break;
  }
}

static int next_timeout(void) {
  int64_t now = now_ms(), next = -1;
  update_listener(now, &next);
  quiesce_check(now, &next);
  procs_check_timers(now, &next);
  conns_check_timers(now, &next);
  if (next < 0) return -1;
  return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static void run_loop(void) {
  struct epoll_event events[64];
  while (!g_agent.quit) {
    int n = epoll_wait(g_agent.epfd, events, 64, next_timeout());
    if (n < 0 && errno != EINTR) {
      SL_ERROR("agent.epoll", "op=wait error=%s", strerror(errno));
      return;
    }
    for (int i = 0; i < n; i++) dispatch(&events[i]);
    conns_reap();
    procs_free_dead();
  }
}

int main(int argc, char **argv) {
  agent_options o;
  if (parse_options(argc, argv, &o) < 0) return 2;
  close_inherited_fds(&o);
  if (setup(&o) < 0) return 1;
  SL_INFO("agent.start", "pid=%d version=%s", (int)getpid(), SANDLOT_VERSION);
  run_loop();
  /* Processes get SIGTERM; when the agent is PID 1, its exit makes the
   * kernel kill whatever is left in the namespace. */
  procs_terminate_all(SIGTERM);
  if (o.listen_path != NULL && o.root == NULL) unlink(o.listen_path);
  return 0;
}
