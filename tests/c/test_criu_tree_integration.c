/* Checkpoint and restore of real process trees with the built CRIU.
 * Covered: snapshots of a running sandbox, forks, forks of forks,
 * rollback, pause and resume, filesystem-only snapshots, kernel objects
 * CRIU must keep, and lazy restore. Failures must leave nothing behind.
 *
 * The cases share sandboxes and snapshots and run in order. Needs root. */
#include <errno.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_client.h"
#include "criu_tree.h"
#include "error.h"
#include "layer_copy.h"
#include "sandbox_fixture.h"
#include "sandlot_config.h"
#include "test.h"

static fx_env env;
static fx_sandbox source, fork1, forks[4], grandchild, paused, fresh, featured, featured_fork,
    lazy_source, lazy_fork, victim, corrupt_target;

typedef struct {
  char dir[256], images[300], layer[300], work[300];
} snap_paths;

static snap_paths snap_s1, snap_s2;
static long counter_before_s1, counter_after_s1;

static void snap_init(snap_paths *s, const char *name) {
  snprintf(s->dir, sizeof s->dir, "%s/snap-%s", env.base, name);
  snprintf(s->images, sizeof s->images, "%s/images", s->dir);
  snprintf(s->layer, sizeof s->layer, "%s/layer", s->dir);
  snprintf(s->work, sizeof s->work, "%s/work", s->dir);
  mkdir(s->dir, 0755);
}

static int work_counter;

/* A fresh work directory for one restore. */
static const char *restore_work(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%.200s/restore-%.60s-%d", env.base, name, ++work_counter);
  return buf;
}

static int dump_without_quiesce(fx_sandbox *sb, snap_paths *s, bool capture,
                                bool leave_running, sl_criu_dump_result *res, sl_error *err) {
  sl_criu_dump_request req = {
      .init_pid = sb->init_pid,
      .freezer_cgroup = sb->cgroups[0],
      .images_dir = s->images,
      .work_dir = s->work,
      .upper_dir = capture ? sb->upper : NULL,
      .layer_dir = capture ? s->layer : NULL,
      .leave_running = leave_running,
      .timeout_ms = 120000,
  };
  return sl_criu_dump_tree(&req, res, err);
}

/* Quiesce the agent and dump, as the snapshot engine does. */
static int dump(fx_sandbox *sb, snap_paths *s, bool capture, bool leave_running,
                sl_criu_dump_result *res, sl_error *err) {
  int rc = fx_quiesce(sb, err);
  return rc < 0 ? rc : dump_without_quiesce(sb, s, capture, leave_running, res, err);
}

static int contains_pid(const char *procs, pid_t pid) {
  FILE *f = fopen(procs, "r");
  if (f == NULL) return 0;
  int value, found = 0;
  while (fscanf(f, "%d", &value) == 1) found |= value == pid;
  fclose(f);
  return found;
}

static pid_t parent_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *close_paren = strrchr(buf, ')');
  int ppid = -1;
  if (close_paren == NULL || sscanf(close_paren + 2, "%*c %d", &ppid) != 1) return -1;
  return ppid;
}

static unsigned long net_ns_of(pid_t pid) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
  return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static void test_snapshot_keeps_source_running(void) {
  sl_error err = {0};
  const char *args[] = {"10", NULL};
  CHECK_OK(fx_boot(&env, &source, "source", NULL, args, &err), &err);
  CHECK(fx_wait_counter(&source, 20, 10000) > 0);

  snap_init(&snap_s1, "s1");
  long ignored_ok;
  int memory_ok = 0;
  CHECK_INT(fx_counter(&source, &counter_before_s1, &memory_ok), ==, 0);
  (void)ignored_ok;
  sl_criu_dump_result res;
  CHECK_OK(dump(&source, &snap_s1, true, true, &res, &err), &err);
  CHECK_INT(fx_counter(&source, &counter_after_s1, &memory_ok), ==, 0);
  CHECK(res.stats.has_dump);
  CHECK(res.stats.frozen_time_us > 0);
  CHECK(res.stats.pages_written > 2000);

  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  CHECK(fx_wait_counter(&source, counter_after_s1 + 20, 10000) > 0);
  CHECK_INT(fx_task_count(&source), ==, 2);
  struct stat st;
  char path[400];
  snprintf(path, sizeof path, "%s/data/log", snap_s1.layer);
  CHECK_INT(stat(path, &st), ==, 0);
  snprintf(path, sizeof path, "%s/pages-1.img", snap_s1.images);
  CHECK_INT(stat(path, &st), ==, 0);
}

