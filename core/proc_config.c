#include "proc_config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text.h"

int sl_strv_push(char ***list, size_t *count, const char *value) {
  char **grown = realloc(*list, (*count + 2) * sizeof **list);
  if (grown == NULL) return -ENOMEM;
  *list = grown;
  grown[*count] = strdup(value);
  if (grown[*count] == NULL) return -ENOMEM;
  (*count)++;
  grown[*count] = NULL;
  return 0;
}

typedef sl_text text_buf;

static void put(text_buf *b, const char *s, size_t n) { sl_text_put(b, s, n); }

static void put_pair(text_buf *b, const char *key, const char *value) {
  if (value == NULL) return;
  put(b, key, strlen(key));
  put(b, "=", 1);
  for (const char *p = value; *p; p++) {
    if (*p == '\\') put(b, "\\\\", 2);
    else if (*p == '\n') put(b, "\\n", 2);
    else put(b, p, 1);
  }
  put(b, "\n", 1);
}

__attribute__((format(printf, 3, 4))) static void put_number(text_buf *b, const char *key, const char *fmt, ...) {
  char value[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof value, fmt, ap);
  va_end(ap);
  put_pair(b, key, value);
}

char *sl_proc_config_format(const sl_proc_config *cfg) {
  text_buf b = {0};
  put_pair(&b, "id", cfg->id);
  put_pair(&b, "home", cfg->home);
  put_pair(&b, "root", cfg->root);
  put_pair(&b, "upper", cfg->upper);
  put_pair(&b, "work", cfg->work);
  for (size_t i = 0; i < cfg->nlowers; i++) put_pair(&b, "lower", cfg->lowers[i]);
  put_pair(&b, "hostname", cfg->hostname);
  put_pair(&b, "cwd", cfg->cwd);
  for (size_t i = 0; i < cfg->nenv; i++) put_pair(&b, "env", cfg->env[i]);
  put_pair(&b, "launch", cfg->launch);
  put_pair(&b, "images", cfg->images);
  put_pair(&b, "on_fork", cfg->on_fork);
  put_number(&b, "resume", "%d", cfg->resume);
  put_number(&b, "memory_bytes", "%" PRIu64, cfg->limits.memory_bytes);
  put_number(&b, "pids_max", "%" PRId64, cfg->limits.pids_max);
  put_number(&b, "cpu_shares", "%" PRId64, cfg->limits.cpu_shares);
  put_number(&b, "cpus", "%.17g", cfg->limits.cpus);
  put_number(&b, "timeout_ms", "%" PRId64, cfg->timeout_ms);
  put_pair(&b, "on_timeout", sl_on_timeout_name(cfg->on_timeout));
  put_number(&b, "auto_kill", "%d", cfg->auto_kill);
  if (b.failed) {
    free(b.data);
    return NULL;
  }
  return b.data;
}

