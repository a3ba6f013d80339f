#include "proc_overlay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* mount(2) copies at most one page of option data. */
#define MOUNT_DATA_MAX 4095

static int check_path(const char *what, const char *path, sl_error *err) {
  if (path == NULL || path[0] != '/')
    return sl_error_set(err, EINVAL, "overlay %s must be an absolute path: %s", what,
                        path ? path : "(null)");
  if (strpbrk(path, ":,\\") != NULL)
    return sl_error_set(err, EINVAL, "overlay %s contains ':', ',' or '\\': %s", what, path);
  return 0;
}

int sl_overlay_options(const char *const *lowers, size_t nlowers, const char *upper,
                       const char *work, char *buf, size_t len, sl_error *err) {
  if (nlowers == 0) return sl_error_set(err, EINVAL, "overlay needs at least one lower layer");
  for (size_t i = 0; i < nlowers; i++)
    if (check_path("layer", lowers[i], err) < 0) return -EINVAL;
  if (check_path("upper dir", upper, err) < 0 || check_path("work dir", work, err) < 0)
    return -EINVAL;

  size_t used = 0;
  int n = snprintf(buf, len, "lowerdir=");
  used = n > 0 ? (size_t)n : 0;
  for (size_t i = 0; i < nlowers; i++) {
    n = snprintf(buf + (used < len ? used : len), used < len ? len - used : 0, "%s%s",
                 i ? ":" : "", lowers[i]);
    used += (size_t)n;
  }
  n = snprintf(buf + (used < len ? used : len), used < len ? len - used : 0,
               ",upperdir=%s,workdir=%s", upper, work);
  used += (size_t)n;
  if (used >= len || used > MOUNT_DATA_MAX)
    return sl_error_set(err, ENAMETOOLONG,
                        "overlay options need %zu bytes, more than the %d that mount(2) takes "
                        "(too many layers or too long a store path)",
                        used, MOUNT_DATA_MAX);
  return (int)used;
}

int sl_overlay_mount(const char *const *lowers, size_t nlowers, const char *upper,
                     const char *work, const char *target, sl_error *err) {
  char options[MOUNT_DATA_MAX + 1];
  int n = sl_overlay_options(lowers, nlowers, upper, work, options, sizeof options, err);
  if (n < 0) return n;
  if (mount("overlay", target, "overlay", MS_NODEV, options) < 0)
    return sl_error_errno(err, errno, "mount overlay at %s", target);
  return 0;
}

int sl_is_mount_point(const char *path) {
  struct stat st, parent;
  char up[4096];
  if (snprintf(up, sizeof up, "%s/..", path) >= (int)sizeof up) return 0;
  if (stat(path, &st) < 0 || stat(up, &parent) < 0) return 0;
  /* A bind mount of a directory of the same file system has the same
   * st_dev; the overlay and tmpfs mounts sandlot makes never do. */
  return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

int sl_overlay_unmount(const char *target, sl_error *err) {
  if (umount2(target, MNT_DETACH) == 0) return 0;
  if (errno == EINVAL || errno == ENOENT) return 0; /* not a mount point */
  return sl_error_errno(err, errno, "unmount %s", target);
}

/* Decode the octal escapes (\040 for a space) of a mountinfo field. */
static void unescape_octal(char *s) {
  char *out = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
        p[3] <= '7') {
      *out++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else {
      *out++ = *p;
    }
  }
  *out = '\0';
}

static int under_prefix(const char *path, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

char **sl_mounts_below(const char *mountinfo, const char *prefix, size_t *count) {
  size_t cap = 8, n = 0;
  char **out = calloc(cap + 1, sizeof *out);
  char *copy = strdup(mountinfo), *save = NULL;
  if (out == NULL || copy == NULL) {
    free(out);
    free(copy);
    *count = 0;
    return NULL;
  }
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *fields[5] = {0}, *fsave = NULL;
    char *tok = strtok_r(line, " ", &fsave);
    for (int i = 0; i < 5 && tok; i++, tok = strtok_r(NULL, " ", &fsave)) fields[i] = tok;
    if (fields[4] == NULL) continue;
    unescape_octal(fields[4]);
    if (!under_prefix(fields[4], prefix)) continue;
    if (n == cap) {
      char **grown = realloc(out, (2 * cap + 1) * sizeof *out);
      if (grown == NULL) break;
      out = grown;
      cap *= 2;
    }
    out[n++] = strdup(fields[4]);
    out[n] = NULL;
  }
  free(copy);
  /* mountinfo lists a mount after the one it sits on, so the reverse
   * order unmounts children first. */
  for (size_t i = 0; i < n / 2; i++) {
    char *t = out[i];
    out[i] = out[n - 1 - i];
    out[n - 1 - i] = t;
  }
  *count = n;
  return out;
}
