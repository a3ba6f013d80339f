/* Process sandboxes against the real kernel: namespaces, overlayfs,
 * cgroups and the sandlot-monitor, without running commands inside (see
 * test_proc_exec_integration.c for those). Needs root. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "test.h"
#include "monitor_client.h"
#include "oplock.h"
#include "proc_helpers.h"
#include "sandbox_store.h"

static const char *self_path;

static void create_then_kill_leaves_nothing(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);

  CHECK_INT(info.state, ==, SL_SANDBOX_RUNNING);
  CHECK(strncmp(info.id, "sb-", 3) == 0);
  CHECK(sl_pid_alive(info.init_pid, info.init_start));
  CHECK(sl_monitor_is(info.monitor_pid, sl_sandboxes_home(h), info.id));
  CHECK(mounted_below(info.root));
  CHECK(cgroups_exist(&info));
  char socket_path[256];
  snprintf(socket_path, sizeof socket_path, "%s/sandboxes/%s/agent.sock", home, info.id);
  CHECK_STR(info.agent_socket, socket_path);
  struct stat st;
  CHECK_INT(stat(info.agent_socket, &st), ==, 0);
  CHECK(S_ISSOCK(st.st_mode));

  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, info.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(after.end_reason, "killed");
  CHECK_INT(after.exit_signal, ==, SIGKILL);
  CHECK(after.ended_at_ms >= after.created_at_ms);
  CHECK_STR(after.agent_socket, "");
  CHECK_INT(access(socket_path, F_OK), ==, -1);
  CHECK(nothing_left(h, &after));
  CHECK_INT(access(info.root, F_OK), ==, -1);
  close_store(h, home);
}

static void ended_sandbox_is_esrch(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);

  CHECK_INT(sl_sandbox_kill(h, info.id, &err), ==, -ESRCH);
  CHECK(strstr(err.msg, info.id) != NULL);
  CHECK_INT(sl_sandbox_freeze(h, info.id, &err), ==, -ESRCH);
  CHECK_INT(sl_sandbox_thaw(h, info.id, &err), ==, -ESRCH);
  CHECK_INT(sl_sandbox_set_timeout(h, info.id, 5, &err), ==, -ESRCH);

  /* An ended sandbox can be removed; a live one cannot. */
  sl_sandbox_info live;
  CHECK_OK(sl_sandbox_create(h, &spec, &live, &err), &err);
  CHECK_INT(sl_sandbox_remove(h, live.id, &err), ==, -EBUSY);
  CHECK_OK(sl_sandbox_remove(h, info.id, &err), &err);
  CHECK_INT(sl_sandbox_get(h, info.id, &info, &err), ==, -ENOENT);
  char dir[128];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, info.id);
  CHECK_INT(access(dir, F_OK), ==, -1);
  CHECK_INT(sl_sandbox_remove(h, info.id, &err), ==, -ENOENT);
  CHECK_OK(sl_sandbox_kill(h, live.id, &err), &err);
  close_store(h, home);
}

static void unknown_id_is_enoent(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_sandbox_info info;
  sl_error err = {0};
  static const char *const ids[] = {"sb-000000000000", "../../etc", "", "sb-0123"};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    CHECK_INT(sl_sandbox_get(h, ids[i], &info, &err), ==, -ENOENT);
    CHECK_INT(sl_sandbox_kill(h, ids[i], &err), ==, -ENOENT);
    CHECK_INT(sl_sandbox_freeze(h, ids[i], &err), ==, -ENOENT);
    CHECK_INT(sl_sandbox_set_timeout(h, ids[i], 1, &err), ==, -ENOENT);
  }
  close_store(h, home);
}

