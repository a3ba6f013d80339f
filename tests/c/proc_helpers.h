/* Helpers shared by the process sandbox integration tests: a fresh store
 * per test, checks that nothing of a sandbox is left on the host, and
 * skips for missing capabilities. Include after test.h. */
#ifndef SANDLOT_PROC_HELPERS_H
#define SANDLOT_PROC_HELPERS_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proc_cgroup.h"
#include "proc_util.h"
#include "run.h"
#include "sandbox.h"

/* Exit 77 unless this process may create namespaces, cgroups and
 * overlays. */
static void require_privileges(void) {
  if (geteuid() != 0) SKIP("process sandboxes need root");
  sl_cgroup_layout layout;
  sl_error err = {0};
  if (sl_cgroup_detect(&layout, &err) < 0) {
    fprintf(stderr, "SKIPPED: %s\n", err.msg);
    exit(77);
  }
  FILE *f = fopen("/proc/filesystems", "r");
  char line[128];
  int overlay = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, "overlay")) overlay = 1;
  if (f) fclose(f);
  if (!overlay) SKIP("the kernel has no overlayfs");
}

static void print_progress(const char *line, void *data) {
  (void)data;
  fprintf(stderr, "template: %s\n", line);
}

/* A fresh store under /tmp; builds or imports the base template on first
 * use (the build is cached machine-wide). */
static sl_sandboxes *open_store(char *home, size_t len) {
  snprintf(home, len, "/tmp/sandlot-test-XXXXXX");
  if (mkdtemp(home) == NULL) return NULL;
  sl_sandboxes *h = NULL;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &h, &err) < 0) {
    fprintf(stderr, "open store %s: %s\n", home, err.msg);
    return NULL;
  }
  sl_sandboxes_set_progress(h, print_progress, NULL);
  return h;
}

/* Kill what a failed test left running, then remove the store. */
static void close_store(sl_sandboxes *h, const char *home) {
  sl_sandbox_info *items;
  size_t n;
  sl_error err = {0};
  if (sl_sandbox_list(h, &items, &n, &err) == 0) {
    for (size_t i = 0; i < n; i++)
      if (items[i].state != SL_SANDBOX_DEAD) sl_sandbox_kill(h, items[i].id, &err);
    free(items);
  }
  sl_sandboxes_close(h);
  if (sl_remove_tree(home, &err) < 0) fprintf(stderr, "remove %s: %s\n", home, err.msg);
}

/* The spec tests start from: auto_kill, so that a test that fails halfway
 * leaves no sandbox running after its process exits. */
static inline sl_create_spec test_spec(void) {
  sl_create_spec spec = {0};
  spec.auto_kill = 1;
  return spec;
}

static int mounted_below(const char *prefix) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[4096];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, prefix)) found = 1;
  if (f) fclose(f);
  return found;
}

static int cgroups_exist(const sl_sandbox_info *info) {
  sl_cgroup cg;
  sl_error err = {0};
  return sl_cgroup_parse(info->cgroups, &cg, &err) == 0 && sl_cgroup_exists(&cg);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Poll the record until it reaches `state`; 0 on success. */
static inline int wait_for_state(sl_sandboxes *h, const char *id, sl_sandbox_state state, int timeout_ms,
                          sl_sandbox_info *out) {
  sl_error err = {0};
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    if (sl_sandbox_get(h, id, out, &err) == 0 && out->state == state) return 0;
    sleep_ms(20);
  }
  return -1;
}

/* Nothing of the sandbox remains: no mount below its directory, no
 * cgroup, no PID 1, no monitor. Prints the first leftover it finds. */
static int nothing_left(sl_sandboxes *h, const sl_sandbox_info *info) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/", sl_sandboxes_home(h), info->id);
  if (mounted_below(dir)) return fprintf(stderr, "mount left below %s\n", dir), 0;
  if (cgroups_exist(info)) return fprintf(stderr, "cgroup left: %s\n", info->cgroups), 0;
  if (info->init_pid > 0 && sl_pid_alive(info->init_pid, info->init_start))
    return fprintf(stderr, "PID 1 (%d) still runs\n", info->init_pid), 0;
  const char *home = sl_sandboxes_home(h);
  for (int waited = 0; waited < 2000 && sl_monitor_find(home, info->id) > 0; waited += 10)
    sleep_ms(10);
  if (sl_monitor_find(home, info->id) > 0)
    return fprintf(stderr, "monitor of %s still runs\n", info->id), 0;
  return 1;
}

#endif
