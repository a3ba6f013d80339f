#include "criu_tmpfs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layer_copy.h"
#include "log.h"
#include "proc_mounts.h"

#define KEY_PREFIX "sandlot-"

/* Whether the mount table text lists a tmpfs mounted at `path`. Lines
 * read "id parent dev root mountpoint options ... - fstype source ...";
 * the mount point is relative to the reader's root. */
static bool has_tmpfs_at(const char *mountinfo, const char *path) {
  const char *line = mountinfo;
  while (*line != '\0') {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char copy[8192], point[4096], fstype[64];
    snprintf(copy, sizeof copy, "%.*s", (int)len, line);
    const char *dash = strstr(copy, " - ");
    if (dash != NULL && sscanf(copy, "%*s %*s %*s %*s %4095s", point) == 1 &&
        sscanf(dash + 3, "%63s", fstype) == 1 && strcmp(point, path) == 0 &&
        strcmp(fstype, "tmpfs") == 0)
      return true;
    line = end ? end + 1 : line + len;
  }
  return false;
}

static char *read_mountinfo(pid_t pid, sl_error *err) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) {
    sl_error_errno(err, errno, "cannot read %s", path);
    return NULL;
  }
  size_t cap = 1 << 20;
  char *text = malloc(cap);
  if (text != NULL) text[fread(text, 1, cap - 1, f)] = '\0';
  fclose(f);
  if (text == NULL) sl_error_set(err, ENOMEM, "out of memory reading %s", path);
  return text;
}

static void add_key(sl_criu_tmpfs *t, const char *key) {
  size_t used = strlen(t->keys);
  snprintf(t->keys + used, sizeof t->keys - used, "%s%s", used ? " " : "", key);
}

int sl_criu_tmpfs_for_dump(pid_t pid, sl_criu_tmpfs *out, sl_error *err) {
  memset(out, 0, sizeof *out);
  char *mountinfo = read_mountinfo(pid, err);
  if (mountinfo == NULL) return -err->code;
  for (const sl_tmpfs_mount *m = sl_tmpfs_mounts; m->path && out->count < SL_CRIU_TMPFS_MAX; m++) {
    if (!has_tmpfs_at(mountinfo, m->path)) continue;
    snprintf(out->externals[out->count++], sizeof out->externals[0], "mnt[%s]:" KEY_PREFIX "%s",
             m->path, m->key);
    add_key(out, m->key);
  }
  free(mountinfo);
  return 0;
}

/* Mount a tmpfs for `m` at `dir` and copy `copy` into it; a read-only
 * one is made read-only after the copy. */
static int mount_filled(const sl_tmpfs_mount *m, const char *copy, const char *dir,
                        sl_error *err) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return sl_error_errno(err, errno, "cannot create %s", dir);
  if (mount("tmpfs", dir, "tmpfs", m->flags & ~MS_RDONLY, m->options) < 0)
    return sl_error_errno(err, errno, "cannot mount a tmpfs on %s", dir);
  int rc = sl_layer_copy_ex(copy, dir, SL_COPY_INTO_EXISTING, NULL, err);
  if (rc == 0 && (m->flags & MS_RDONLY) &&
      mount(NULL, dir, NULL, MS_REMOUNT | m->flags, m->options) < 0)
    rc = sl_error_errno(err, errno, "cannot make %s read-only", dir);
  if (rc < 0) umount2(dir, MNT_DETACH);
  return rc;
}

int sl_criu_tmpfs_for_restore(const char *images, const char *work, sl_criu_tmpfs *out,
                              sl_error *err) {
  memset(out, 0, sizeof *out);
  for (const sl_tmpfs_mount *m = sl_tmpfs_mounts; m->path && out->count < SL_CRIU_TMPFS_MAX; m++) {
    char copy[4200];
    struct stat st;
    snprintf(copy, sizeof copy, "%s/%s", images, m->key);
    if (lstat(copy, &st) < 0 || !S_ISDIR(st.st_mode)) continue;
    char *dir = out->mounts[out->count];
    if (snprintf(dir, sizeof out->mounts[0], "%s/%s", work, m->key) >= (int)sizeof out->mounts[0]) {
      sl_criu_tmpfs_release(out);
      return sl_error_set(err, ENAMETOOLONG, "work directory path too long: %s", work);
    }
    if (mount_filled(m, copy, dir, err) < 0) {
      dir[0] = '\0';
      sl_criu_tmpfs_release(out);
      return -err->code;
    }
    char external[sizeof out->externals[0]];
    snprintf(external, sizeof external, "mnt[" KEY_PREFIX "%s]:%s", m->key, dir);
    memcpy(out->externals[out->count++], external, sizeof external);
    add_key(out, m->key);
  }
  return 0;
}

void sl_criu_tmpfs_release(sl_criu_tmpfs *t) {
  for (size_t i = 0; i < t->count; i++) {
    if (t->mounts[i][0] == '\0') continue;
    if (umount2(t->mounts[i], MNT_DETACH) < 0)
      SL_WARN("criu.tmpfs_unmount_failed", "path=%s errno=%d", t->mounts[i], errno);
    rmdir(t->mounts[i]);
    t->mounts[i][0] = '\0';
  }
}