static void bad_spec_leaves_no_row(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_sandbox_info info;
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  spec.memory = "12X";
  CHECK_INT(sl_sandbox_create(h, &spec, &info, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "12X") != NULL);
  spec.memory = NULL;
  spec.template_name = "missing";
  CHECK_INT(sl_sandbox_create(h, &spec, &info, &err), ==, -ENOENT);
  CHECK(strstr(err.msg, "missing") != NULL);
  spec.template_name = NULL;
  /* A missing cwd is created; one below a file fails in PID 1's setup. */
  spec.cwd = "/etc/hostname/dir";
  CHECK_INT(sl_sandbox_create(h, &spec, &info, &err), ==, -ENOTDIR);
  CHECK(strstr(err.msg, "/etc/hostname/dir") != NULL);

  sl_sandbox_info *items;
  size_t n;
  CHECK_OK(sl_sandbox_list(h, &items, &n, &err), &err);
  free(items);
  CHECK_INT(n, ==, 0);
  char dir[128];
  snprintf(dir, sizeof dir, "%s/sandboxes/", home);
  CHECK(!mounted_below(dir));
  close_store(h, home);
}

typedef struct create_job {
  sl_sandboxes *h;
  sl_sandbox_info info;
  sl_error err;
  int rc;
} create_job;

static void *create_one(void *arg) {
  create_job *job = arg;
  sl_create_spec spec = test_spec();
  job->rc = sl_sandbox_create(job->h, &spec, &job->info, &job->err);
  return NULL;
}

static void five_sandboxes_at_once(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  create_job jobs[5];
  pthread_t threads[5];
  for (int i = 0; i < 5; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].h = h;
    CHECK_INT(pthread_create(&threads[i], NULL, create_one, &jobs[i]), ==, 0);
  }
  for (int i = 0; i < 5; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < 5; i++) {
    CHECK_OK(jobs[i].rc, &jobs[i].err);
    CHECK_INT(jobs[i].info.state, ==, SL_SANDBOX_RUNNING);
    for (int j = 0; j < i; j++) {
      CHECK(strcmp(jobs[i].info.id, jobs[j].info.id) != 0);
      CHECK(jobs[i].info.init_pid != jobs[j].info.init_pid);
    }
  }
  sl_error err = {0};
  for (int i = 0; i < 5; i++) {
    CHECK_OK(sl_sandbox_kill(h, jobs[i].info.id, &err), &err);
    sl_sandbox_info after;
    CHECK_OK(sl_sandbox_get(h, jobs[i].info.id, &after, &err), &err);
    CHECK(nothing_left(h, &after));
  }
  close_store(h, home);
}

static void timeout_kills(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  spec.timeout_sec = 1;
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK(info.deadline_ms > 0);
  CHECK_INT(wait_for_state(h, info.id, SL_SANDBOX_DEAD, 10000, &after), ==, 0);
  CHECK_STR(after.end_reason, "timeout");
  CHECK(nothing_left(h, &after));
  close_store(h, home);
}

