/* The store root, its folder tree and the paths inside it. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const area_folders[] = {"sandboxes", "snapshots", "layers", "templates"};
static const sl_id_kind area_kinds[] = {SL_ID_SANDBOX, SL_ID_SNAPSHOT, SL_ID_LAYER};
#define AREA_COUNT (sizeof area_folders / sizeof area_folders[0])

/* Folders created in every store, in addition to the areas. */
static const char *const extra_folders[] = {"vm"};

static int join_root(const char *base, const char *suffix, char *buf, size_t size,
                     sl_error *err) {
  size_t len = strlen(base);
  while (len > 1 && base[len - 1] == '/') len--;
  int n = snprintf(buf, size, "%.*s%s", (int)len, base, suffix);
  if (n < 0 || (size_t)n >= size || (size_t)n > SL_STORE_ROOT_MAX)
    return sl_error_set(err, ENAMETOOLONG, "store root too long: %.*s%s", (int)len, base,
                        suffix);
  return 0;
}

int sl_store_pick_root(uid_t euid, const char *sandlot_home, const char *xdg_data_home,
                       const char *home, char *buf, size_t size, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  if (buf == NULL || size == 0) return sl_error_set(err, EINVAL, "no buffer for the store root");

  if (sandlot_home != NULL && sandlot_home[0] != '\0') {
    if (sandlot_home[0] != '/')
      return sl_error_set(err, EINVAL, "SANDLOT_HOME must be an absolute path: %s",
                          sl_quote(sandlot_home, quoted, sizeof quoted));
    return join_root(sandlot_home, "", buf, size, err);
  }
  if (euid == 0) return join_root("/var/lib/sandlot", "", buf, size, err);
  if (xdg_data_home != NULL && xdg_data_home[0] == '/')
    return join_root(xdg_data_home, "/sandlot", buf, size, err);
  if (home == NULL || home[0] != '/')
    return sl_error_set(err, EINVAL,
                        "cannot choose a store: HOME is not an absolute path (%s); set "
                        "SANDLOT_HOME",
                        sl_quote(home, quoted, sizeof quoted));
  return join_root(home, "/.local/share/sandlot", buf, size, err);
}

int sl_store_resolve_root(char *buf, size_t size, sl_error *err) {
  const char *sandlot_home = getenv("SANDLOT_HOME");
  if (sandlot_home != NULL && sandlot_home[0] == '\0')
    return sl_error_set(err, EINVAL, "SANDLOT_HOME is set but empty (unset it for the default "
                                     "store, or set it to an absolute path)");
  const char *home = getenv("HOME");
  char pwbuf[4096];
  struct passwd pw, *found = NULL;
  if (home == NULL && getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &found) == 0 && found)
    home = found->pw_dir;
  return sl_store_pick_root(geteuid(), sandlot_home, getenv("XDG_DATA_HOME"), home,
                            buf, size, err);
}

