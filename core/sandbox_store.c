#include "sandbox_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run.h"

struct sl_sbstore {
  char home[PATH_MAX];
};

typedef enum {
  F_STR, F_I64, F_U64, F_INT, F_DOUBLE, F_PID, F_STATE, F_ON_TIMEOUT, F_BACKEND
} field_type;

typedef struct field {
  const char *key;
  field_type type;
  size_t offset;
  size_t size; /* of the buffer, for F_STR */
} field;

#define FIELD(key, type, member) \
  {key, type, offsetof(sl_sandbox_info, member), sizeof(((sl_sandbox_info *)0)->member)}

static const field fields[] = {
    FIELD("id", F_STR, id),
    FIELD("backend", F_BACKEND, backend),
    FIELD("template", F_STR, template_name),
    FIELD("state", F_STATE, state),
    FIELD("created_at_ms", F_I64, created_at_ms),
    FIELD("ended_at_ms", F_I64, ended_at_ms),
    FIELD("timeout_ms", F_I64, timeout_ms),
    FIELD("deadline_ms", F_I64, deadline_ms),
    FIELD("on_timeout", F_ON_TIMEOUT, on_timeout),
    FIELD("memory_bytes", F_U64, memory_bytes),
    FIELD("pids_max", F_I64, pids_max),
    FIELD("cpu_shares", F_I64, cpu_shares),
    FIELD("cpus", F_DOUBLE, cpus),
    FIELD("auto_kill", F_INT, auto_kill),
    FIELD("labels", F_STR, labels),
    FIELD("init_pid", F_PID, init_pid),
    FIELD("init_start", F_U64, init_start),
    FIELD("monitor_pid", F_PID, monitor_pid),
    FIELD("monitor_start", F_U64, monitor_start),
    FIELD("cgroups", F_STR, cgroups),
    FIELD("agent_socket", F_STR, agent_socket),
    FIELD("root", F_STR, root),
    FIELD("exit_status", F_INT, exit_status),
    FIELD("exit_signal", F_INT, exit_signal),
    FIELD("end_reason", F_STR, end_reason),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

/* Write `value` escaped; returns the bytes it needs, like snprintf. */
static size_t escape_into(const char *value, char *buf, size_t len) {
  size_t n = 0;
  for (const char *p = value; *p; p++) {
    const char *rep = NULL;
    if (*p == '\\') rep = "\\\\";
    if (*p == '\n') rep = "\\n";
    size_t add = rep ? 2 : 1;
    if (n + add < len) memcpy(buf + n, rep ? rep : p, add);
    n += add;
  }
  if (len > 0) buf[n < len ? n : len - 1] = '\0';
  return n;
}

static void format_value(const sl_sandbox_info *info, const field *f, char *buf, size_t len) {
  const char *base = (const char *)info + f->offset;
  switch (f->type) {
    case F_STR: escape_into(base, buf, len); break;
    case F_I64: snprintf(buf, len, "%" PRId64, *(const int64_t *)base); break;
    case F_U64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)base); break;
    case F_INT: snprintf(buf, len, "%d", *(const int *)base); break;
    case F_DOUBLE: snprintf(buf, len, "%.17g", *(const double *)base); break;
    case F_PID: snprintf(buf, len, "%d", (int)*(const pid_t *)base); break;
    case F_STATE: snprintf(buf, len, "%s", sl_sandbox_state_name(*(const sl_sandbox_state *)base)); break;
    case F_ON_TIMEOUT: snprintf(buf, len, "%s", sl_on_timeout_name(*(const sl_on_timeout *)base)); break;
    case F_BACKEND: snprintf(buf, len, "%s", sl_backend_name(*(const sl_backend *)base)); break;
  }
}

int sl_sbstore_format(const sl_sandbox_info *info, char *buf, size_t len) {
  size_t used = 0;
  char value[2 * SL_SANDBOX_PATH_MAX + 1];
  for (size_t i = 0; i < NFIELDS; i++) {
    format_value(info, &fields[i], value, sizeof value);
    int n = snprintf(buf + used, used < len ? len - used : 0, "%s=%s\n", fields[i].key, value);
    used += (size_t)n;
    if (used >= len) return -ENOSPC;
  }
  return (int)used;
}