static void set_timeout_changes_deadline(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  spec.timeout_sec = 1;
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK_OK(sl_sandbox_set_timeout(h, info.id, 0, &err), &err);
  CHECK_OK(sl_sandbox_get(h, info.id, &after, &err), &err);
  CHECK_INT(after.deadline_ms, ==, 0);
  sleep_ms(1500);
  CHECK_OK(sl_sandbox_get(h, info.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_RUNNING);

  CHECK_INT(sl_sandbox_set_timeout(h, info.id, -1, &err), ==, -EINVAL);
  CHECK_OK(sl_sandbox_set_timeout(h, info.id, 1, &err), &err);
  CHECK_INT(wait_for_state(h, info.id, SL_SANDBOX_DEAD, 10000, &after), ==, 0);
  CHECK_STR(after.end_reason, "timeout");
  CHECK(nothing_left(h, &after));
  close_store(h, home);
}

/* on_timeout pause dumps the sandbox to disk: no process, nothing
 * mounted, same id; resume brings it back. */
static void timeout_pause_dumps(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  spec.timeout_sec = 1;
  spec.on_timeout = SL_ON_TIMEOUT_PAUSE;
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK_INT(wait_for_state(h, info.id, SL_SANDBOX_PAUSED, 20000, &after), ==, 0);
  /* The monitor records the pause, then releases mounts and cgroups and
   * exits. */
  for (int waited = 0; waited < 5000 && sl_monitor_find(sl_sandboxes_home(h), info.id) > 0;
       waited += 10)
    sleep_ms(10);
  CHECK(!sl_pid_alive(info.init_pid, info.init_start));
  CHECK_STR(after.agent_socket, "");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/", sl_sandboxes_home(h), info.id);
  CHECK(!mounted_below(dir));
  CHECK(!cgroups_exist(&info));
  /* The timeout would pause it again a second after the resume. */
  CHECK_OK(sl_sandbox_set_timeout(h, info.id, 0, &err), &err);
  CHECK_OK(sl_sandbox_resume(h, info.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_RUNNING);
  CHECK_STR(after.id, info.id);
  CHECK(sl_pid_alive(after.init_pid, after.init_start));
  CHECK_INT(after.deadline_ms, ==, 0);
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);
  close_store(h, home);
}

/* A client that sends half a line must not hold up another client: the
 * monitor reads its control connections without blocking. */
static void monitor_serves_clients_side_by_side(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  char path[160], reply[256];
  snprintf(path, sizeof path, "%s/sandboxes/%s/monitor.sock", home, info.id);
  int slow = sl_unix_connect(path, &err);
  CHECK(slow >= 0);
  CHECK_INT(send(slow, "sta", 3, MSG_NOSIGNAL), ==, 3);
  /* Answered while the slow client's line is incomplete. */
  CHECK_OK(sl_monitor_request(path, "status", 10000, reply, sizeof reply, &err), &err);
  CHECK(strncmp(reply, "state=running", 13) == 0);
  /* The slow client's line completes and gets its own answer. */
  CHECK_INT(send(slow, "tus\n", 4, MSG_NOSIGNAL), ==, 4);
  struct timeval tv = {10, 0};
  setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char line[256] = "";
  ssize_t n = read(slow, line, sizeof line - 1);
  CHECK(n > 0);
  if (n > 0) line[n] = '\0';
  CHECK(strncmp(line, "ok state=running", 16) == 0);
  close(slow);
  /* A silent client does not keep the sandbox from being killed. */
  int silent = sl_unix_connect(path, &err);
  CHECK(silent >= 0);
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);
  close(silent);
  close_store(h, home);
}

static void init_death_is_recorded(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK_INT(kill(info.init_pid, SIGKILL), ==, 0);
  CHECK_INT(wait_for_state(h, info.id, SL_SANDBOX_DEAD, 10000, &after), ==, 0);
  CHECK_STR(after.end_reason, "exited");
  CHECK_INT(after.exit_signal, ==, SIGKILL);
  CHECK_INT(after.exit_status, ==, -1);
  CHECK(nothing_left(h, &after));
  CHECK_INT(sl_sandbox_kill(h, info.id, &err), ==, -ESRCH);
  close_store(h, home);
}

/* Run this test binary again as a separate process that opens the same
 * store, finds the sandbox in the listing and kills it. */
static int second_process_main(const char *home, const char *id) {
  sl_sandboxes *h;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &h, &err) < 0) return 10;
  sl_sandbox_info *items;
  size_t n;
  int found = 0;
  if (sl_sandbox_list(h, &items, &n, &err) < 0) return 11;
  for (size_t i = 0; i < n; i++)
    if (strcmp(items[i].id, id) == 0 && items[i].state == SL_SANDBOX_RUNNING) found = 1;
  free(items);
  if (!found) return 12;
  if (sl_sandbox_kill(h, id, &err) < 0) {
    fprintf(stderr, "second process: %s\n", err.msg);
    return 13;
  }
  sl_sandboxes_close(h);
  return 0;
}