/* Create each missing ancestor of `path` (not `path` itself) with 0700. */
static int create_parents(const char *path, sl_error *err) {
  char prefix[PATH_MAX];
  snprintf(prefix, sizeof prefix, "%s", path);
  for (char *slash = strchr(prefix + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    if (mkdir(prefix, 0700) < 0 && errno != EEXIST)
      return sl_error_errno(err, errno, "cannot create %s", prefix);
    *slash = '/';
  }
  return 0;
}

/* Check that an open folder is owned by us and not writable by others. */
static int check_folder(int fd, const char *path, sl_error *err) {
  struct stat st;
  if (fstat(fd, &st) < 0) return sl_error_errno(err, errno, "cannot stat %s", path);
  if (!S_ISDIR(st.st_mode)) return sl_error_set(err, ENOTDIR, "not a directory: %s", path);
  if (st.st_uid != geteuid())
    return sl_error_set(err, EPERM, "store directory %s is owned by uid %u, not by uid %u", path,
                        (unsigned)st.st_uid, (unsigned)geteuid());
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return sl_error_set(err, EPERM,
                        "store directory %s is writable by group or others (mode %04o); run "
                        "chmod go-w on it",
                        path, (unsigned)(st.st_mode & 07777));
  return 0;
}

/* Create `name` under the open root unless present, then check it. A
 * symlink fails the open, because O_NOFOLLOW rejects it with ELOOP. */
static int ensure_subfolder(int root_fd, const char *root, const char *name, sl_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", root, name);
  if (mkdirat(root_fd, name, 0700) < 0 && errno != EEXIST)
    return sl_error_errno(err, errno, "cannot create %s", path);

  int fd = openat(root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
    return sl_error_set(err, EPERM, "store directory %s is not a plain directory", path);
  if (fd < 0) return sl_error_errno(err, errno, "cannot open %s", path);
  int rc = check_folder(fd, path, err);
  close(fd);
  return rc;
}

static int create_tree(const char *root, sl_error *err) {
  int rc = create_parents(root, err);
  if (rc < 0) return rc;
  if (mkdir(root, 0700) < 0 && errno != EEXIST)
    return sl_error_errno(err, errno, "cannot create %s", root);

  int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return sl_error_errno(err, errno, "cannot open %s", root);
  rc = check_folder(root_fd, root, err);
  for (size_t i = 0; rc == 0 && i < AREA_COUNT; i++)
    rc = ensure_subfolder(root_fd, root, area_folders[i], err);
  for (size_t i = 0; rc == 0 && i < sizeof extra_folders / sizeof extra_folders[0]; i++)
    rc = ensure_subfolder(root_fd, root, extra_folders[i], err);
  close(root_fd);
  return rc;
}

int sl_store_open(sl_store *store, const char *root, sl_error *err) {
  if (store == NULL) return sl_error_set(err, EINVAL, "no store given");

  char quoted[SL_QUOTE_SIZE];
  if (root != NULL && root[0] != '/')
    return sl_error_set(err, EINVAL, "invalid store root: %s (must be an absolute path)",
                        sl_quote(root, quoted, sizeof quoted));

  char chosen[PATH_MAX];
  int rc = root == NULL ? sl_store_resolve_root(chosen, sizeof chosen, err)
                        : sl_store_pick_root(geteuid(), root, NULL, NULL, chosen,
                                             sizeof chosen, err);
  if (rc < 0) return rc;

  rc = create_tree(chosen, err);
  if (rc < 0) return sl_error_wrap_subject(err, "open store", chosen);
  memcpy(store->root, chosen, sizeof store->root);
  return 0;
}

int sl_store_exists(const char *root, sl_error *err) {
  char catalog[PATH_MAX];
  struct stat st;
  if (root == NULL || root[0] != '/')
    return sl_error_set(err, EINVAL, "invalid store root: %s (must be an absolute path)",
                        root ? root : "(null)");
  if (stat(root, &st) < 0) {
    if (errno == ENOENT) return 0;
    return sl_error_errno(err, errno, "cannot stat store root %s", root);
  }
  if (!S_ISDIR(st.st_mode)) return sl_error_set(err, ENOTDIR, "store root is not a directory: %s", root);
  int n = snprintf(catalog, sizeof catalog, "%s/catalog.db", root);
  if (n < 0 || (size_t)n >= sizeof catalog)
    return sl_error_set(err, ENAMETOOLONG, "store root too long: %s", root);
  if (stat(catalog, &st) == 0) return 1;
  if (errno == ENOENT) return 0;
  return sl_error_errno(err, errno, "cannot stat %s", catalog);
}

/* Check that `sub` is a relative path without empty, "." or ".." parts. */
static int validate_sub(const char *sub, sl_error *err) {
  char quoted[SL_QUOTE_SIZE];
  if (sub[0] == '\0' || sub[0] == '/')
    return sl_error_set(err, EINVAL, "invalid path inside the store: %s (must be relative)",
                        sl_quote(sub, quoted, sizeof quoted));
  const char *part = sub;
  while (1) {
    size_t len = strcspn(part, "/");
    if (len == 0 || (len == 1 && part[0] == '.') ||
        (len == 2 && part[0] == '.' && part[1] == '.'))
      return sl_error_set(err, EINVAL,
                          "invalid path inside the store: %s (empty, . or .. component)",
                          sl_quote(sub, quoted, sizeof quoted));
    if (part[len] == '\0') return 0;
    part += len + 1;
  }
}

static int validate_key(sl_store_area area, const char *key, sl_error *err) {
  if (area == SL_AREA_TEMPLATES) return sl_name_validate("template name", key, err);
  return sl_id_validate(area_kinds[area], key, err);
}

int sl_store_path(const sl_store *store, sl_store_area area, const char *key,
                  const char *sub, char *buf, size_t size, sl_error *err) {
  if (store == NULL || buf == NULL || size == 0)
    return sl_error_set(err, EINVAL, "no store or buffer given");
  if ((unsigned)area >= AREA_COUNT)
    return sl_error_set(err, EINVAL, "invalid store area: %d", (int)area);
  int rc = validate_key(area, key, err);
  if (rc == 0 && sub != NULL) rc = validate_sub(sub, err);
  if (rc < 0) return rc;

  int n = snprintf(buf, size, "%s/%s/%s%s%s", store->root, area_folders[area], key,
                   sub != NULL ? "/" : "", sub != NULL ? sub : "");
  if (n < 0 || (size_t)n >= size)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s/%s/%s/%s", store->root,
                        area_folders[area], key, sub != NULL ? sub : "");
  return 0;
}

int sl_store_sandbox_path(const sl_store *store, const char *sandbox_id, const char *sub,
                          char *buf, size_t size, sl_error *err) {
  return sl_store_path(store, SL_AREA_SANDBOXES, sandbox_id, sub, buf, size, err);
}

int sl_store_snapshot_path(const sl_store *store, const char *snapshot_id, const char *sub,
                           char *buf, size_t size, sl_error *err) {
  return sl_store_path(store, SL_AREA_SNAPSHOTS, snapshot_id, sub, buf, size, err);
}

int sl_store_layer_path(const sl_store *store, const char *layer_id, const char *sub,
                        char *buf, size_t size, sl_error *err) {
  return sl_store_path(store, SL_AREA_LAYERS, layer_id, sub, buf, size, err);
}

int sl_store_template_path(const sl_store *store, const char *name, const char *sub,
                           char *buf, size_t size, sl_error *err) {
  return sl_store_path(store, SL_AREA_TEMPLATES, name, sub, buf, size, err);
}

int sl_store_catalog_path(const sl_store *store, char *buf, size_t size, sl_error *err) {
  if (store == NULL || buf == NULL || size == 0)
    return sl_error_set(err, EINVAL, "no store or buffer given");
  int n = snprintf(buf, size, "%s/catalog.db", store->root);
  if (n < 0 || (size_t)n >= size)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s/catalog.db", store->root);
  return 0;
}

int sl_store_create_entry(const sl_store *store, sl_store_area area, const char *key,
                          char *buf, size_t size, sl_error *err) {
  char path[PATH_MAX];
  int rc = sl_store_path(store, area, key, NULL, path, sizeof path, err);
  if (rc < 0) return rc;
  if (buf != NULL && size > 0 && strlen(path) >= size)
    return sl_error_set(err, ENAMETOOLONG, "path too long: %s", path);

  if (mkdir(path, 0700) < 0) {
    if (errno == EEXIST) return sl_error_set(err, EEXIST, "store entry exists: %s", path);
    return sl_error_errno(err, errno, "cannot create %s", path);
  }
  if (buf != NULL && size > 0) memcpy(buf, path, strlen(path) + 1);
  return 0;
}
