#include "template.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Bump when the build procedure changes what a spec produces, so older
 * cache entries stop matching. */
#define TEMPLATE_FORMAT 1

static const char *const base_packages[] = {"python3", NULL};

static const sl_template_spec builtin_templates[] = {
    {
        .name = "base",
        .suite = "bookworm",
        .mirror = "http://deb.debian.org/debian",
        .variant = "minbase",
        .packages = base_packages,
        .commands = NULL,
    },
};

const sl_template_spec *sl_template_builtin(const char *name) {
  if (name == NULL) return NULL;
  for (size_t i = 0; i < sizeof builtin_templates / sizeof builtin_templates[0]; i++)
    if (strcmp(builtin_templates[i].name, name) == 0) return &builtin_templates[i];
  return NULL;
}

static int check_field(const char *key, const char *value, sl_error *err) {
  if (value == NULL || value[0] == '\0')
    return sl_error_set(err, EINVAL, "invalid template spec: %s is missing", key);
  if (strchr(value, '\n') != NULL)
    return sl_error_set(err, EINVAL, "invalid template spec: %s contains a newline: %s", key,
                        value);
  return 0;
}

/* Append formatted text; *used becomes larger than len on overflow. */
static void append(char *buf, size_t len, size_t *used, const char *key, const char *value) {
  int n = snprintf(buf + (*used < len ? *used : len), *used < len ? len - *used : 0, "%s=%s\n",
                   key, value);
  *used += (size_t)(n > 0 ? n : 0);
}

int sl_template_spec_text(const sl_template_spec *spec, char *buf, size_t len, sl_error *err) {
  const char *const fixed[][2] = {
      {"suite", spec->suite}, {"mirror", spec->mirror}, {"variant", spec->variant}};
  for (size_t i = 0; i < 3; i++)
    if (check_field(fixed[i][0], fixed[i][1], err) < 0) return -EINVAL;

  size_t used = 0;
  char format[16];
  snprintf(format, sizeof format, "%d", TEMPLATE_FORMAT);
  append(buf, len, &used, "format", format);
  for (size_t i = 0; i < 3; i++) append(buf, len, &used, fixed[i][0], fixed[i][1]);
  for (const char *const *p = spec->packages; p && *p; p++) {
    if (check_field("package", *p, err) < 0) return -EINVAL;
    append(buf, len, &used, "package", *p);
  }
  for (const char *const *c = spec->commands; c && *c; c++) {
    if (check_field("command", *c, err) < 0) return -EINVAL;
    append(buf, len, &used, "command", *c);
  }
  if (used >= len) return sl_error_set(err, ENOSPC, "template spec text longer than %zu bytes", len);
  return (int)used;
}

int sl_template_digest(const sl_template_spec *spec, char hex[SL_SHA256_HEX_LEN + 1],
                       sl_error *err) {
  char text[16384];
  int n = sl_template_spec_text(spec, text, sizeof text, err);
  if (n < 0) return n;
  sl_sha256_hex(text, (size_t)n, hex);
  return 0;
}

/* Quote `text` for sh inside single quotes. */
static char *sh_quote(const char *text) {
  size_t len = 2;
  for (const char *p = text; *p; p++) len += *p == '\'' ? 4 : 1;
  char *out = malloc(len + 1), *o = out;
  if (out == NULL) return NULL;
  *o++ = '\'';
  for (const char *p = text; *p; p++) {
    if (*p == '\'') {
      memcpy(o, "'\\''", 4);
      o += 4;
    } else {
      *o++ = *p;
    }
  }
  *o++ = '\'';
  *o = '\0';
  return out;
}

static char *joined_packages(const sl_template_spec *spec) {
  size_t len = sizeof "--include=";
  for (const char *const *p = spec->packages; p && *p; p++) len += strlen(*p) + 1;
  char *out = malloc(len);
  if (out == NULL) return NULL;
  strcpy(out, "--include=");
  for (const char *const *p = spec->packages; p && *p; p++) {
    if (p != spec->packages) strcat(out, ",");
    strcat(out, *p);
  }
  return out;
}

/* mmdebstrap runs each hook with sh, passing the root as $1. */
static char *customize_hook(const char *command) {
  char *quoted = sh_quote(command);
  if (quoted == NULL) return NULL;
  char *hook = NULL;
  if (asprintf(&hook, "--customize-hook=chroot \"$1\" /bin/sh -ec %s", quoted) < 0) hook = NULL;
  free(quoted);
  return hook;
}