static void second_process_kills(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);

  pid_t pid = fork();
  if (pid == 0) {
    execl(self_path, self_path, "--second-process", home, info.id, (char *)NULL);
    _exit(127);
  }
  int status;
  CHECK_INT(waitpid(pid, &status, 0), ==, pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), ==, 0);
  CHECK_OK(sl_sandbox_get(h, info.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(after.end_reason, "killed");
  CHECK(nothing_left(h, &after));
  close_store(h, home);
}

static void sandbox_outlives_creator(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  for (int auto_kill = 0; auto_kill <= 1; auto_kill++) {
    int ids[2];
    CHECK_INT(pipe(ids), ==, 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(ids[0]);
      sl_create_spec spec = test_spec();
      spec.auto_kill = auto_kill;
      sl_sandbox_info info;
      sl_error err = {0};
      if (sl_sandbox_create(h, &spec, &info, &err) < 0) _exit(1);
      ssize_t w = write(ids[1], info.id, sizeof info.id);
      _exit(w == (ssize_t)sizeof info.id ? 0 : 2);
    }
    close(ids[1]);
    char id[SL_SANDBOX_ID_MAX];
    ssize_t got = read(ids[0], id, sizeof id);
    close(ids[0]);
    int status;
    CHECK_INT(waitpid(pid, &status, 0), ==, pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), ==, 0);
    CHECK_INT(got, ==, (int)sizeof id);

    sl_sandbox_info after;
    sl_error err = {0};
    if (auto_kill) {
      CHECK_INT(wait_for_state(h, id, SL_SANDBOX_DEAD, 10000, &after), ==, 0);
      CHECK_STR(after.end_reason, "creator_exited");
      CHECK(nothing_left(h, &after));
    } else {
      sleep_ms(300);
      CHECK_OK(sl_sandbox_get(h, id, &after, &err), &err);
      CHECK_INT(after.state, ==, SL_SANDBOX_RUNNING);
      CHECK(sl_pid_alive(after.init_pid, after.init_start));
      CHECK_OK(sl_sandbox_kill(h, id, &err), &err);
    }
  }
  close_store(h, home);
}

static const char *alive_cgroups(sl_sandboxes *h, const char *id) {
  static sl_sandbox_info info;
  sl_error err = {0};
  return sl_sandbox_get(h, id, &info, &err) == 0 ? info.cgroups : "";
}

static void gc_cleans_after_monitor_crash(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info, after;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  CHECK_OK(sl_sandbox_create(h, &spec, &after, &err), &err); /* stays alive */

  CHECK_INT(kill(info.monitor_pid, SIGKILL), ==, 0);
  for (int i = 0; i < 200 && sl_pid_alive(info.monitor_pid, 0); i++) sleep_ms(10);
  CHECK(sl_pid_alive(info.init_pid, info.init_start)); /* orphaned, still running */
  CHECK(mounted_below(info.root));

  sl_gc_counts cleaned;
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes, ==, 1);
  CHECK_INT(cleaned.mounts, ==, 0);
  sl_sandbox_info collected;
  CHECK_OK(sl_sandbox_get(h, info.id, &collected, &err), &err);
  CHECK_INT(collected.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(collected.end_reason, "monitor_lost");
  CHECK(nothing_left(h, &collected));

  /* A running sandbox left frozen by a crashed snapshot is thawed. */
  sl_cgroup cg;
  CHECK_OK(sl_cgroup_parse(alive_cgroups(h, after.id), &cg, &err), &err);
  CHECK_OK(sl_cgroup_freeze(&cg, &err), &err);
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes, ==, 1);
  CHECK(!sl_cgroup_is_frozen(&cg));

  /* A mount below sandboxes/ that no row owns goes too. */
  char orphan[128];
  snprintf(orphan, sizeof orphan, "%s/sandboxes/sb-0123456789ab/root", home);
  CHECK_OK(sl_mkdir_p(orphan, 0700, &err), &err);
  CHECK_INT(mount("tmpfs", orphan, "tmpfs", 0, "size=1m"), ==, 0);
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.mounts, ==, 1);
  CHECK_INT(cleaned.sandboxes, ==, 0);
  CHECK(!mounted_below(orphan));

  sl_sandbox_info alive;
  CHECK_OK(sl_sandbox_get(h, after.id, &alive, &err), &err);
  CHECK_INT(alive.state, ==, SL_SANDBOX_RUNNING);
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes + cleaned.mounts + cleaned.snapshots + cleaned.layers, ==, 0);
  CHECK_OK(sl_sandbox_kill(h, after.id, &err), &err);
  close_store(h, home);
}

