/* The tree-level CRIU calls (core/criu_tree.h) on their own, for what the
 * sandbox API never does with them. That is a dump while a host
 * connection is open (the product always quiesces the agent first), a
 * dump of a dead tree, a capture that fails, a lazy restore, and a
 * restore that must time out within seconds into a prepared target. The sandbox API's snapshots,
 * forks, pauses and rollbacks are tested against the real process backend
 * in test_snapshot_integration.c and test_pause_integration.c.
 *
 * These cases need sandboxes that the tree functions can be pointed at
 * directly, including a target that is prepared but not started, which
 * the product cannot give: they use the test fixture (tests/c/fixture).
 * They share sandboxes and snapshots and run in order. Needs root. */
#include <errno.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
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
static fx_sandbox source, lazy_source, lazy_fork, victim, corrupt_target;

typedef struct {
  char dir[256], images[300], layer[300], work[300];
} snap_paths;

static snap_paths snap_s1;
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

/* CRIU cannot dump a unix socket whose peer is outside the tree, which is
 * why the agent closes its host connections on quiesce. */
static void test_host_connection_blocks_dump(void) {
  sl_error err = {0};
  char path[128];
  fx_agent_path(&source, path, sizeof path);
  sl_agent_conn conn;
  CHECK_OK(sl_agent_conn_open(&conn, path, 5000, 0, &err), &err);
  snap_paths s;
  snap_init(&s, "connected");
  sl_criu_dump_request req = {
      .init_pid = source.init_pid,
      .freezer_cgroup = source.cgroups[0],
      .images_dir = s.images,
      .work_dir = s.work,
      .upper_dir = source.upper,
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
  int pause_rc = dump_without_quiesce(&source, &paused_attempt, false, false, NULL, &pause_err);
  sl_agent_conn_close(&conn);
  CHECK_INT(pause_rc, ==, -EIO);
  CHECK_INT(fx_task_count(&source), ==, 2);
  sl_freezer_state paused_state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &paused_state, &err), &err);
  CHECK_INT(paused_state, ==, SL_FREEZER_THAWED);
  CHECK_INT(rc, ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed") != NULL);
  CHECK_INT(access(s.images, F_OK), ==, -1);
  CHECK_INT(access(s.layer, F_OK), ==, -1);
  long before;
  int memory_ok;
  CHECK_INT(fx_counter(&source, &before, &memory_ok), ==, 0);
  CHECK(fx_wait_counter(&source, before + 10, 10000) > 0);

  CHECK_OK(dump(&source, &s, true, true, NULL, &err), &err);
  CHECK_OK(sl_layer_remove(s.dir, &err), &err);
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
  CHECK_INT(fx_counter(&source, &before, &memory_ok), ==, 0);
  CHECK_INT(dump(&source, &s, true, true, NULL, &err), ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed") != NULL);
  CHECK_INT(access(s.images, F_OK), ==, -1);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  CHECK(fx_wait_counter(&source, before + 20, 10000) > 0);
  CHECK_INT(fx_task_count(&source), ==, 2);
}

static void test_missing_images_fail_cleanly(void) {
  sl_error err = {0};
  CHECK_OK(fx_prepare(&env, &corrupt_target, "corrupt", snap_s1.layer, &err), &err);
  char work[400];
  int rc = fx_restore(&corrupt_target, "/nonexistent/images",
                      restore_work(work, sizeof work, "missing"), false, NULL, &err);
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err.msg, "/nonexistent/images") != NULL);
  CHECK_INT(fx_task_count(&corrupt_target), ==, 0);
}

/* A copy of the first snapshot's images with `damage` applied. */
static int damaged_copy(snap_paths *s, const char *name, const char *damage) {
  snap_init(s, name);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp -a '%s' '%s' && cd '%s' && %s", snap_s1.images, s->images,
           s->images, damage);
  return system(cmd);
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
  CHECK(fx_wait_counter(&source, 0, 1000) > 0);
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
  RUN(test_host_connection_blocks_dump);
  RUN(test_lazy_restore);
  RUN(test_dump_of_dead_tree);
  RUN(test_failed_capture_resumes_source);
  RUN(test_missing_images_fail_cleanly);
  RUN(test_restore_timeout_kills_tree);

  fx_sandbox *all[] = {&source, &lazy_source, &lazy_fork, &victim, &corrupt_target};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) fx_destroy(all[i]);
  fx_teardown(&env);
  TEST_EXIT();
}
