/* The actions sandlot performs inside a CRIU dump or restore. */
#include "criu_action.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "criu_tree.h"
#include "layer_copy.h"
#include "proc_mounts.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The sandbox's tmpfs mounts are external to the images, because CRIU
 * would archive each one with tar and gzip while the tree is frozen (5 to
 * 10 ms each). Copying their files here takes well under a millisecond
 * for the few files they usually hold. */
static int capture_tmpfs(sl_error *err) {
  const char *root = getenv("SANDLOT_CAPTURE_ROOT");
  const char *keys = getenv("SANDLOT_CAPTURE_TMPFS");
  const char *to = getenv("SANDLOT_CAPTURE_TMPFS_TO");
  if (root == NULL || keys == NULL || to == NULL) return 0;
  char list[256];
  snprintf(list, sizeof list, "%s", keys);
  int rc = 0;
  char *save = NULL;
  for (char *key = strtok_r(list, " ", &save); key != NULL && rc == 0;
       key = strtok_r(NULL, " ", &save)) {
    const sl_tmpfs_mount *m = sl_tmpfs_mount_by_key(key);
    if (m == NULL) return sl_error_set(err, EINVAL, "unknown tmpfs key: %s", key);
    char from[4096], dst[4096];
    snprintf(from, sizeof from, "%s%s", root, m->path);
    snprintf(dst, sizeof dst, "%s/%s", to, key);
    rc = sl_layer_copy_ex(from, dst, SL_COPY_ONE_FILE_SYSTEM, NULL, err);
  }
  return rc;
}

static int capture_upper(sl_error *err) {
  const char *upper = getenv("SANDLOT_CAPTURE_UPPER");
  const char *layer = getenv("SANDLOT_CAPTURE_LAYER");
  int rc = capture_tmpfs(err);
  if (rc < 0) return rc;
  if (upper == NULL || layer == NULL) return 0;
  double start = now_ms();
  sl_layer_copy_stats stats;
  rc = sl_layer_copy(upper, layer, &stats, err);
  if (rc < 0) return rc;
  /* criu.out in the operation's work directory keeps this line. */
  fprintf(stderr, "sandlot-criu-action: post-dump: copied %llu files, %llu bytes in %.1f ms\n",
          (unsigned long long)stats.files, (unsigned long long)stats.bytes, now_ms() - start);
  return 0;
}

/* CRIU's own freeze loop sleeps 100 ms whenever the v1 freezer still
 * reports FREEZING, as it does on most dumps of a busy tree. Freezing here
 * with 1 ms polls lets CRIU find the cgroup FROZEN and skip its loop. */
static int freeze_before_dump(sl_error *err) {
  const char *cgroup = getenv("SANDLOT_FREEZE_CGROUP");
  if (cgroup == NULL) return 0;
  return sl_freezer_freeze_for_dump(cgroup, 10000, err);
}

int sl_criu_action_run(const char *action, sl_error *err) {
  if (action == NULL) return sl_error_set(err, EINVAL, "CRTOOLS_SCRIPT_ACTION is not set");
  if (strcmp(action, "pre-dump") == 0) return freeze_before_dump(err);
  if (strcmp(action, "post-dump") == 0) return capture_upper(err);
  return 0;
}

int sl_criu_action_path(char *buf, size_t size, sl_error *err) {
  const char *env = getenv("SANDLOT_CRIU_ACTION");
  if (env != NULL && env[0] != '\0') {
    if (snprintf(buf, size, "%s", env) >= (int)size)
      return sl_error_set(err, ENAMETOOLONG, "SANDLOT_CRIU_ACTION is too long");
    return 0;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) return sl_error_errno(err, errno, "cannot read /proc/self/exe");
  self[n] = '\0';
  if (snprintf(buf, size, "%s/%s", dirname(self), SL_CRIU_ACTION_BINARY) >= (int)size)
    return sl_error_set(err, ENAMETOOLONG, "path of %s is too long", SL_CRIU_ACTION_BINARY);
  /* Programs in a subfolder of the build (tests, benchmarks) find it
   * through $SANDLOT_BUILD_DIR, as sl_find_binary() finds the others. */
  const char *build = getenv("SANDLOT_BUILD_DIR");
  if (access(buf, X_OK) < 0 && build != NULL && build[0] != '\0' &&
      snprintf(buf, size, "%s/%s", build, SL_CRIU_ACTION_BINARY) >= (int)size)
    return sl_error_set(err, ENAMETOOLONG, "path of %s is too long", SL_CRIU_ACTION_BINARY);
  return 0;
}