/* A row left in "creating" by a creator that crashed before its monitor
 * started is dropped, unless a creator still holds its op.lock. */
static void gc_drops_stuck_creating_row(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err); /* records the template */
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);

  sl_sbstore *store;
  CHECK_OK(sl_sbstore_open(home, &store, &err), &err);
  sl_sandbox_info stuck;
  memset(&stuck, 0, sizeof stuck);
  CHECK_OK(sl_sbstore_new_id(stuck.id, &err), &err);
  snprintf(stuck.template_name, sizeof stuck.template_name, "base");
  stuck.exit_status = -1;
  CHECK_OK(sl_sbstore_insert(store, &stuck, &err), &err);
  CHECK_INT(stuck.state, ==, SL_SANDBOX_CREATING);

  char dir[256];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", sl_sandboxes_home(h), stuck.id);
  int lock = sl_op_lock(dir, 0, &err);
  CHECK(lock >= 0);
  sl_gc_counts cleaned;
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes, ==, 0);
  sl_op_unlock(lock);

  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes, ==, 1);
  CHECK_INT(sl_sandbox_get(h, stuck.id, &stuck, &err), ==, -ENOENT);
  CHECK_INT(access(dir, F_OK), ==, -1);
  sl_sbstore_close(store);
  close_store(h, home);
}

