/* cgroup v1 and v2 freezing. */
#include "freezer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  bool v2;
  int control;  /* v1 freezer.state, v2 cgroup.freeze */
  int events;   /* v2 cgroup.events, else -1 */
} freezer;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void freezer_close(freezer *f) {
  if (f->control >= 0) close(f->control);
  if (f->events >= 0) close(f->events);
}

/* Open freezer.state, or cgroup.freeze and cgroup.events when the cgroup
 * has no v1 freezer file. */
static int freezer_open(const char *cgroup, int flags, freezer *f, sl_error *err) {
  *f = (freezer){.control = -1, .events = -1};
  if (cgroup == NULL || cgroup[0] != '/')
    return sl_error_set(err, EINVAL, "invalid freezer cgroup: %s", cgroup ? cgroup : "(null)");
  char path[4200];
  snprintf(path, sizeof path, "%s/freezer.state", cgroup);
  f->control = open(path, flags | O_CLOEXEC);
  if (f->control >= 0 || errno != ENOENT) {
    return f->control >= 0 ? 0 : sl_error_errno(err, errno, "cannot open %s", path);
  }
  f->v2 = true;
  snprintf(path, sizeof path, "%s/cgroup.freeze", cgroup);
  f->control = open(path, flags | O_CLOEXEC);
  if (f->control < 0) return sl_error_errno(err, errno, "cannot open %s", path);
  snprintf(path, sizeof path, "%s/cgroup.events", cgroup);
  f->events = open(path, O_RDONLY | O_CLOEXEC);
  if (f->events < 0) {
    int saved = errno;
    freezer_close(f);
    return sl_error_errno(err, saved, "cannot open %s", path);
  }
  return 0;
}

static int read_file(int fd, char *buf, size_t size) {
  ssize_t n = pread(fd, buf, size - 1, 0);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

static int read_state(const freezer *f, sl_freezer_state *state) {
  char buf[256];
  int rc = read_file(f->v2 ? f->events : f->control, buf, sizeof buf);
  if (rc < 0) return rc;
  if (!f->v2) {
    if (strncmp(buf, "FROZEN", 6) == 0)
      *state = SL_FREEZER_FROZEN;
    else
      *state = strncmp(buf, "FREEZING", 8) == 0 ? SL_FREEZER_FREEZING : SL_FREEZER_THAWED;
    return 0;
  }
  /* cgroup.events contains "frozen 1" once every task is frozen. Until
   * then a requested freeze ("1" in cgroup.freeze) is still in progress. */
  if (strstr(buf, "frozen 1") != NULL) {
    *state = SL_FREEZER_FROZEN;
    return 0;
  }
  char requested[8];
  rc = read_file(f->control, requested, sizeof requested);
  if (rc < 0) return rc;
  *state = requested[0] == '1' ? SL_FREEZER_FREEZING : SL_FREEZER_THAWED;
  return 0;
}

static int write_state(const freezer *f, bool frozen) {
  const char *value;
  if (f->v2)
    value = frozen ? "1" : "0";
  else
    value = frozen ? "FROZEN" : "THAWED";
  return pwrite(f->control, value, strlen(value), 0) < 0 ? -errno : 0;
}

int sl_freezer_get(const char *cgroup, sl_freezer_state *state, sl_error *err) {
  freezer f;
  int rc = freezer_open(cgroup, O_RDONLY, &f, err);
  if (rc < 0) return rc;
  rc = read_state(&f, state);
  freezer_close(&f);
  return rc < 0 ? sl_error_errno(err, -rc, "cannot read the freezer state of %s", cgroup) : 0;
}

int sl_freezer_freeze(const char *cgroup, int timeout_ms, sl_error *err) {
  freezer f;
  int rc = freezer_open(cgroup, O_RDWR, &f, err);
  if (rc < 0) return rc;
  double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
  sl_freezer_state state = SL_FREEZER_THAWED;
  rc = write_state(&f, true);
  /* A v1 freezer can stay in FREEZING while a task sleeps in an
   * uninterruptible call; writing FROZEN again retries the freeze. */
  for (int i = 0; rc == 0; i++) {
    rc = read_state(&f, &state);
    if (rc < 0 || state == SL_FREEZER_FROZEN || now_ms() > deadline) break;
    if (!f.v2 && i % 20 == 19) rc = write_state(&f, true);
    usleep(1000);
  }
  if (rc == 0 && state != SL_FREEZER_FROZEN) {
    write_state(&f, false);
    freezer_close(&f);
    return sl_error_set(err, ETIMEDOUT, "freezing %s timed out", cgroup);
  }
  freezer_close(&f);
  return rc < 0 ? sl_error_errno(err, -rc, "cannot freeze %s", cgroup) : 0;
}

/* Whether a wchan is the wait of a vfork parent for its child's exec or
 * exit: wait_for_vfork_done, or the function it is inlined into,
 * kernel_clone (seen on Linux 6.18) or _do_fork (before 5.10). A thread
 * briefly asleep elsewhere in kernel_clone matches too, which costs one
 * more thaw and freeze. */
static bool in_vfork_wait(const char *wchan) {
  static const char *const names[] = {"wait_for_vfork_done", "kernel_clone", "_do_fork"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(wchan, names[i]) == 0) return true;
  return false;
}

static bool has_vfork_parent(const char *cgroup) {
  char path[4200];
  snprintf(path, sizeof path, "%s/tasks", cgroup);
  FILE *tasks = fopen(path, "re");
  if (tasks == NULL) {
    snprintf(path, sizeof path, "%s/cgroup.threads", cgroup);
    tasks = fopen(path, "re");
  }
  if (tasks == NULL) return false;
  int tid;
  bool found = false;
  while (!found && fscanf(tasks, "%d", &tid) == 1) {
    char wchan_path[64], wchan[64] = "";
    snprintf(wchan_path, sizeof wchan_path, "/proc/%d/wchan", tid);
    FILE *f = fopen(wchan_path, "re");
    if (f == NULL) continue;
    if (fgets(wchan, sizeof wchan, f) != NULL) {
      wchan[strcspn(wchan, "\n")] = '\0';
      found = in_vfork_wait(wchan);
    }
    fclose(f);
  }
  fclose(tasks);
  return found;
}

int sl_freezer_freeze_for_dump(const char *cgroup, int timeout_ms, sl_error *err) {
  double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
  for (;;) {
    int rc = sl_freezer_freeze(cgroup, (int)(deadline - now_ms()) + 1, err);
    if (rc < 0 || !has_vfork_parent(cgroup)) return rc;
    if (now_ms() > deadline) {
      sl_freezer_thaw(cgroup, NULL);
      return sl_error_set(err, ETIMEDOUT, "%s kept a task waiting for a vfork child", cgroup);
    }
    rc = sl_freezer_thaw(cgroup, err);
    if (rc < 0) return rc;
    usleep(500);
  }
}

int sl_freezer_thaw(const char *cgroup, sl_error *err) {
  freezer f;
  int rc = freezer_open(cgroup, O_RDWR, &f, err);
  if (rc < 0) return rc;
  rc = write_state(&f, false);
  freezer_close(&f);
  return rc < 0 ? sl_error_errno(err, -rc, "cannot thaw %s", cgroup) : 0;
}
