/* CRIU option building: pure functions from sl_criu_opts to argv. */
#include "criu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandlot_config.h"

static const char *const command_names[] = {
    [SL_CRIU_CHECK] = "check",
    [SL_CRIU_DUMP] = "dump",
    [SL_CRIU_RESTORE] = "restore",
    [SL_CRIU_LAZY_PAGES] = "lazy-pages",
};

static const char *const network_lock_names[] = {
    [SL_CRIU_NETLOCK_DEFAULT] = NULL,
    [SL_CRIU_NETLOCK_IPTABLES] = "iptables",
    [SL_CRIU_NETLOCK_NFTABLES] = "nftables",
    [SL_CRIU_NETLOCK_SKIP] = "skip",
};

static const char *const cgroup_mode_names[] = {
    [SL_CRIU_CGROUPS_DEFAULT] = NULL,   [SL_CRIU_CGROUPS_IGNORE] = "ignore",
    [SL_CRIU_CGROUPS_NONE] = "none",    [SL_CRIU_CGROUPS_PROPS] = "props",
    [SL_CRIU_CGROUPS_SOFT] = "soft",    [SL_CRIU_CGROUPS_FULL] = "full",
    [SL_CRIU_CGROUPS_STRICT] = "strict",
};

const char *sl_criu_path(void) {
  const char *env = getenv("SANDLOT_CRIU");
  if (env != NULL && env[0] != '\0') return env;
  return SANDLOT_CRIU_PATH;
}

const char *sl_criu_log_name(const sl_criu_opts *opts) {
  static const char *const default_names[] = {
      [SL_CRIU_CHECK] = "check.log",
      [SL_CRIU_DUMP] = "dump.log",
      [SL_CRIU_RESTORE] = "restore.log",
      [SL_CRIU_LAZY_PAGES] = "lazy-pages.log",
  };
  if (opts->log_name != NULL) return opts->log_name;
  if ((unsigned)opts->command > SL_CRIU_LAZY_PAGES) return "criu.log";
  return default_names[opts->command];
}

void sl_argv_free(sl_argv *args) {
  if (args == NULL) return;
  for (size_t i = 0; i < args->count; i++) free(args->argv[i]);
  free(args->argv);
  args->argv = NULL;
  args->count = 0;
  args->capacity = 0;
}

static int argv_push(sl_argv *args, const char *value, sl_error *err) {
  if (args->count + 2 > args->capacity) {
    size_t capacity = args->capacity ? args->capacity * 2 : 32;
    char **grown = realloc(args->argv, capacity * sizeof *grown);
    if (grown == NULL) return sl_error_set(err, ENOMEM, "out of memory building CRIU arguments");
    args->argv = grown;
    args->capacity = capacity;
  }
  char *copy = strdup(value);
  if (copy == NULL) return sl_error_set(err, ENOMEM, "out of memory building CRIU arguments");
  args->argv[args->count++] = copy;
  args->argv[args->count] = NULL;
  return 0;
}

static int argv_push2(sl_argv *args, const char *option, const char *value, sl_error *err) {
  int rc = argv_push(args, option, err);
  return rc < 0 ? rc : argv_push(args, value, err);
}