char **sl_template_mmdebstrap_argv(const sl_template_spec *spec, const char *rootfs,
                                   sl_error *err) {
  char text[16384];
  if (sl_template_spec_text(spec, text, sizeof text, err) < 0) return NULL;

  size_t ncommands = 0;
  for (const char *const *c = spec->commands; c && *c; c++) ncommands++;
  char **argv = calloc(ncommands + 12, sizeof *argv);
  if (argv == NULL) {
    sl_error_set(err, ENOMEM, "out of memory building the mmdebstrap command");
    return NULL;
  }
  size_t n = 0;
  argv[n++] = strdup("mmdebstrap");
  argv[n++] = strdup("--mode=root");
  argv[n++] = strdup("--format=directory");
  if (asprintf(&argv[n++], "--variant=%s", spec->variant) < 0) argv[n - 1] = NULL;
  argv[n++] = strdup("--aptopt=Acquire::Retries \"3\"");
  if (spec->packages && spec->packages[0]) argv[n++] = joined_packages(spec);
  for (const char *const *c = spec->commands; c && *c; c++) argv[n++] = customize_hook(*c);
  argv[n++] = strdup(spec->suite);
  argv[n++] = strdup(rootfs);
  argv[n++] = strdup(spec->mirror);

  for (size_t i = 0; i < n; i++) {
    if (argv[i] != NULL) continue;
    for (size_t j = 0; j < n; j++) free(argv[j]);
    free(argv);
    sl_error_set(err, ENOMEM, "out of memory building the mmdebstrap command");
    return NULL;
  }
  return argv;
}

const char *sl_template_cache_dir(void) {
  const char *dir = getenv("SANDLOT_TEMPLATE_CACHE");
  return dir != NULL && dir[0] != '\0' ? dir : SL_TEMPLATE_CACHE_DEFAULT;
}

typedef struct progress_sink {
  sl_line_fn fn;
  void *data;
  FILE *log;
  const char *digest;
} progress_sink;

static void forward_progress(const char *line, void *data) {
  progress_sink *sink = data;
  if (sink->log) fprintf(sink->log, "%s\n", line);
  if (sink->fn)
    sink->fn(line, sink->data);
  else
    SL_INFO("template.progress", "digest=%.12s line=\"%s\"", sink->digest, line);
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int write_text_file(const char *path, const char *text, sl_error *err) {
  FILE *f = fopen(path, "we");
  if (f == NULL) return sl_error_errno(err, errno, "create %s", path);
  fputs(text, f);
  if (fclose(f) != 0) return sl_error_errno(err, errno, "write %s", path);
  return 0;
}

/* Build into <digest>.build and rename it to <digest> once complete, so
 * a cache entry that exists is always whole. Runs with the lock held. */
static int build_into_cache(const sl_template_spec *spec, const char *entry, const char *digest,
                            sl_line_fn progress, void *data, sl_error *err) {
  char build[PATH_MAX], rootfs[PATH_MAX], spec_path[PATH_MAX], log_path[PATH_MAX];
  char text[16384];
  if (sl_path_format(build, sizeof build, err, "%s.build", entry) < 0 ||
      sl_path_format(rootfs, sizeof rootfs, err, "%s/rootfs", build) < 0 ||
      sl_path_format(spec_path, sizeof spec_path, err, "%s/spec", build) < 0 ||
      sl_path_format(log_path, sizeof log_path, err, "%s/build.log", build) < 0)
    return -err->code;

  /* A build that a crash interrupted leaves this directory behind. */
  if (sl_remove_tree(build, err) < 0) return sl_error_wrap(err, "remove an unfinished build");
  if (mkdir(build, 0755) < 0) return sl_error_errno(err, errno, "mkdir %s", build);
  if (sl_template_spec_text(spec, text, sizeof text, err) < 0) return -err->code;
  if (write_text_file(spec_path, text, err) < 0) return -err->code;

  char **argv = sl_template_mmdebstrap_argv(spec, rootfs, err);
  if (argv == NULL) return -err->code;
  progress_sink sink = {progress, data, fopen(log_path, "we"), digest};
  SL_WARN("template.build", "template=%s digest=%.12s cache=%s note=\"building with mmdebstrap, "
          "this takes a few minutes once per machine\"", spec->name, digest, entry);
  int rc = sl_run(argv, forward_progress, &sink, err);
  sl_strv_free(argv);
  if (sink.log) fclose(sink.log);
  if (rc < 0) return sl_error_wrap(err, "build template %s (log: %s)", spec->name, log_path);

  if (rename(build, entry) < 0) return sl_error_errno(err, errno, "rename %s", build);
  SL_INFO("template.built", "template=%s digest=%.12s", spec->name, digest);
  return 0;
}

static int lock_file(const char *path, sl_error *err) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return sl_error_errno(err, errno, "open %s", path);
  while (flock(fd, LOCK_EX) < 0) {
    if (errno == EINTR) continue;
    int saved = errno;
    close(fd);
    return sl_error_errno(err, saved, "lock %s", path);
  }
  return fd;
}

