#include "proc_layers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc_init.h"
#include "run.h"
#include "sha256.h"

/* The digest of the last agent binary hashed, keyed by its identity, so
 * that creating many sandboxes hashes the binary once. */
static pthread_mutex_t digest_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char path[PATH_MAX];
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  char hex[SL_SHA256_HEX_LEN + 1];
} digest_cache;

static int agent_digest(const char *agent, char hex[SL_SHA256_HEX_LEN + 1], sl_error *err) {
  struct stat st;
  if (stat(agent, &st) < 0) return sl_error_errno(err, errno, "stat %s", agent);
  pthread_mutex_lock(&digest_lock);
  int hit = strcmp(digest_cache.path, agent) == 0 && digest_cache.dev == st.st_dev &&
            digest_cache.ino == st.st_ino && digest_cache.size == st.st_size &&
            digest_cache.mtime.tv_sec == st.st_mtim.tv_sec &&
            digest_cache.mtime.tv_nsec == st.st_mtim.tv_nsec;
  if (hit) memcpy(hex, digest_cache.hex, sizeof digest_cache.hex);
  pthread_mutex_unlock(&digest_lock);
  if (hit) return 0;

  int rc = sl_sha256_file(agent, hex);
  if (rc < 0) return sl_error_errno(err, -rc, "hash %s", agent);
  pthread_mutex_lock(&digest_lock);
  snprintf(digest_cache.path, sizeof digest_cache.path, "%s", agent);
  digest_cache.dev = st.st_dev;
  digest_cache.ino = st.st_ino;
  digest_cache.size = st.st_size;
  digest_cache.mtime = st.st_mtim;
  memcpy(digest_cache.hex, hex, sizeof digest_cache.hex);
  pthread_mutex_unlock(&digest_lock);
  return 0;
}

static int copy_file(const char *from, const char *to, mode_t mode, sl_error *err) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return sl_error_errno(err, errno, "open %s", from);
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (out < 0) {
    int saved = errno;
    close(in);
    return sl_error_errno(err, saved, "create %s", to);
  }
  char buf[65536];
  ssize_t n;
  int rc = 0;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) {
      rc = sl_error_errno(err, errno ? errno : EIO, "write %s", to);
      break;
    }
  if (n < 0 && rc == 0) rc = sl_error_errno(err, errno, "read %s", from);
  close(in);
  if (close(out) < 0 && rc == 0) rc = sl_error_errno(err, errno, "write %s", to);
  return rc;
}

int sl_agent_layer_prepare(const char *home, const char *agent, char *path, size_t len,
                           sl_error *err) {
  char hex[SL_SHA256_HEX_LEN + 1];
  if (agent_digest(agent, hex, err) < 0) return -err->code;
  if (sl_path_format(path, len, err, "%s/layers/ly-%.12s", home, hex) < 0) return -err->code;
  struct stat st;
  if (stat(path, &st) == 0) return 0;

  char layers[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX], file[PATH_MAX];
  if (sl_path_format(layers, sizeof layers, err, "%s/layers", home) < 0 ||
      sl_path_format(tmp, sizeof tmp, err, "%s/.agent-XXXXXX", layers) < 0)
    return -err->code;
  if (sl_mkdir_p(layers, 0755, err) < 0) return -err->code;
  if (mkdtemp(tmp) == NULL) return sl_error_errno(err, errno, "mkdtemp in %s", layers);
  chmod(tmp, 0755);
  int rc = 0;
  if (sl_path_format(dir, sizeof dir, err, "%s%s", tmp, SL_AGENT_DIR) < 0 ||
      sl_path_format(file, sizeof file, err, "%s%s", tmp, SL_AGENT_PATH) < 0)
    rc = -err->code;
  if (rc == 0 && mkdir(dir, 0755) < 0) rc = sl_error_errno(err, errno, "mkdir %s", dir);
  if (rc == 0) rc = copy_file(agent, file, 0755, err);
  /* Losing the rename to a concurrent creator is fine: same content. */
  if (rc == 0 && rename(tmp, path) < 0 && errno != EEXIST && errno != ENOTEMPTY)
    rc = sl_error_errno(err, errno, "rename %s", tmp);
  sl_error ignored = {0};
  if (stat(tmp, &st) == 0) sl_remove_tree(tmp, &ignored);
  return rc < 0 ? sl_error_wrap(err, "prepare the agent layer") : 0;
}