static int argv_pushf(sl_argv *args, sl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int argv_pushf(sl_argv *args, sl_error *err, const char *fmt, ...) {
  char buf[4200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof buf)
    return sl_error_set(err, EINVAL, "CRIU argument too long: %.64s...", buf);
  return argv_push(args, buf, err);
}

/* A path CRIU receives must be non-empty, absolute when `absolute`, and free
 * of newlines (CRIU's log and action environment are line based). */
static int check_path(const char *option, const char *path, bool required, bool absolute,
                      sl_error *err) {
  if (path == NULL) {
    if (required) return sl_error_set(err, EINVAL, "missing CRIU option: %s", option);
    return 0;
  }
  if (path[0] == '\0') return sl_error_set(err, EINVAL, "empty path for CRIU option %s", option);
  if (absolute && path[0] != '/')
    return sl_error_set(err, EINVAL, "CRIU option %s needs an absolute path: %s", option, path);
  if (strchr(path, '\n') != NULL)
    return sl_error_set(err, EINVAL, "newline in path for CRIU option %s", option);
  return 0;
}

static int reject_if(bool set, const char *option, sl_criu_command command, sl_error *err) {
  if (!set) return 0;
  return sl_error_set(err, EINVAL, "CRIU option %s is invalid for criu %s", option,
                      command_names[command]);
}

/* Options that belong to dump only. */
static int reject_dump_options(const sl_criu_opts *o, sl_error *err) {
  int rc = 0;
  if (rc == 0) rc = reject_if(o->pid != 0, "-t", o->command, err);
  if (rc == 0) rc = reject_if(o->leave_running, "--leave-running", o->command, err);
  if (rc == 0) rc = reject_if(o->freeze_cgroup != NULL, "--freeze-cgroup", o->command, err);
  if (rc == 0)
    rc = reject_if(o->network_lock != SL_CRIU_NETLOCK_DEFAULT, "--network-lock", o->command, err);
  if (rc == 0) rc = reject_if(o->ghost_limit != 0, "--ghost-limit", o->command, err);
  if (rc == 0) rc = reject_if(o->freeze_timeout_s != 0, "--timeout", o->command, err);
  if (rc == 0) rc = reject_if(o->display_stats, "--display-stats", o->command, err);
  return rc;
}

/* Options that belong to restore only. */
static int reject_restore_options(const sl_criu_opts *o, sl_error *err) {
  int rc = 0;
  if (rc == 0) rc = reject_if(o->root != NULL, "--root", o->command, err);
  if (rc == 0) rc = reject_if(o->pidfile != NULL, "--pidfile", o->command, err);
  if (rc == 0) rc = reject_if(o->detach, "-d", o->command, err);
  if (rc == 0) rc = reject_if(o->lazy_pages, "--lazy-pages", o->command, err);
  if (rc == 0) rc = reject_if(o->inherit_fds[0] != NULL, "--inherit-fd", o->command, err);
  return rc;
}

/* Options shared by dump and restore that a check or lazy-pages run rejects. */
static int reject_tree_options(const sl_criu_opts *o, sl_error *err) {
  int rc = 0;
  if (rc == 0) rc = reject_if(o->action_script != NULL, "--action-script", o->command, err);
  if (rc == 0) rc = reject_if(o->empty_net_ns, "--empty-ns", o->command, err);
  if (rc == 0)
    rc = reject_if(o->manage_cgroups != SL_CRIU_CGROUPS_DEFAULT, "--manage-cgroups", o->command,
                   err);
  if (rc == 0) rc = reject_if(o->cgroup_roots[0] != NULL, "--cgroup-root", o->command, err);
  if (rc == 0) rc = reject_if(o->file_locks, "--file-locks", o->command, err);
  if (rc == 0) rc = reject_if(o->tcp_established, "--tcp-established", o->command, err);
  if (rc == 0) rc = reject_if(o->external[0] != NULL, "--external", o->command, err);
  return rc;
}

/* TYPE[ID] or TYPE[ID]:VALUE, as CRIU's --external parses it. */
static bool is_external_spec(const char *spec) {
  const char *open = strchr(spec, '[');
  const char *close = open ? strchr(open, ']') : NULL;
  if (open == NULL || open == spec || close == NULL || close == open + 1) return false;
  return close[1] == '\0' || (close[1] == ':' && close[2] != '\0');
}

/* fd[N]:KEY with a decimal N. */
static bool is_inherit_fd_spec(const char *spec) {
  if (strncmp(spec, "fd[", 3) != 0) return false;
  const char *p = spec + 3;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') p++;
  return p[0] == ']' && p[1] == ':' && p[2] != '\0';
}

static int validate_externals(const sl_criu_opts *o, sl_error *err) {
  for (int i = 0; i < SL_CRIU_MAX_EXTERNAL && o->external[i] != NULL; i++)
    if (!is_external_spec(o->external[i]) || strchr(o->external[i], '\n') != NULL)
      return sl_error_set(err, EINVAL, "invalid --external %s: expected TYPE[ID] or TYPE[ID]:KEY",
                          o->external[i]);
  for (int i = 0; i < SL_CRIU_MAX_EXTERNAL && o->inherit_fds[i] != NULL; i++)
    if (!is_inherit_fd_spec(o->inherit_fds[i]) || strchr(o->inherit_fds[i], '\n') != NULL)
      return sl_error_set(err, EINVAL, "invalid --inherit-fd %s: expected fd[N]:KEY",
                          o->inherit_fds[i]);
  return 0;
}

static int validate_common(const sl_criu_opts *o, sl_error *err) {
  int rc = check_path("-D (images directory)", o->images_dir, true, true, err);
  if (rc == 0) rc = check_path("-W (work directory)", o->work_dir, true, true, err);
  if (rc == 0) rc = check_path("-o (log name)", o->log_name, false, false, err);
  if (rc == 0 && o->log_name != NULL && strchr(o->log_name, '/') != NULL)
    rc = sl_error_set(err, EINVAL, "CRIU log name must be a file name in the work directory: %s",
                      o->log_name);
  if (rc == 0 && (o->log_level < 0 || o->log_level > 4))
    rc = sl_error_set(err, EINVAL, "invalid CRIU log level %d: expected 0 to 4", o->log_level);
  if (rc == 0) rc = check_path("--action-script", o->action_script, false, true, err);
  if (rc == 0 && (unsigned)o->manage_cgroups > SL_CRIU_CGROUPS_STRICT)
    rc = sl_error_set(err, EINVAL, "invalid --manage-cgroups mode %d", (int)o->manage_cgroups);
  return rc;
}

/* A cgroup root is "controller:/path" or "/path"; CRIU applies the
 * latter to every hierarchy. */
static int validate_cgroup_roots(const sl_criu_opts *o, sl_error *err) {
  for (int i = 0; i < SL_CRIU_MAX_CGROUP_ROOTS && o->cgroup_roots[i] != NULL; i++) {
    const char *root = o->cgroup_roots[i];
    const char *colon = strchr(root, ':');
    const char *path = colon ? colon + 1 : root;
    if ((colon != NULL && colon == root) || path[0] != '/' || strchr(root, '\n') != NULL)
      return sl_error_set(err, EINVAL, "invalid --cgroup-root %s: expected controller:/path",
                          root);
  }
  if (o->cgroup_roots[0] != NULL && o->manage_cgroups == SL_CRIU_CGROUPS_IGNORE)
    return sl_error_set(err, EINVAL,
                        "--cgroup-root has no effect with --manage-cgroups=ignore");
  return 0;
}

static int validate_dump(const sl_criu_opts *o, sl_error *err) {
  int rc = validate_common(o, err);
  if (rc == 0 && o->pid <= 0)
    rc = sl_error_set(err, EINVAL, "missing CRIU option: -t (pid of the tree's root)");
  if (rc == 0) rc = check_path("--freeze-cgroup", o->freeze_cgroup, false, true, err);
  if (rc == 0 && (unsigned)o->network_lock > SL_CRIU_NETLOCK_SKIP)
    rc = sl_error_set(err, EINVAL, "invalid --network-lock method %d", (int)o->network_lock);
  if (rc == 0) rc = validate_cgroup_roots(o, err);
  if (rc == 0) rc = validate_externals(o, err);
  if (rc == 0) rc = reject_restore_options(o, err);
  if (rc == 0) rc = reject_if(o->feature != NULL, "--feature", o->command, err);
  return rc;
}

static int validate_restore(const sl_criu_opts *o, sl_error *err) {
  int rc = validate_common(o, err);
  if (rc == 0) rc = check_path("--root", o->root, false, true, err);
  if (rc == 0) rc = check_path("--pidfile", o->pidfile, o->detach, true, err);
  if (rc == 0) rc = validate_cgroup_roots(o, err);
  if (rc == 0) rc = validate_externals(o, err);
  if (rc == 0) rc = reject_dump_options(o, err);
  if (rc == 0) rc = reject_if(o->feature != NULL, "--feature", o->command, err);
  return rc;
}

/* The lazy-pages daemon and the restore find each other through a socket in
 * the work directory, so both need the same explicit -W. */
static int validate_lazy_pages(const sl_criu_opts *o, sl_error *err) {
  if (o->work_dir == NULL)
    return sl_error_set(err, EINVAL,
                        "lazy pages need a work directory shared with the restore (-W)");
  int rc = validate_common(o, err);
  if (rc == 0) rc = check_path("--pidfile", o->pidfile, false, true, err);
  if (rc == 0) rc = reject_dump_options(o, err);
  if (rc == 0) rc = reject_tree_options(o, err);
  if (rc == 0) rc = reject_if(o->root != NULL, "--root", o->command, err);
  if (rc == 0) rc = reject_if(o->lazy_pages, "--lazy-pages", o->command, err);
  if (rc == 0) rc = reject_if(o->inherit_fds[0] != NULL, "--inherit-fd", o->command, err);
  if (rc == 0) rc = reject_if(o->feature != NULL, "--feature", o->command, err);
  return rc;
}

static int validate_check(const sl_criu_opts *o, sl_error *err) {
  int rc = 0;
  if (rc == 0) rc = reject_if(o->images_dir != NULL, "-D", o->command, err);
  if (rc == 0) rc = reject_if(o->work_dir != NULL, "-W", o->command, err);
  if (rc == 0) rc = reject_if(o->log_name != NULL, "-o", o->command, err);
  if (rc == 0) rc = reject_dump_options(o, err);
  if (rc == 0) rc = reject_restore_options(o, err);
  if (rc == 0) rc = reject_tree_options(o, err);
  if (rc == 0 && o->feature != NULL && (o->feature[0] == '\0' || o->feature[0] == '-'))
    rc = sl_error_set(err, EINVAL, "invalid CRIU feature name: \"%s\"", o->feature);
  if (rc == 0 && (o->log_level < 0 || o->log_level > 4))
    rc = sl_error_set(err, EINVAL, "invalid CRIU log level %d: expected 0 to 4", o->log_level);
  return rc;
}

static int validate(const sl_criu_opts *o, sl_error *err) {
  switch (o->command) {
    case SL_CRIU_CHECK: return validate_check(o, err);
    case SL_CRIU_DUMP: return validate_dump(o, err);
    case SL_CRIU_RESTORE: return validate_restore(o, err);
    case SL_CRIU_LAZY_PAGES: return validate_lazy_pages(o, err);
  }
  return sl_error_set(err, EINVAL, "invalid CRIU command %d", (int)o->command);
}

static int push_common(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = argv_push2(a, "-D", o->images_dir, err);
  if (rc == 0) rc = argv_push2(a, "-W", o->work_dir, err);
  if (rc == 0) rc = argv_push2(a, "-o", sl_criu_log_name(o), err);
  if (rc == 0 && o->log_level > 0) rc = argv_pushf(a, err, "-v%d", o->log_level);
  return rc;
}

static int push_tree_options(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = 0;
  if (rc == 0 && o->empty_net_ns) rc = argv_push2(a, "--empty-ns", "net", err);
  if (rc == 0 && o->manage_cgroups != SL_CRIU_CGROUPS_DEFAULT)
    rc = argv_pushf(a, err, "--manage-cgroups=%s", cgroup_mode_names[o->manage_cgroups]);
  for (int i = 0; rc == 0 && i < SL_CRIU_MAX_CGROUP_ROOTS && o->cgroup_roots[i] != NULL; i++)
    rc = argv_push2(a, "--cgroup-root", o->cgroup_roots[i], err);
  if (rc == 0 && o->file_locks) rc = argv_push(a, "--file-locks", err);
  if (rc == 0 && o->tcp_established) rc = argv_push(a, "--tcp-established", err);
  for (int i = 0; rc == 0 && i < SL_CRIU_MAX_EXTERNAL && o->external[i] != NULL; i++)
    rc = argv_push2(a, "--external", o->external[i], err);
  if (rc == 0 && o->action_script != NULL)
    rc = argv_push2(a, "--action-script", o->action_script, err);
  return rc;
}

static int push_dump(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = argv_push(a, "-t", err);
  if (rc == 0) rc = argv_pushf(a, err, "%d", (int)o->pid);
  if (rc == 0 && o->leave_running) rc = argv_push(a, "--leave-running", err);
  if (rc == 0 && o->freeze_cgroup != NULL)
    rc = argv_push2(a, "--freeze-cgroup", o->freeze_cgroup, err);
  if (rc == 0 && o->network_lock != SL_CRIU_NETLOCK_DEFAULT)
    rc = argv_push2(a, "--network-lock", network_lock_names[o->network_lock], err);
  if (rc == 0 && o->ghost_limit != 0)
    rc = argv_pushf(a, err, "--ghost-limit=%" PRIu64, o->ghost_limit);
  if (rc == 0 && o->freeze_timeout_s < 0)
    rc = sl_error_set(err, EINVAL, "invalid CRIU option --timeout %d (expected seconds > 0)",
                      o->freeze_timeout_s);
  if (rc == 0 && o->freeze_timeout_s > 0)
    rc = argv_pushf(a, err, "--timeout=%d", o->freeze_timeout_s);
  if (rc == 0 && o->display_stats) rc = argv_push(a, "--display-stats", err);
  return rc;
}

static int push_restore(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = 0;
  if (rc == 0 && o->root != NULL) rc = argv_push2(a, "--root", o->root, err);
  if (rc == 0 && o->detach) rc = argv_push(a, "-d", err);
  if (rc == 0 && o->pidfile != NULL) rc = argv_push2(a, "--pidfile", o->pidfile, err);
  if (rc == 0 && o->lazy_pages) rc = argv_push(a, "--lazy-pages", err);
  for (int i = 0; rc == 0 && i < SL_CRIU_MAX_EXTERNAL && o->inherit_fds[i] != NULL; i++)
    rc = argv_push2(a, "--inherit-fd", o->inherit_fds[i], err);
  return rc;
}

static int push_lazy_pages(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = argv_push(a, "-d", err);
  if (rc == 0 && o->pidfile != NULL) rc = argv_push2(a, "--pidfile", o->pidfile, err);
  return rc;
}

static int push_check(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  int rc = 0;
  if (rc == 0 && o->feature != NULL) rc = argv_push2(a, "--feature", o->feature, err);
  if (rc == 0 && o->log_level > 0) rc = argv_pushf(a, err, "-v%d", o->log_level);
  return rc;
}

static int push_command(const sl_criu_opts *o, sl_argv *a, sl_error *err) {
  if (o->command == SL_CRIU_CHECK) return push_check(o, a, err);
  int rc = push_common(o, a, err);
  if (rc < 0) return rc;
  switch (o->command) {
    case SL_CRIU_DUMP:
      rc = push_dump(o, a, err);
      return rc < 0 ? rc : push_tree_options(o, a, err);
    case SL_CRIU_RESTORE:
      rc = push_restore(o, a, err);
      return rc < 0 ? rc : push_tree_options(o, a, err);
    case SL_CRIU_LAZY_PAGES: return push_lazy_pages(o, a, err);
    case SL_CRIU_CHECK: break;
  }
  return 0;
}

int sl_criu_build_argv(const sl_criu_opts *opts, const char *criu_path, sl_argv *out,
                       sl_error *err) {
  *out = (sl_argv){0};
  if (opts == NULL) return sl_error_set(err, EINVAL, "missing CRIU options");
  int rc = check_path("CRIU binary", criu_path, true, true, err);
  if (rc == 0) rc = validate(opts, err);
  if (rc == 0) rc = argv_push(out, criu_path, err);
  if (rc == 0) rc = argv_push(out, command_names[opts->command], err);
  if (rc == 0) rc = push_command(opts, out, err);
  if (rc < 0) sl_argv_free(out);
  return rc;
}

/* Characters that need no quoting in a POSIX shell word. */
static bool is_plain_word(const char *s) {
  if (*s == '\0') return false;
  for (; *s; s++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=:,+@%", *s))
      return false;
  return true;
}

static size_t append(char *buf, size_t size, size_t used, const char *s, size_t n) {
  if (used >= size) return used;
  size_t room = size - used - 1;
  size_t take = n < room ? n : room;
  memcpy(buf + used, s, take);
  buf[used + take] = '\0';
  return used + n;
}

/* Append `word` in single quotes, writing each ' as '\''. */
static size_t append_quoted(char *buf, size_t size, size_t used, const char *word) {
  used = append(buf, size, used, "'", 1);
  for (const char *p = word; *p; p++) {
    if (*p == '\'')
      used = append(buf, size, used, "'\\''", 4);
    else
      used = append(buf, size, used, p, 1);
  }
  return append(buf, size, used, "'", 1);
}

char *sl_criu_format_argv(char *const *argv, char *buf, size_t size) {
  if (size == 0) return buf;
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; argv != NULL && argv[i] != NULL; i++) {
    if (i > 0) used = append(buf, size, used, " ", 1);
    if (is_plain_word(argv[i]))
      used = append(buf, size, used, argv[i], strlen(argv[i]));
    else
      used = append_quoted(buf, size, used, argv[i]);
  }
  return buf;
}