int sl_template_ensure_cached(const sl_template_spec *spec, sl_line_fn progress, void *data,
                              char *rootfs, size_t len, sl_error *err) {
  char digest[SL_SHA256_HEX_LEN + 1];
  if (sl_template_digest(spec, digest, err) < 0) return -err->code;

  /* $SANDLOT_TEMPLATE_CACHE can be any length. */
  char dir[PATH_MAX], entry[PATH_MAX], lock[PATH_MAX];
  if (sl_path_format(dir, sizeof dir, err, "%s/templates", sl_template_cache_dir()) < 0 ||
      sl_path_format(entry, sizeof entry, err, "%s/%s", dir, digest) < 0 ||
      sl_path_format(rootfs, len, err, "%s/rootfs", entry) < 0 ||
      sl_path_format(lock, sizeof lock, err, "%s.lock", entry) < 0)
    return sl_error_wrap(err, "template cache");
  if (is_dir(rootfs)) return 0;

  if (sl_mkdir_p(dir, 0755, err) < 0) return sl_error_wrap(err, "template cache");
  int fd = lock_file(lock, err);
  if (fd < 0) return fd;
  int rc = is_dir(rootfs) ? 0 : build_into_cache(spec, entry, digest, progress, data, err);
  close(fd);
  return rc;
}

static int same_file_system(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev;
}

/* Copy the cached root into a fresh directory under layers/ and rename it
 * into place. When a concurrent importer wins the rename, our copy is
 * redundant and is removed. */
static int import_layer(const char *rootfs, const char *layers, const sl_template_layer *out,
                        sl_error *err) {
  char tmp[PATH_MAX], src[PATH_MAX];
  if (sl_path_format(tmp, sizeof tmp, err, "%s/.import-XXXXXX", layers) < 0 ||
      sl_path_format(src, sizeof src, err, "%s/.", rootfs) < 0)
    return -err->code;
  if (mkdtemp(tmp) == NULL) return sl_error_errno(err, errno, "mkdtemp in %s", layers);

  /* Hardlinks are safe because layers are never written: overlayfs copies
   * a file up before the first write from a sandbox. */
  char link_flag[] = "--link", reflink_flag[] = "--reflink=auto";
  char cp[] = "cp", archive[] = "-a";
  char *argv[] = {cp, archive, same_file_system(rootfs, layers) ? link_flag : reflink_flag, src,
                  tmp, NULL};
  int rc = sl_run(argv, NULL, NULL, err);
  if (rc == 0 && rename(tmp, out->path) < 0) {
    if (errno != EEXIST && errno != ENOTEMPTY)
      rc = sl_error_errno(err, errno, "rename %s to %s", tmp, out->path);
  }
  if (is_dir(tmp)) {
    sl_error ignored = {0};
    sl_remove_tree(tmp, &ignored);
  }
  return rc < 0 ? sl_error_wrap(err, "import template layer %s", out->layer_id) : 0;
}

int sl_template_prepare(const char *home, const sl_template_spec *spec, sl_line_fn progress,
                        void *data, sl_template_layer *out, sl_error *err) {
  if (sl_template_digest(spec, out->digest, err) < 0) return -err->code;
  snprintf(out->layer_id, sizeof out->layer_id, "ly-%.12s", out->digest);
  snprintf(out->path, sizeof out->path, "%s/layers/%s", home, out->layer_id);
  if (is_dir(out->path)) return 0;

  char rootfs[PATH_MAX], layers[PATH_MAX];
  int rc = sl_template_ensure_cached(spec, progress, data, rootfs, sizeof rootfs, err);
  if (rc < 0) return rc;
  snprintf(layers, sizeof layers, "%s/layers", home);
  if (sl_mkdir_p(layers, 0755, err) < 0) return -err->code;
  return import_layer(rootfs, layers, out, err);
}