static char *unescape_dup(const char *in) {
  char *out = malloc(strlen(in) + 1), *o = out;
  if (out == NULL) return NULL;
  for (const char *p = in; *p; p++) {
    if (*p == '\\' && p[1] != '\0') {
      p++;
      *o++ = *p == 'n' ? '\n' : *p;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return out;
}

static int parse_int64(const char *key, const char *value, int64_t *out, sl_error *err) {
  char *end;
  errno = 0;
  long long v = strtoll(value, &end, 10);
  if (errno || end == value || *end)
    return sl_error_set(err, EINVAL, "invalid number in monitor config: %s=%s", key, value);
  *out = v;
  return 0;
}

static int set_string(char **slot, const char *value) {
  free(*slot);
  *slot = unescape_dup(value);
  return *slot ? 0 : -ENOMEM;
}

static int apply_number(sl_proc_config *cfg, const char *key, const char *value, sl_error *err) {
  int64_t v = 0;
  if (strcmp(key, "cpus") == 0) {
    char *end;
    cfg->limits.cpus = strtod(value, &end);
    return *end ? sl_error_set(err, EINVAL, "invalid number in monitor config: cpus=%s", value) : 0;
  }
  if (parse_int64(key, value, &v, err) < 0) return -EINVAL;
  if (strcmp(key, "memory_bytes") == 0) cfg->limits.memory_bytes = (uint64_t)v;
  else if (strcmp(key, "pids_max") == 0) cfg->limits.pids_max = v;
  else if (strcmp(key, "cpu_shares") == 0) cfg->limits.cpu_shares = v;
  else if (strcmp(key, "timeout_ms") == 0) cfg->timeout_ms = v;
  else if (strcmp(key, "auto_kill") == 0) cfg->auto_kill = (int)v;
  else if (strcmp(key, "resume") == 0) cfg->resume = (int)v;
  return 0;
}

static int apply(sl_proc_config *cfg, const char *key, const char *value, sl_error *err) {
  static const struct {
    const char *key;
    size_t offset;
  } strings[] = {
      {"id", offsetof(sl_proc_config, id)},
      {"home", offsetof(sl_proc_config, home)},
      {"root", offsetof(sl_proc_config, root)},
      {"upper", offsetof(sl_proc_config, upper)},
      {"work", offsetof(sl_proc_config, work)},
      {"hostname", offsetof(sl_proc_config, hostname)},
      {"cwd", offsetof(sl_proc_config, cwd)},
      {"launch", offsetof(sl_proc_config, launch)},
      {"images", offsetof(sl_proc_config, images)},
      {"on_fork", offsetof(sl_proc_config, on_fork)},
  };
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
    if (strcmp(key, strings[i].key) == 0)
      return set_string((char **)((char *)cfg + strings[i].offset), value) < 0
                 ? sl_error_set(err, ENOMEM, "out of memory")
                 : 0;
  if (strcmp(key, "lower") == 0 || strcmp(key, "env") == 0) {
    char *plain = unescape_dup(value);
    int rc = plain ? (key[0] == 'l' ? sl_strv_push(&cfg->lowers, &cfg->nlowers, plain)
                                    : sl_strv_push(&cfg->env, &cfg->nenv, plain))
                   : -ENOMEM;
    free(plain);
    return rc < 0 ? sl_error_set(err, ENOMEM, "out of memory") : 0;
  }
  if (strcmp(key, "on_timeout") == 0) return sl_on_timeout_parse(value, &cfg->on_timeout, err);
  return apply_number(cfg, key, value, err);
}

int sl_proc_config_parse(const char *text, sl_proc_config *out, sl_error *err) {
  memset(out, 0, sizeof *out);
  char *copy = strdup(text), *save = NULL;
  if (copy == NULL) return sl_error_set(err, ENOMEM, "out of memory");
  int rc = 0;
  for (char *line = strtok_r(copy, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '=');
    if (eq == NULL) {
      rc = sl_error_set(err, EINVAL, "invalid monitor config line: %s", line);
      break;
    }
    *eq = '\0';
    rc = apply(out, line, eq + 1, err);
  }
  free(copy);
  if (rc == 0 && (!out->id || !out->home || !out->root || !out->upper || !out->work ||
                  out->nlowers == 0))
    rc = sl_error_set(err, EINVAL, "monitor config lacks id, home, root, upper, work or lower");
  if (rc < 0) sl_proc_config_free(out);
  return rc;
}

static void free_list(char **list) {
  for (char **p = list; p && *p; p++) free(*p);
  free(list);
}

void sl_proc_config_free(sl_proc_config *cfg) {
  char **strings[] = {&cfg->id,  &cfg->home,         &cfg->root,     &cfg->upper, &cfg->work,
                      &cfg->hostname, &cfg->cwd, &cfg->launch, &cfg->images,
                      &cfg->on_fork};
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) free(*strings[i]);
  free_list(cfg->lowers);
  free_list(cfg->env);
  memset(cfg, 0, sizeof *cfg);
}

/* The monitor rewrites the config of a running sandbox (rollback), so
 * the new text goes to a temporary file that replaces the old one. */
int sl_proc_config_write(const char *path, const sl_proc_config *cfg, sl_error *err) {
  char *text = sl_proc_config_format(cfg);
  if (text == NULL) return sl_error_set(err, ENOMEM, "out of memory writing %s", path);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "we");
  int rc = 0;
  if (f == NULL) rc = sl_error_errno(err, errno, "create %s", tmp);
  else {
    int failed = fputs(text, f) < 0;
    if (fclose(f) != 0 || failed) rc = sl_error_errno(err, errno ? errno : EIO, "write %s", tmp);
  }
  if (rc == 0 && rename(tmp, path) < 0) rc = sl_error_errno(err, errno, "rename %s", tmp);
  if (rc < 0) unlink(tmp);
  free(text);
  return rc;
}

int sl_proc_config_read(const char *path, sl_proc_config *out, sl_error *err) {
  FILE *f = fopen(path, "re");
  if (f == NULL) return sl_error_errno(err, errno, "open %s", path);
  size_t cap = 1 << 20;
  char *text = malloc(cap);
  if (text == NULL) {
    fclose(f);
    return sl_error_set(err, ENOMEM, "out of memory reading %s", path);
  }
  size_t n = fread(text, 1, cap - 1, f);
  fclose(f);
  text[n] = '\0';
  int rc = sl_proc_config_parse(text, out, err);
  free(text);
  return rc < 0 ? sl_error_wrap(err, "read %s", path) : 0;
}
