/* Requests about the agent and the sandbox as a whole: hello, ping,
 * quiesce, and the hooks run after a fork starts (hostname, entropy). */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "sandlot_config.h"

static void handle_hello(conn *c, const sl_frame *f) {
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_VERSION, SL_PROTO_VERSION);
  sl_frame_put_str(r.b, SL_F_AGENT_VERSION, SANDLOT_VERSION);
  sl_frame_put_i64(r.b, SL_F_PID, getpid());
  sl_frame_put_i64(r.b, SL_F_UPTIME_MS, now_ms() - g_agent.started_ms);
  sl_frame_put_i64(r.b, SL_F_MAX_FRAME, SL_PROTO_MAX_FRAME);
  sl_frame_put_i64(r.b, SL_F_BUFFER_SIZE, (int64_t)g_agent.buffer_size);
  reply_end(&r);
}

/* quiesce [timeout_ms]: the reply comes once every other connection is
 * closed. With timeout_ms > 0, new connections also wait in the listen
 * backlog that long, or until SL_QUIESCE_END_SIGNAL, so none is open when
 * CRIU dumps the tree. */
static void handle_quiesce(conn *c, const sl_frame *f) {
  int64_t hold_ms = 0;
  sl_error err = {0};
  if (sl_frame_get_i64(f, SL_F_TIMEOUT_MS, &hold_ms, &err) < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  if (hold_ms < 0 || hold_ms > AGENT_QUIESCE_HOLD_MAX_MS) {
    reply_error(c, f->id, EINVAL, "invalid quiesce timeout: %lld ms (expected 0 to %d)",
                (long long)hold_ms, AGENT_QUIESCE_HOLD_MAX_MS);
    return;
  }
  SL_INFO("agent.quiesce", "conn=%lu hold_ms=%lld", c->serial, (long long)hold_ms);
  if (hold_ms > 0) listener_hold(now_ms() + hold_ms);
  conns_quiesce(c, f->id);
}

/* Keep /etc/hostname (mode 0644) in step with the host name, as PID 1 of
 * a process sandbox does at start. A root without /etc keeps none. */
static int write_hostname_file(const char *name) {
  int fd = open("/etc/hostname", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", name);
  int rc = 0;
  if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n) rc = -1;
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

static void handle_set_hostname(conn *c, const sl_frame *f) {
  char *name = NULL;
  sl_error err = {0};
  int rc = sl_frame_get_str(f, SL_F_NAME, &name, &err);
  if (rc < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  if (rc == 0 || name[0] == '\0' || strlen(name) > 64) {
    reply_error(c, f->id, EINVAL, "invalid hostname (1 to 64 bytes): %s", name ? name : "");
  } else if (sethostname(name, strlen(name)) < 0) {
    reply_error(c, f->id, errno, "sethostname %s failed: %s", name, strerror(errno));
  } else if (write_hostname_file(name) < 0) {
    reply_error(c, f->id, errno, "write /etc/hostname failed: %s", strerror(errno));
  } else {
    reply_ok(c, f->id);
  }
  free(name);
}

/* Mix host-provided random bytes into the kernel pool and reseed the CRNG.
 * RNDADDENTROPY also credits them but needs CAP_SYS_ADMIN in the initial
 * user namespace. A sandbox without it still mixes them in by writing to
 * /dev/urandom, which takes effect at the next periodic reseed. */
static int add_entropy(const uint8_t *data, size_t len, int *credited, sl_error *err) {
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "open /dev/urandom");
  struct rand_pool_info *info = malloc(sizeof *info + len);
  if (info == NULL) {
    close(fd);
    return sl_error_set(err, ENOMEM, "out of memory");
  }
  info->entropy_count = (int)(len * 8);
  info->buf_size = (int)len;
  memcpy(info->buf, data, len);
  *credited = ioctl(fd, RNDADDENTROPY, info) == 0;
  /* Once the CRNG is ready, credited bytes do not reseed it (Linux 5.18+
   * random.c), so a restored fork would keep the key of its snapshot until
   * the next periodic reseed, up to a minute later. Reseed now. */
  if (*credited) ioctl(fd, RNDRESEEDCRNG);
  free(info);
  int rc = 0;
  if (!*credited && write(fd, data, len) != (ssize_t)len)
    rc = sl_error_errno(err, errno, "write /dev/urandom");
  close(fd);
  return rc;
}

static void handle_add_entropy(conn *c, const sl_frame *f) {
  const uint8_t *data = NULL;
  size_t len = 0;
  if (!sl_frame_get_bytes(f, SL_F_DATA, &data, &len) || len == 0 || len > 4096) {
    reply_error(c, f->id, EINVAL, "entropy must be 1 to 4096 bytes");
    return;
  }
  int credited = 0;
  sl_error err = {0};
  if (add_entropy(data, len, &credited, &err) < 0) {
    reply_sl_error(c, f->id, &err);
    return;
  }
  reply r = reply_begin(c, SL_MSG_OK, f->id);
  sl_frame_put_i64(r.b, SL_F_CREDITED, credited);
  reply_end(&r);
}

void system_handle(conn *c, const sl_frame *f) {
  switch (f->type) {
  case SL_MSG_HELLO: handle_hello(c, f); break;
  case SL_MSG_PING: reply_ok(c, f->id); break;
  case SL_MSG_QUIESCE: handle_quiesce(c, f); break;
  case SL_MSG_SET_HOSTNAME: handle_set_hostname(c, f); break;
  case SL_MSG_ADD_ENTROPY: handle_add_entropy(c, f); break;
  default: reply_error(c, f->id, ENOSYS, "unknown request type 0x%02x", f->type);
  }
}