static void test_fork_continues_counter(void) {
  sl_error err = {0};
  CHECK_OK(fx_prepare(&env, &fork1, "fork1", snap_s1.layer, &err), &err);
  char work[400];
  sl_criu_restore_result res;
  CHECK_OK(fx_restore(&fork1, snap_s1.images, restore_work(work, sizeof work, "fork1"), false,
                      &res, &err),
           &err);
  CHECK(res.init_pid > 0);
  CHECK(res.stats.has_restore);

  long first = fx_wait_counter(&fork1, counter_before_s1, 10000);
  CHECK(first > counter_before_s1);
  CHECK(fx_wait_counter(&fork1, first + 120, 10000) > 0);
  long counter;
  int memory_ok = 0;
  CHECK_INT(fx_counter(&fork1, &counter, &memory_ok), ==, 0);
  CHECK_INT(memory_ok, ==, 1);
  /* The log on the overlay continues without a gap or a repeat: files and
   * memory come from the same instant. */
  CHECK(fx_check_log(&fork1, first) > 0);

  /* /dev is rebuilt from the dump's copy, the mounts below it by CRIU. */
  char path[128];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/root/dev/null", (int)fork1.init_pid);
  CHECK_INT(stat(path, &st), ==, 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK_INT(st.st_rdev, ==, makedev(1, 3));
  snprintf(path, sizeof path, "/proc/%d/root/dev/ptmx", (int)fork1.init_pid);
  CHECK_INT(lstat(path, &st), ==, 0);
  CHECK(S_ISLNK(st.st_mode));
  snprintf(path, sizeof path, "/proc/%d/root/dev/pts/ptmx", (int)fork1.init_pid);
  CHECK_INT(stat(path, &st), ==, 0);
  CHECK(S_ISCHR(st.st_mode));

  CHECK(contains_pid(fork1.procs[0], fork1.init_pid));
  CHECK(contains_pid(fork1.procs[2], fork1.init_pid));
  CHECK(!contains_pid(source.procs[2], fork1.init_pid));
  CHECK_INT(fx_task_count(&fork1), ==, 2);
  CHECK_INT(parent_of(fork1.init_pid), ==, fork1.keeper_pid);
}

static void test_fork_hooks_run(void) {
  sl_error err = {0};
  int exit_code = -1;
  CHECK_OK(fx_post_restore(&fork1, "fork-one",
                           "hostname > /tmp/hostname && cat /tmp/counter > /tmp/seen", &exit_code,
                           &err),
           &err);
  CHECK_INT(exit_code, ==, 0);
  char buf[64];
  CHECK_INT(fx_read(&fork1, "/tmp/hostname", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "fork-one\n");
  CHECK_INT(fx_read(&fork1, "/tmp/seen", buf, sizeof buf), ==, 0);
  CHECK(atol(buf) > counter_before_s1);
  CHECK_INT(fx_read(&source, "/tmp/hostname", buf, sizeof buf), ==, -1);

  CHECK_OK(fx_post_restore(&fork1, NULL, "exit 3", &exit_code, &err), &err);
  CHECK_INT(exit_code, ==, 3);
}

/* CRIU cannot dump a unix socket whose peer is outside the tree, which is
 * why the agent closes its host connections on quiesce. */
static void test_host_connection_blocks_dump(void) {
  sl_error err = {0};
  char path[128];
  fx_agent_path(&fork1, path, sizeof path);
  sl_agent_conn conn;
  CHECK_OK(sl_agent_conn_open(&conn, path, 5000, 0, &err), &err);
  snap_paths s;
  snap_init(&s, "connected");
  sl_criu_dump_request req = {
      .init_pid = fork1.init_pid,
      .freezer_cgroup = fork1.cgroups[0],
      .images_dir = s.images,
      .work_dir = s.work,
      .upper_dir = fork1.upper,
      .layer_dir = s.layer,
      .leave_running = true,
      .timeout_ms = 120000,
  };
  int rc = sl_criu_dump_tree(&req, NULL, &err);
  /* A pause (CRIU ends the tree after the dump) that fails keeps the tree
   * running and thawed as well. */
  snap_paths paused_attempt;
  snap_init(&paused_attempt, "connected-pause");
  sl_error pause_err = {0};
  int pause_rc = dump_without_quiesce(&fork1, &paused_attempt, false, false, NULL, &pause_err);
  sl_agent_conn_close(&conn);
  CHECK_INT(pause_rc, ==, -EIO);
  CHECK_INT(fx_task_count(&fork1), ==, 2);
  sl_freezer_state paused_state;
  CHECK_OK(sl_freezer_get(fork1.cgroups[0], &paused_state, &err), &err);
  CHECK_INT(paused_state, ==, SL_FREEZER_THAWED);
  CHECK_INT(rc, ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed") != NULL);
  CHECK_INT(access(s.images, F_OK), ==, -1);
  CHECK_INT(access(s.layer, F_OK), ==, -1);
  long before;
  int memory_ok;
  CHECK_INT(fx_counter(&fork1, &before, &memory_ok), ==, 0);
  CHECK(fx_wait_counter(&fork1, before + 10, 10000) > 0);

  CHECK_OK(dump(&fork1, &s, true, true, NULL, &err), &err);
  CHECK_OK(sl_layer_remove(s.dir, &err), &err);
}

static void test_source_log_continuous(void) {
  CHECK(fx_check_log(&source, counter_after_s1) > 0);
  long counter;
  int memory_ok = 0;
  CHECK_INT(fx_counter(&source, &counter, &memory_ok), ==, 0);
  CHECK_INT(memory_ok, ==, 1);
}

static void test_four_forks_diverge(void) {
  sl_error err = {0};
  int fds[4];
  char name[32], work[400];
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "fork-%d", i);
    CHECK_OK(fx_prepare(&env, &forks[i], name, snap_s1.layer, &err), &err);
  }
  for (int i = 0; i < 4; i++) {
    restore_work(work, sizeof work, forks[i].name);
    CHECK_OK(fx_restore_start(&forks[i], snap_s1.images, work, false, &fds[i], &err), &err);
  }
  for (int i = 0; i < 4; i++) CHECK_OK(fx_restore_wait(&forks[i], fds[i], NULL, &err), &err);

  for (int i = 0; i < 4; i++) CHECK_INT(fx_write(&forks[i], "/diverge", forks[i].name), ==, 0);
  for (int i = 0; i < 4; i++) {
    char buf[64];
    CHECK_INT(fx_read(&forks[i], "/diverge", buf, sizeof buf), ==, 0);
    CHECK_STR(buf, forks[i].name);
    CHECK(fx_wait_counter(&forks[i], counter_before_s1 + 50, 10000) > 0);
    CHECK(fx_check_log(&forks[i], counter_before_s1) > 0);
    for (int j = 0; j < 4; j++)
      if (j != i) CHECK(!contains_pid(forks[j].procs[2], forks[i].init_pid));
    unsigned long ns = net_ns_of(forks[i].init_pid);
    CHECK(ns != 0);
    CHECK(ns != net_ns_of(source.init_pid));
    CHECK(ns != net_ns_of(getpid()));
    for (int j = 0; j < i; j++) CHECK(ns != net_ns_of(forks[j].init_pid));
  }
  char buf[64];
  CHECK_INT(fx_read(&source, "/diverge", buf, sizeof buf), ==, -1);
  CHECK_INT(fx_read(&fork1, "/diverge", buf, sizeof buf), ==, -1);
}

static void test_fork_of_fork(void) {
  sl_error err = {0};
  CHECK_INT(fx_write(&fork1, "/from-fork1", "fork1 was here"), ==, 0);
  snap_init(&snap_s2, "s2");
  long counter_fork1;
  int memory_ok;
  CHECK_INT(fx_counter(&fork1, &counter_fork1, &memory_ok), ==, 0);
  CHECK_OK(dump(&fork1, &snap_s2, true, true, NULL, &err), &err);

  char lowers[700], work[400];
  snprintf(lowers, sizeof lowers, "%s:%s", snap_s2.layer, snap_s1.layer);
  CHECK_OK(fx_prepare(&env, &grandchild, "grandchild", lowers, &err), &err);
  CHECK_OK(fx_restore(&grandchild, snap_s2.images, restore_work(work, sizeof work, "gc"), false,
                      NULL, &err),
           &err);
  CHECK(fx_wait_counter(&grandchild, counter_fork1 + 30, 10000) > 0);
  CHECK(fx_check_log(&grandchild, counter_fork1) > 0);
  char buf[64];
  CHECK_INT(fx_read(&grandchild, "/from-fork1", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "fork1 was here");
}

static void test_rollback_in_place(void) {
  sl_error err = {0};
  CHECK_INT(fx_write(&source, "/after-s1", "later"), ==, 0);
  long before;
  int memory_ok;
  CHECK(fx_wait_counter(&source, counter_after_s1 + 100, 10000) > 0);
  CHECK_INT(fx_counter(&source, &before, &memory_ok), ==, 0);

  fx_kill(&source);
  CHECK_INT(fx_task_count(&source), ==, 0);
  CHECK_OK(fx_remount(&env, &source, snap_s1.layer, &err), &err);
  char work[400];
  CHECK_OK(fx_restore(&source, snap_s1.images, restore_work(work, sizeof work, "rollback"),
                      false, NULL, &err),
           &err);
  long after;
  CHECK_INT(fx_counter(&source, &after, &memory_ok), ==, 0);
  CHECK(after < before);
  CHECK(after >= counter_before_s1);
  char buf[64];
  CHECK_INT(fx_read(&source, "/after-s1", buf, sizeof buf), ==, -1);
  CHECK(fx_wait_counter(&source, after + 20, 10000) > 0);
  CHECK(fx_check_log(&source, after) > 0);
}

/* Pause: dump and let CRIU end the tree; resume: restore into the same
 * cgroups and overlay. */
static int pause_resume(fx_sandbox *sb, const char *name, sl_error *err) {
  snap_paths s;
  snap_init(&s, name);
  int rc = dump(sb, &s, false, false, NULL, err);
  if (rc < 0) return rc;
  if (fx_task_count(sb) != 0) return sl_error_set(err, EBUSY, "tasks left after pause");
  if (sb->keeper_pid > 0) waitpid(sb->keeper_pid, NULL, 0);
  sb->keeper_pid = 0;
  char work[400];
  rc = fx_restore(sb, s.images, restore_work(work, sizeof work, name), false, NULL, err);
  if (rc == 0) rc = sl_layer_remove(s.dir, err);
  return rc;
}

static void test_pause_resume_keeps_state(void) {
  sl_error err = {0};
  const char *args[] = {"10", NULL};
  CHECK_OK(fx_boot(&env, &paused, "paused", NULL, args, &err), &err);
  CHECK(fx_wait_counter(&paused, 30, 10000) > 0);
  long before;
  int memory_ok;
  CHECK_INT(fx_counter(&paused, &before, &memory_ok), ==, 0);
  pid_t old_init = paused.init_pid;
  CHECK_OK(pause_resume(&paused, "pause-once", &err), &err);
  long after;
  CHECK_INT(fx_counter(&paused, &after, &memory_ok), ==, 0);
  CHECK(after >= before);
  CHECK(fx_wait_counter(&paused, after + 20, 10000) > 0);
  CHECK(fx_check_log(&paused, after) > 0);
  CHECK_INT(fx_task_count(&paused), ==, 2);
  CHECK(contains_pid(paused.procs[0], paused.init_pid));
  (void)old_init;
}

static void test_twenty_pause_cycles(void) {
  sl_error err = {0};
  char name[64], path[64], buf[64];
  long last = 0;
  for (int cycle = 0; cycle < 20; cycle++) {
    snprintf(path, sizeof path, "/cycle-%d", cycle);
    snprintf(name, sizeof name, "cycle %d", cycle);
    CHECK_INT(fx_write(&paused, path, name), ==, 0);
    snprintf(name, sizeof name, "cycle-%d", cycle);
    CHECK_OK(pause_resume(&paused, name, &err), &err);
    CHECK_INT(fx_task_count(&paused), ==, 2);
    for (int i = 0; i <= cycle; i++) {
      snprintf(path, sizeof path, "/cycle-%d", i);
      snprintf(name, sizeof name, "cycle %d", i);
      CHECK_INT(fx_read(&paused, path, buf, sizeof buf), ==, 0);
      CHECK_STR(buf, name);
    }
    long counter = fx_wait_counter(&paused, last, 10000);
    CHECK(counter > last);
    last = counter;
  }
  CHECK(fx_check_log(&paused, last) > 0);
  long counter;
  int memory_ok = 0;
  CHECK(fx_wait_counter(&paused, last + 110, 10000) > 0);
  CHECK_INT(fx_counter(&paused, &counter, &memory_ok), ==, 0);
  CHECK_INT(memory_ok, ==, 1);
}

static void test_filesystem_only_snapshot(void) {
  sl_error err = {0};
  CHECK_INT(fx_write(&paused, "/marker", "files only"), ==, 0);
  snap_paths s;
  snap_init(&s, "fs-only");
  CHECK_OK(sl_freezer_freeze(paused.cgroups[0], 10000, &err), &err);
  int rc = sl_layer_copy(paused.upper, s.layer, NULL, &err);
  CHECK_OK(sl_freezer_thaw(paused.cgroups[0], &err), &err);
  CHECK_OK(rc, &err);
  long paused_counter;
  int memory_ok;
  CHECK_INT(fx_counter(&paused, &paused_counter, &memory_ok), ==, 0);

  const char *args[] = {"10", NULL};
  CHECK_OK(fx_boot(&env, &fresh, "fresh", s.layer, args, &err), &err);
  CHECK(fx_wait_counter(&fresh, 5, 10000) > 0);
  char buf[64];
  CHECK_INT(fx_read(&fresh, "/marker", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "files only");
  CHECK_INT(fx_read(&fresh, "/cycle-19", buf, sizeof buf), ==, 0);
  long counter;
  CHECK_INT(fx_counter(&fresh, &counter, &memory_ok), ==, 0);
  CHECK(counter < paused_counter);
}

static void test_kernel_objects_survive(void) {
  sl_error err = {0};
  const char *args[] = {"4", "net", "lock", "deleted", NULL};
  CHECK_OK(fx_boot(&env, &featured, "featured", NULL, args, &err), &err);
  CHECK(fx_wait_counter(&featured, 20, 10000) > 0);
  char buf[64];
  CHECK_INT(fx_connect_in(&featured, 8080, buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "hello\n");

  snap_paths s;
  snap_init(&s, "featured");
  CHECK_OK(dump(&featured, &s, true, true, NULL, &err), &err);
  CHECK_OK(fx_prepare(&env, &featured_fork, "featured-fork", s.layer, &err), &err);
  char work[400];
  CHECK_OK(fx_restore(&featured_fork, s.images, restore_work(work, sizeof work, "feat"), false,
                      NULL, &err),
           &err);
  long counter = fx_wait_counter(&featured_fork, 0, 10000);
  CHECK(counter > 0);
  CHECK(fx_wait_counter(&featured_fork, counter + 20, 10000) > 0);

  CHECK_INT(fx_connect_in(&featured_fork, 8080, buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "hello\n");
  CHECK_INT(fx_read(&featured_fork, "/tmp/net", buf, sizeof buf), ==, 0);
  CHECK(atol(buf) > counter);
  CHECK_INT(fx_read(&featured_fork, "/tmp/ghost", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "ghost-data");

  char lockfile[128];
  snprintf(lockfile, sizeof lockfile, "/proc/%d/root/lockfile", (int)featured_fork.init_pid);
  int fd = open(lockfile, O_RDONLY);
  CHECK(fd >= 0);
  int locked = flock(fd, LOCK_EX | LOCK_NB);
  int lock_errno = errno;
  close(fd);
  CHECK_INT(locked, ==, -1);
  CHECK_INT(lock_errno, ==, EWOULDBLOCK);

  CHECK_INT(fx_connect_in(&featured, 8080, buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "hello\n");
}

static void test_lazy_restore(void) {
  sl_error err = {0};
  const char *args[] = {"64", NULL};
  CHECK_OK(fx_boot(&env, &lazy_source, "lazy-source", NULL, args, &err), &err);
  CHECK(fx_wait_counter(&lazy_source, 10, 20000) > 0);
  snap_paths s;
  snap_init(&s, "lazy");
  long before;
  int memory_ok;
  CHECK_INT(fx_counter(&lazy_source, &before, &memory_ok), ==, 0);
  CHECK_OK(dump(&lazy_source, &s, true, true, NULL, &err), &err);
  CHECK_OK(fx_prepare(&env, &lazy_fork, "lazy-fork", s.layer, &err), &err);
  char work[400];
  restore_work(work, sizeof work, "lazy");
  CHECK_OK(fx_restore(&lazy_fork, s.images, work, true, NULL, &err), &err);
  long first = fx_wait_counter(&lazy_fork, before, 20000);
  CHECK(first > before);
  CHECK(fx_wait_counter(&lazy_fork, first + 120, 20000) > 0);
  long counter;
  CHECK_INT(fx_counter(&lazy_fork, &counter, &memory_ok), ==, 0);
  CHECK_INT(memory_ok, ==, 1);
  CHECK(fx_check_log(&lazy_fork, first) > 0);
}

static void test_dump_of_dead_tree(void) {
  sl_error err = {0};
  const char *args[] = {"1", NULL};
  CHECK_OK(fx_boot(&env, &victim, "victim", NULL, args, &err), &err);
  CHECK(fx_wait_counter(&victim, 2, 10000) > 0);
  pid_t dead = victim.init_pid;
  fx_kill(&victim);
  victim.init_pid = dead;
  snap_paths s;
  snap_init(&s, "dead");
  CHECK_INT(dump_without_quiesce(&victim, &s, true, true, NULL, &err), ==, -ESRCH);
  CHECK(strstr(err.msg, "no process") != NULL);
  CHECK_INT(access(s.images, F_OK), ==, -1);
  CHECK_INT(access(s.layer, F_OK), ==, -1);

  victim.init_pid = 999999999;
  CHECK_INT(dump_without_quiesce(&victim, &s, true, true, NULL, &err), ==, -ESRCH);
  victim.init_pid = 0;
}

static void test_failed_capture_resumes_source(void) {
  sl_error err = {0};
  snap_paths s;
  snap_init(&s, "bad-capture");
  snprintf(s.layer, sizeof s.layer, "%s/no-such-dir/layer", s.dir);
  long before;
  int memory_ok;
  CHECK_INT(fx_counter(&fork1, &before, &memory_ok), ==, 0);
  CHECK_INT(dump(&fork1, &s, true, true, NULL, &err), ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed") != NULL);
  CHECK_INT(access(s.images, F_OK), ==, -1);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(fork1.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  CHECK(fx_wait_counter(&fork1, before + 20, 10000) > 0);
  CHECK_INT(fx_task_count(&fork1), ==, 2);
}

/* A copy of the first snapshot's images with `damage` applied. */
static int damaged_copy(snap_paths *s, const char *name, const char *damage) {
  snap_init(s, name);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp -a '%s' '%s' && cd '%s' && %s", snap_s1.images, s->images,
           s->images, damage);
  return system(cmd);
}

static void test_corrupted_image_fails_cleanly(void) {
  sl_error err = {0};
  snap_paths s;
  CHECK_INT(damaged_copy(&s, "corrupt", "head -c 512 /dev/urandom | dd of=core-2.img "
                                         "bs=1 seek=8 conv=notrunc status=none"),
            ==, 0);
  CHECK_OK(fx_prepare(&env, &corrupt_target, "corrupt", snap_s1.layer, &err), &err);
  char work[400];
  int rc = fx_restore(&corrupt_target, s.images, restore_work(work, sizeof work, "corrupt"),
                      false, NULL, &err);
  CHECK_INT(rc, ==, -EIO);
  CHECK(strstr(err.msg, "criu restore failed") != NULL);
  CHECK(strstr(err.msg, "Error") != NULL);
  CHECK_INT(fx_task_count(&corrupt_target), ==, 0);
  CHECK(fx_wait_counter(&fork1, 0, 1000) > 0);

  rc = fx_restore(&corrupt_target, "/nonexistent/images",
                  restore_work(work, sizeof work, "missing"), false, NULL, &err);
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err.msg, "/nonexistent/images") != NULL);
  CHECK_INT(fx_task_count(&corrupt_target), ==, 0);
}

/* CRIU 4.2.1 never finishes restoring from a truncated pages image (the
 * restored task spins); the timeout must end CRIU and the partial tree. */
static void test_restore_timeout_kills_tree(void) {
  sl_error err = {0};
  snap_paths s;
  CHECK_INT(damaged_copy(&s, "truncated", "truncate -s 4096 pages-2.img"), ==, 0);
  fx_restore_timeout_ms = 5000;
  char work[400];
  int rc = fx_restore(&corrupt_target, s.images, restore_work(work, sizeof work, "truncated"),
                      false, NULL, &err);
  fx_restore_timeout_ms = 120000;
  CHECK(rc == -ETIMEDOUT || rc == -EIO);
  CHECK_INT(fx_task_count(&corrupt_target), ==, 0);
  CHECK(fx_wait_counter(&fork1, 0, 1000) > 0);
}

int main(void) {
  if (geteuid() != 0) SKIP("checkpoint and restore need root");
  if (access(SANDLOT_CRIU_PATH, X_OK) != 0)
    SKIP("no CRIU at SANDLOT_CRIU_PATH: run tools/deps.sh criu");
  if (fx_setup(&env) < 0) {
    fprintf(stderr, "cannot set up the test sandboxes\n");
    return 1;
  }
  RUN(test_snapshot_keeps_source_running);
  RUN(test_fork_continues_counter);
  RUN(test_fork_hooks_run);
  RUN(test_host_connection_blocks_dump);
  RUN(test_source_log_continuous);
  RUN(test_four_forks_diverge);
  RUN(test_fork_of_fork);
  RUN(test_rollback_in_place);
  RUN(test_pause_resume_keeps_state);
  RUN(test_twenty_pause_cycles);
  RUN(test_filesystem_only_snapshot);
  RUN(test_kernel_objects_survive);
  RUN(test_lazy_restore);
  RUN(test_dump_of_dead_tree);
  RUN(test_failed_capture_resumes_source);
  RUN(test_corrupted_image_fails_cleanly);
  RUN(test_restore_timeout_kills_tree);

  fx_sandbox *all[] = {&source,   &fork1,         &forks[0],    &forks[1],  &forks[2],
                       &forks[3], &grandchild,    &paused,      &fresh,     &featured,
                       &featured_fork, &lazy_source, &lazy_fork, &victim,  &corrupt_target};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) fx_destroy(all[i]);
  fx_teardown(&env);
  TEST_EXIT();
}