static void freeze_and_thaw_change_state(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info, now;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  sl_cgroup cg;
  CHECK_OK(sl_cgroup_parse(info.cgroups, &cg, &err), &err);

  CHECK_OK(sl_sandbox_freeze(h, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_FROZEN);
  CHECK_OK(sl_sandbox_freeze(h, info.id, &err), &err); /* again: no change */
  char path[600], state[32] = "";
  snprintf(path, sizeof path, "%s/freezer.state", cg.dirs[SL_CG_FREEZER]);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  CHECK(fgets(state, sizeof state, f) != NULL);
  fclose(f);
  CHECK(strncmp(state, "FROZEN", 6) == 0);

  CHECK_OK(sl_sandbox_thaw(h, info.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK_OK(sl_sandbox_thaw(h, info.id, &err), &err);

  CHECK_OK(sl_sandbox_freeze(h, info.id, &err), &err);
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err); /* a frozen sandbox dies too */
  CHECK_OK(sl_sandbox_get(h, info.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_DEAD);
  CHECK(nothing_left(h, &now));
  close_store(h, home);
}

/* The device cgroup denies host devices even to a process that could
 * open them: a host process moved into a sandbox's devices cgroup may
 * open a node of /dev/null's numbers but not one of /dev/kmsg's. */
static void device_cgroup_denies_host_devices(void) {
  char home[64];
  sl_sandboxes *h = open_store(home, sizeof home);
  CHECK(h != NULL);
  sl_create_spec spec = test_spec();
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(h, &spec, &info, &err), &err);
  sl_cgroup cg;
  CHECK_OK(sl_cgroup_parse(info.cgroups, &cg, &err), &err);
  if (!cg.dirs[SL_CG_DEVICES][0]) {
    fprintf(stderr, "note: no devices cgroup on this host; nothing to check\n");
    close_store(h, home);
    return;
  }
  char allowed[128], denied[128];
  snprintf(allowed, sizeof allowed, "%s/null-node", home);
  snprintf(denied, sizeof denied, "%s/kmsg-node", home);
  CHECK_INT(mknod(allowed, S_IFCHR | 0600, makedev(1, 3)), ==, 0);
  CHECK_INT(mknod(denied, S_IFCHR | 0600, makedev(1, 11)), ==, 0);

  pid_t pid = fork();
  if (pid == 0) {
    char value[32];
    snprintf(value, sizeof value, "%d", (int)getpid());
    char procs[600];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", cg.dirs[SL_CG_DEVICES]);
    FILE *f = fopen(procs, "w");
    if (f == NULL || fputs(value, f) < 0 || fclose(f) != 0) _exit(3);
    int ok = open(allowed, O_RDONLY);
    int bad = open(denied, O_RDONLY);
    _exit(ok >= 0 && bad < 0 && errno == EPERM ? 0 : 4);
  }
  int status;
  CHECK_INT(waitpid(pid, &status, 0), ==, pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), ==, 0);
  CHECK_OK(sl_sandbox_kill(h, info.id, &err), &err);
  close_store(h, home);
}

/* The cgroup v2 freeze and kill paths, on the unified hierarchy of this
 * host, which may have no controllers but always has cgroup.freeze and
 * cgroup.kill. */
static void cgroup_v2_freeze_and_kill(void) {
  const char *mount = "/sys/fs/cgroup/unified";
  char probe[128];
  snprintf(probe, sizeof probe, "%s/cgroup.procs", mount);
  if (access(probe, F_OK) != 0) mount = "/sys/fs/cgroup";
  snprintf(probe, sizeof probe, "%s/cgroup.subtree_control", mount);
  if (access(probe, F_OK) != 0) {
    fprintf(stderr, "note: no cgroup v2 hierarchy; v2 path not exercised\n");
    return;
  }
  sl_cgroup cg = {0};
  cg.mode = SL_CGROUP_V2;
  char id[SL_SANDBOX_ID_MAX];
  sl_error err = {0};
  CHECK_OK(sl_sbstore_new_id(id, &err), &err);
  snprintf(cg.dirs[SL_CG_UNIFIED], SL_CGROUP_PATH_MAX, "%s/sandlot-test-%s", mount, id);
  CHECK_INT(mkdir(cg.dirs[SL_CG_UNIFIED], 0755), ==, 0);

  int counter[2];
  CHECK_INT(pipe(counter), ==, 0);
  pid_t pid = fork();
  if (pid == 0) {
    for (unsigned long n = 0;; n++) {
      if (write(counter[1], &n, sizeof n) < 0) _exit(1);
      usleep(1000);
    }
  }
  close(counter[1]);
  CHECK_OK(sl_cgroup_add(&cg, pid, &err), &err);
  CHECK_INT(sl_cgroup_count_procs(&cg, &err), ==, 1);
  CHECK_OK(sl_cgroup_freeze(&cg, &err), &err);
  unsigned long n;
  int flags = fcntl(counter[0], F_GETFL);
  fcntl(counter[0], F_SETFL, flags | O_NONBLOCK);
  while (read(counter[0], &n, sizeof n) > 0) {
  }
  sleep_ms(100);
  CHECK_INT(read(counter[0], &n, sizeof n), ==, -1); /* nothing new while frozen */
  CHECK_OK(sl_cgroup_thaw(&cg, &err), &err);
  sleep_ms(100);
  CHECK(read(counter[0], &n, sizeof n) > 0);
  CHECK_OK(sl_cgroup_kill_all(&cg, 5000, &err), &err);
  int status;
  CHECK_INT(waitpid(pid, &status, 0), ==, pid);
  CHECK(WIFSIGNALED(status));
  CHECK_INT(WTERMSIG(status), ==, SIGKILL);
  CHECK_OK(sl_cgroup_destroy(&cg, &err), &err);
  CHECK(!sl_cgroup_exists(&cg));
  close(counter[0]);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--second-process") == 0)
    return second_process_main(argv[2], argv[3]);
  self_path = argv[0];
  require_privileges();
  RUN(create_then_kill_leaves_nothing);
  RUN(ended_sandbox_is_esrch);
  RUN(unknown_id_is_enoent);
  RUN(bad_spec_leaves_no_row);
  RUN(five_sandboxes_at_once);
  RUN(timeout_kills);
  RUN(set_timeout_changes_deadline);
  RUN(timeout_pause_dumps);
  RUN(monitor_serves_clients_side_by_side);
  RUN(init_death_is_recorded);
  RUN(second_process_kills);
  RUN(sandbox_outlives_creator);
  RUN(gc_cleans_after_monitor_crash);
  RUN(gc_drops_stuck_creating_row);
  RUN(freeze_and_thaw_change_state);
  RUN(device_cgroup_denies_host_devices);
  RUN(cgroup_v2_freeze_and_kill);
  TEST_EXIT();
}