static void unescape(const char *in, char *out, size_t len) {
  size_t n = 0;
  for (const char *p = in; *p && n + 1 < len; p++) {
    if (*p == '\\' && p[1] != '\0') {
      p++;
      out[n++] = *p == 'n' ? '\n' : *p;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
}

static int parse_value(sl_sandbox_info *info, const field *f, const char *value, sl_error *err) {
  char *base = (char *)info + f->offset, *end = NULL;
  errno = 0;
  switch (f->type) {
    case F_STR: unescape(value, base, f->size); return 0;
    case F_I64: *(int64_t *)base = strtoll(value, &end, 10); break;
    case F_U64: *(uint64_t *)base = strtoull(value, &end, 10); break;
    case F_INT: *(int *)base = (int)strtol(value, &end, 10); break;
    case F_DOUBLE: *(double *)base = strtod(value, &end); break;
    case F_PID: *(pid_t *)base = (pid_t)strtol(value, &end, 10); break;
    case F_STATE: return sl_sandbox_state_parse(value, (sl_sandbox_state *)base, err);
    case F_ON_TIMEOUT: return sl_on_timeout_parse(value, (sl_on_timeout *)base, err);
    case F_BACKEND: return sl_backend_parse(value, (sl_backend *)base, err);
  }
  if (errno != 0 || end == value || *end != '\0')
    return sl_error_set(err, EINVAL, "invalid number in record: %s=%s", f->key, value);
  return 0;
}

static int parse_line(char *line, sl_sandbox_info *out, sl_error *err) {
  char *eq = strchr(line, '=');
  if (eq == NULL) return sl_error_set(err, EINVAL, "invalid record line: %s", line);
  *eq = '\0';
  for (size_t i = 0; i < NFIELDS; i++)
    if (strcmp(fields[i].key, line) == 0) return parse_value(out, &fields[i], eq + 1, err);
  return 0;
}

int sl_sbstore_parse(const char *text, sl_sandbox_info *out, sl_error *err) {
  memset(out, 0, sizeof *out);
  out->exit_status = -1;
  char *copy = strdup(text), *save = NULL;
  if (copy == NULL) return sl_error_set(err, ENOMEM, "out of memory parsing a record");
  int rc = 0;
  for (char *line = strtok_r(copy, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save))
    rc = parse_line(line, out, err);
  free(copy);
  return rc;
}

/* Files */

static void record_path(const sl_sbstore *store, const char *id, const char *name, char *buf,
                        size_t len) {
  snprintf(buf, len, "%s/sandboxes/%s/%s", store->home, id, name);
}

static int valid_id(const char *id) {
  if (id == NULL || strncmp(id, "sb-", 3) != 0 || strlen(id) != 15) return 0;
  for (const char *p = id + 3; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

static int read_record(const sl_sbstore *store, const char *id, sl_sandbox_info *out,
                       sl_error *err) {
  if (!valid_id(id)) return sl_error_set(err, ENOENT, "sandbox not found: %s", id ? id : "(null)");
  char path[PATH_MAX];
  record_path(store, id, "record", path, sizeof path);
  FILE *f = fopen(path, "re");
  if (f == NULL) {
    if (errno == ENOENT) return sl_error_set(err, ENOENT, "sandbox not found: %s", id);
    return sl_error_errno(err, errno, "open %s", path);
  }
  static const size_t max = 64 * 1024;
  char *text = malloc(max);
  if (text == NULL) {
    fclose(f);
    return sl_error_set(err, ENOMEM, "out of memory reading %s", path);
  }
  size_t n = fread(text, 1, max - 1, f);
  fclose(f);
  text[n] = '\0';
  int rc = sl_sbstore_parse(text, out, err);
  free(text);
  return rc < 0 ? sl_error_wrap(err, "read %s", path) : 0;
}

/* Replace the record through a temporary file and rename(2), so readers
 * never see half a record. */
static int write_record(const sl_sbstore *store, const sl_sandbox_info *info, sl_error *err) {
  char path[PATH_MAX], tmp[PATH_MAX];
  record_path(store, info->id, "record", path, sizeof path);
  record_path(store, info->id, "record.tmp", tmp, sizeof tmp);
  static const size_t max = 64 * 1024;
  char *text = malloc(max);
  if (text == NULL) return sl_error_set(err, ENOMEM, "out of memory writing %s", path);
  int n = sl_sbstore_format(info, text, max);
  int rc = 0;
  FILE *f = n < 0 ? NULL : fopen(tmp, "we");
  if (n < 0)
    rc = sl_error_set(err, ENOSPC, "record of %s too large", info->id);
  else if (f == NULL)
    rc = sl_error_errno(err, errno, "create %s", tmp);
  else if (fwrite(text, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0)
    rc = sl_error_errno(err, errno ? errno : EIO, "write %s", tmp);
  else if (rename(tmp, path) < 0)
    rc = sl_error_errno(err, errno, "rename %s", tmp);
  free(text);
  return rc;
}

static int lock_record(const sl_sbstore *store, const char *id, sl_error *err) {
  char path[PATH_MAX];
  record_path(store, id, "record.lock", path, sizeof path);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == ENOENT) return sl_error_set(err, ENOENT, "sandbox not found: %s", id);
    return sl_error_errno(err, errno, "open %s", path);
  }
  while (flock(fd, LOCK_EX) < 0)
    if (errno != EINTR) {
      int saved = errno;
      close(fd);
      return sl_error_errno(err, saved, "lock %s", path);
    }
  return fd;
}

int sl_sbstore_open(const char *home, sl_sbstore **out, sl_error *err) {
  sl_sbstore *store = calloc(1, sizeof *store);
  if (store == NULL) return sl_error_set(err, ENOMEM, "out of memory opening %s", home);
  if (snprintf(store->home, sizeof store->home, "%s", home) >= (int)sizeof store->home) {
    free(store);
    return sl_error_set(err, ENAMETOOLONG, "store path too long: %s", home);
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/sandboxes", home);
  if (sl_mkdir_p(dir, 0700, err) < 0) {
    free(store);
    return sl_error_wrap(err, "open store %s", home);
  }
  *out = store;
  return 0;
}

void sl_sbstore_close(sl_sbstore *store) { free(store); }

int sl_sbstore_new_id(char id[SL_SANDBOX_ID_MAX], sl_error *err) {
  unsigned char bytes[6];
  if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
    return sl_error_errno(err, errno, "getrandom");
  snprintf(id, SL_SANDBOX_ID_MAX, "sb-%02x%02x%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2],
           bytes[3], bytes[4], bytes[5]);
  return 0;
}

int sl_sbstore_insert(sl_sbstore *store, const sl_sandbox_info *info, sl_error *err) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", store->home, info->id);
  if (mkdir(dir, 0700) < 0) {
    if (errno == EEXIST) return sl_error_set(err, EEXIST, "sandbox id taken: %s", info->id);
    return sl_error_errno(err, errno, "mkdir %s", dir);
  }
  return write_record(store, info, err);
}

int sl_sbstore_get(sl_sbstore *store, const char *id, sl_sandbox_info *out, sl_error *err) {
  return read_record(store, id, out, err);
}

int sl_sbstore_update(sl_sbstore *store, const char *id, sl_sbstore_update_fn fn, void *data,
                      sl_error *err) {
  if (!valid_id(id)) return sl_error_set(err, ENOENT, "sandbox not found: %s", id ? id : "(null)");
  int lock = lock_record(store, id, err);
  if (lock < 0) return lock;
  sl_sandbox_info info;
  int rc = read_record(store, id, &info, err);
  if (rc == 0) rc = fn(&info, data, err);
  if (rc == 0) rc = write_record(store, &info, err);
  close(lock);
  return rc;
}

int sl_sbstore_delete(sl_sbstore *store, const char *id, sl_error *err) {
  if (!valid_id(id)) return sl_error_set(err, ENOENT, "sandbox not found: %s", id ? id : "(null)");
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", store->home, id);
  return sl_remove_tree(dir, err);
}

static int by_creation(const void *a, const void *b) {
  const sl_sandbox_info *x = a, *y = b;
  if (x->created_at_ms != y->created_at_ms) return x->created_at_ms < y->created_at_ms ? -1 : 1;
  return strcmp(x->id, y->id);
}

int sl_sbstore_list(sl_sbstore *store, sl_sandbox_info **out, size_t *count, sl_error *err) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/sandboxes", store->home);
  DIR *d = opendir(dir);
  if (d == NULL) return sl_error_errno(err, errno, "open %s", dir);
  sl_sandbox_info *items = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!valid_id(e->d_name)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      sl_sandbox_info *grown = realloc(items, cap * sizeof *items);
      if (grown == NULL) break;
      items = grown;
    }
    sl_error ignored = {0};
    /* A directory without a record is a sandbox being inserted. */
    if (read_record(store, e->d_name, &items[n], &ignored) == 0) n++;
  }
  closedir(d);
  if (n > 1) qsort(items, n, sizeof *items, by_creation);
  *out = items;
  *count = n;
  return 0;
}
