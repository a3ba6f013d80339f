/* Pause and resume of real process sandboxes through the sandbox API.
 * Covered: memory and files to disk with the same id, the processes the
 * agent tracks and their buffered output across cycles, files-only
 * pauses, the pausing timeout, op.lock, and gc of a crashed pause. Needs
 * root. */
#include <errno.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "test.h"
#include "proc_helpers.h"
#include "snapshot_helpers.h"
#include "backend.h"
#include "proc_release.h"
#include "sandbox_store.h"
#include "sandlot_config.h"

static char home[64];
static sl_sandboxes *h;

/* A paused sandbox keeps nothing on the host: no mount, cgroup or
 * monitor. */
static int holds_nothing(const sl_sandbox_info *paused) {
  const char *store = sl_sandboxes_home(h);
  for (int waited = 0; waited < 5000 && sl_monitor_find(store, paused->id) > 0; waited += 10)
    sleep_ms(10); /* a timeout's pause records the state, then releases */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/", sl_sandboxes_home(h), paused->id);
  if (mounted_below(dir)) return fprintf(stderr, "mount left below %s\n", dir), 0;
  if (cgroups_exist(paused)) return fprintf(stderr, "cgroups left: %s\n", paused->cgroups), 0;
  if (sl_monitor_find(sl_sandboxes_home(h), paused->id) > 0)
    return fprintf(stderr, "monitor of %s still runs\n", paused->id), 0;
  return 1;
}

static void test_pause_resume_keeps_id_and_state(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb, paused, resumed;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  const char *args[] = {"10", NULL};
  int64_t workload = start_workload(&sb, args, &err);
  CHECK(workload > 0);
  int64_t proc = agent_spawn(&sb, ticker, &err);
  CHECK(proc > 0);
  CHECK(wait_counter(&sb, 20, 10000) > 0);
  CHECK_OK(agent_write_text(&sb, "/before-pause", "kept", &err), &err);

  /* Read some output now, and the rest after the resume from the offset
   * reached: the agent's buffers come back with its memory. */
  char out[1 << 16];
  sleep_ms(100);
  CHECK(agent_read_output(&sb, proc, 0, out, sizeof out, &err) > 0);
  size_t offset = complete_lines(out);
  out[offset] = '\0';
  long next = check_sequence(out, 1);
  CHECK(next > 1);

  long before = read_counter(&sb, NULL);
  CHECK_OK(sl_sandbox_pause(h, sb.id, NULL, &err), &err);
  CHECK_OK(sl_sandbox_get(h, sb.id, &paused, &err), &err);
  CHECK_INT(paused.state, ==, SL_SANDBOX_PAUSED);
  CHECK_STR(paused.agent_socket, "");
  CHECK(!sl_pid_alive(sb.init_pid, sb.init_start));
  CHECK(holds_nothing(&paused));
  CHECK_OK(sl_sandbox_pause(h, sb.id, NULL, &err), &err); /* paused already: no change */

  CHECK_OK(sl_sandbox_resume(h, sb.id, &resumed, &err), &err);
  CHECK_STR(resumed.id, sb.id);
  CHECK_INT(resumed.state, ==, SL_SANDBOX_RUNNING);
  CHECK(resumed.init_pid != sb.init_pid || resumed.init_start != sb.init_start);
  long after = read_counter(&resumed, NULL);
  CHECK(after >= before);
  CHECK(wait_counter(&resumed, after + 20, 10000) > 0);
  CHECK(check_log(&resumed, after) > 0);
  char buf[64];
  CHECK_OK(agent_read(&resumed, "/before-pause", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "kept");

  process_list list;
  CHECK_OK(agent_list(&resumed, &list, &err), &err);
  CHECK(process_state(&list, workload) != NULL);
  CHECK_STR(process_state(&list, workload), "running");
  CHECK_STR(process_state(&list, proc), "running");
  sleep_ms(100);
  CHECK(agent_read_output(&resumed, proc, (int64_t)offset, out, sizeof out, &err) > 0);
  out[complete_lines(out)] = '\0';
  CHECK(check_sequence(out, next) > next);

  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/%s", sl_sandboxes_home(h), sb.id, SL_PAUSE_DIR);
  CHECK_INT(access(dir, F_OK), ==, -1); /* the images go once the tree runs */
  CHECK_OK(sl_sandbox_resume(h, sb.id, NULL, &err), &err); /* running: no change */
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

static void test_twenty_cycles_lose_nothing(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  const char *args[] = {"10", NULL};
  int64_t workload = start_workload(&sb, args, &err);
  int64_t proc = agent_spawn(&sb, ticker, &err);
  CHECK(workload > 0);
  CHECK(proc > 0);
  CHECK(wait_counter(&sb, 5, 10000) > 0);

  long last = 0, next = 1;
  size_t offset = 0;
  char path[64], text[64], buf[64];
  static char out[1 << 16];
  for (int cycle = 0; cycle < 20; cycle++) {
    snprintf(path, sizeof path, "/cycles/%d", cycle);
    snprintf(text, sizeof text, "cycle %d", cycle);
    CHECK_OK(agent_write_text(&sb, path, text, &err), &err);
    CHECK_OK(sl_sandbox_pause(h, sb.id, NULL, &err), &err);
    CHECK_OK(sl_sandbox_resume(h, sb.id, &sb, &err), &err);

    for (int i = 0; i <= cycle; i++) {
      snprintf(path, sizeof path, "/cycles/%d", i);
      snprintf(text, sizeof text, "cycle %d", i);
      CHECK_OK(agent_read(&sb, path, buf, sizeof buf, &err), &err);
      CHECK_STR(buf, text);
    }
    long counter = wait_counter(&sb, last, 10000);
    CHECK(counter > last);
    last = counter;

    process_list list;
    CHECK_OK(agent_list(&sb, &list, &err), &err);
    CHECK(process_state(&list, workload) != NULL);
    CHECK_STR(process_state(&list, workload), "running");
    CHECK_STR(process_state(&list, proc), "running");
    long n = agent_read_output(&sb, proc, (int64_t)offset, out, sizeof out, &err);
    CHECK(n >= 0);
    size_t used = complete_lines(out);
    out[used] = '\0';
    next = check_sequence(out, next);
    CHECK(next > 0);
    offset += used;
  }

  CHECK(check_log(&sb, last) > 0);
  int memory_ok = 0;
  CHECK(wait_counter(&sb, last + 110, 10000) > 0);
  CHECK(read_counter(&sb, &memory_ok) > 0);
  CHECK_INT(memory_ok, ==, 1);
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, sb.id, &sb, &err), &err);
  CHECK(nothing_left(h, &sb));
}

/* A files-only pause keeps the upper layer; the resume boots a fresh
 * agent on it, so the workload is gone and its files stay. */
static void test_files_only_pause_boots_fresh(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  const char *args[] = {"4", NULL};
  CHECK(start_workload(&sb, args, &err) > 0);
  CHECK(wait_counter(&sb, 5, 10000) > 0);
  CHECK_OK(agent_write_text(&sb, "/kept", "files only", &err), &err);
  sl_pause_opts opts = {.files_only = true};
  CHECK_OK(sl_sandbox_pause(h, sb.id, &opts, &err), &err);
  sl_sandbox_info paused;
  CHECK_OK(sl_sandbox_get(h, sb.id, &paused, &err), &err);
  CHECK_INT(paused.state, ==, SL_SANDBOX_PAUSED);
  CHECK(holds_nothing(&paused));
  CHECK_OK(sl_sandbox_connect(h, sb.id, &sb, &err), &err); /* resumes */
  CHECK_INT(sb.state, ==, SL_SANDBOX_RUNNING);
  char buf[64];
  CHECK_OK(agent_read(&sb, "/kept", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "files only");
  process_list list;
  CHECK_OK(agent_list(&sb, &list, &err), &err);
  CHECK_INT(list.count, ==, 0);
  CHECK(check_log(&sb, 5) > 0); /* the log on the overlay stays */
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

static void test_timeout_pauses(void) {
  sl_error err = {0};
  sl_on_timeout actions[] = {SL_ON_TIMEOUT_PAUSE, SL_ON_TIMEOUT_PAUSE_FS};
  for (int i = 0; i < 2; i++) {
    sl_create_spec spec = test_spec();
    spec.timeout_sec = 2;
    spec.on_timeout = actions[i];
    sl_sandbox_info sb, after;
    CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
    const char *args[] = {"4", NULL};
    CHECK(start_workload(&sb, args, &err) > 0);
    CHECK(wait_counter(&sb, 5, 10000) > 0);
    CHECK_INT(wait_for_state(h, sb.id, SL_SANDBOX_PAUSED, 20000, &after), ==, 0);
    CHECK_INT(after.deadline_ms, ==, 0);
    CHECK(holds_nothing(&after));
    char images[4096];
    snprintf(images, sizeof images, "%s/sandboxes/%s/%s/inventory.img", sl_sandboxes_home(h),
             sb.id, SL_PAUSE_DIR);
    CHECK_INT(access(images, F_OK), ==, actions[i] == SL_ON_TIMEOUT_PAUSE ? 0 : -1);

    CHECK_OK(sl_sandbox_set_timeout(h, sb.id, 0, &err), &err);
    CHECK_OK(sl_sandbox_connect(h, sb.id, &after, &err), &err);
    CHECK_INT(after.state, ==, SL_SANDBOX_RUNNING);
    process_list list;
    CHECK_OK(agent_list(&after, &list, &err), &err);
    CHECK_INT(list.count, ==, actions[i] == SL_ON_TIMEOUT_PAUSE ? 1 : 0);
    CHECK(check_log(&after, 5) > 0);
    CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
  }
}

/* Hold the op.lock of sandbox `id` in a child until it is killed. */
static pid_t hold_lock(const char *id, int ready_fd) {
  pid_t child = fork();
  if (child != 0) return child;
  char path[4200];
  snprintf(path, sizeof path, "%s/sandboxes/%s/op.lock", sl_sandboxes_home(h), id);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || flock(fd, LOCK_EX) < 0) _exit(1);
  ssize_t ignored = write(ready_fd, "x", 1);
  (void)ignored;
  pause();
  _exit(0);
}

static int cgroup_frozen(const sl_sandbox_info *sb) {
  sl_cgroup cg;
  sl_error err = {0};
  return sl_cgroup_parse(sb->cgroups, &cg, &err) == 0 && sl_cgroup_is_frozen(&cg);
}

/* A pause of a frozen sandbox thaws it for the agent's quiesce, dumps
 * it, and the resume runs it on. A pause whose dump fails leaves it
 * frozen. */
static void test_pause_of_frozen_sandbox(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb, now;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  const char *args[] = {"10", NULL};
  CHECK(start_workload(&sb, args, &err) > 0);
  long before = wait_counter(&sb, 20, 10000);
  CHECK(before > 0);
  CHECK_OK(sl_sandbox_freeze(h, sb.id, &err), &err);

  /* The monitor cannot create the pause's work folder, so the pause
   * fails after the quiesce and before CRIU runs. */
  char dir[4200], cmd[4300];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/log", sl_sandboxes_home(h), sb.id);
  snprintf(cmd, sizeof cmd, "chattr +i '%s'", dir);
  if (system(cmd) == 0) {
    int rc = sl_sandbox_pause(h, sb.id, NULL, &err);
    snprintf(cmd, sizeof cmd, "chattr -i '%s'", dir);
    CHECK_INT(system(cmd), ==, 0);
    CHECK(rc < 0);
    CHECK(strstr(err.msg, "pause") == err.msg);
    CHECK_OK(sl_sandbox_get(h, sb.id, &now, &err), &err);
    CHECK_INT(now.state, ==, SL_SANDBOX_FROZEN);
    CHECK(cgroup_frozen(&sb));
  } else {
    fprintf(stderr, "  chattr +i is not supported here; failed pause not tried\n");
  }

  CHECK_OK(sl_sandbox_pause(h, sb.id, NULL, &err), &err);
  CHECK_OK(sl_sandbox_get(h, sb.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_PAUSED);
  CHECK(holds_nothing(&now));

  sl_sandbox_info resumed;
  CHECK_OK(sl_sandbox_resume(h, sb.id, &resumed, &err), &err);
  CHECK_INT(resumed.state, ==, SL_SANDBOX_RUNNING);
  CHECK(!cgroup_frozen(&resumed));
  long after = read_counter(&resumed, NULL);
  CHECK(after >= before);
  CHECK(wait_counter(&resumed, after + 20, 10000) > 0);
  CHECK(check_log(&resumed, after) > 0);
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

/* An agent that does not reply to the quiesce (stopped here) fails a
 * snapshot and a pause with ETIMEDOUT, and the message names the
 * operation and the sandbox once. The sandbox keeps running. */
static void test_quiesce_timeout_messages(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb, now;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  CHECK_INT(kill(sb.init_pid, SIGSTOP), ==, 0);
  int snapshot_rc = sl_sandbox_snapshot(h, sb.id, NULL, NULL, NULL, &err);
  char snapshot_msg[SL_ERROR_MSG_MAX];
  snprintf(snapshot_msg, sizeof snapshot_msg, "%s", err.msg);
  int pause_rc = sl_sandbox_pause(h, sb.id, NULL, &err);
  CHECK_INT(kill(sb.init_pid, SIGCONT), ==, 0);
  char expected[256];
  CHECK_INT(snapshot_rc, ==, -ETIMEDOUT);
  snprintf(expected, sizeof expected, "snapshot %s: quiesce: agent did not answer in time", sb.id);
  CHECK_STR(snapshot_msg, expected);
  CHECK_INT(pause_rc, ==, -ETIMEDOUT);
  snprintf(expected, sizeof expected, "pause %s: quiesce: agent did not answer in time", sb.id);
  CHECK_STR(err.msg, expected);
  CHECK_OK(sl_sandbox_get(h, sb.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(!cgroup_frozen(&now));
  char buf[64];
  CHECK_OK(agent_write_text(&now, "/alive", "yes", &err), &err);
  CHECK_OK(agent_read(&now, "/alive", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "yes");
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

static void test_busy_and_bad_pauses(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  int ready[2];
  CHECK_INT(pipe(ready), ==, 0);
  pid_t holder = hold_lock(sb.id, ready[1]);
  char c;
  CHECK_INT(read(ready[0], &c, 1), ==, 1);
  close(ready[0]);
  close(ready[1]);
  CHECK_INT(sl_sandbox_pause(h, sb.id, NULL, &err), ==, -EBUSY);
  CHECK(strstr(err.msg, "another operation") != NULL);
  kill(holder, SIGKILL);
  waitpid(holder, NULL, 0);
  sl_pause_opts wait = {.wait_ms = 5000};
  CHECK_OK(sl_sandbox_pause(h, sb.id, &wait, &err), &err);

  /* A paused sandbox is busy for what needs its processes, as for exec. */
  char paused[128];
  snprintf(paused, sizeof paused, "sandbox is paused (resume it first): %s", sb.id);
  CHECK_INT(sl_sandbox_snapshot(h, sb.id, NULL, NULL, NULL, &err), ==, -EBUSY);
  CHECK_STR(err.msg, paused);
  CHECK_INT(sl_sandbox_freeze(h, sb.id, &err), ==, -EBUSY);
  CHECK_STR(err.msg, paused);
  CHECK_INT(sl_sandbox_thaw(h, sb.id, &err), ==, -EBUSY);
  CHECK_STR(err.msg, paused);
  sl_pause_opts bad = {.wait_ms = -1};
  CHECK_INT(sl_sandbox_pause(h, sb.id, &bad, &err), ==, -EINVAL);

  /* A paused sandbox can be killed: its files and images go. */
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, sb.id, &sb, &err), &err);
  CHECK_INT(sb.state, ==, SL_SANDBOX_DEAD);
  CHECK_STR(sb.end_reason, "killed");
  char upper[4096];
  snprintf(upper, sizeof upper, "%s/sandboxes/%s/upper", sl_sandboxes_home(h), sb.id);
  CHECK_INT(access(upper, F_OK), ==, -1);
  /* The messages name the sandbox once, with no operation in front. */
  char ended[128];
  snprintf(ended, sizeof ended, "sandbox has ended (killed): %s", sb.id);
  CHECK_INT(sl_sandbox_pause(h, sb.id, NULL, &err), ==, -ESRCH);
  CHECK_STR(err.msg, ended);
  CHECK_INT(sl_sandbox_resume(h, sb.id, NULL, &err), ==, -ESRCH);
  CHECK_STR(err.msg, ended);
  CHECK_INT(sl_sandbox_connect(h, sb.id, NULL, &err), ==, -ESRCH);
  CHECK_STR(err.msg, ended);
  CHECK_INT(sl_sandbox_pause(h, "sb-000000000000", NULL, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "sandbox not found: sb-000000000000");
  CHECK_INT(sl_sandbox_connect(h, "sb-000000000000", NULL, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "sandbox not found: sb-000000000000");
}

/* A resume whose images are damaged fails and leaves the sandbox paused
 * with its files; nothing of the attempt stays mounted. */
static void test_failed_resume_stays_paused(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb, after;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  CHECK_OK(agent_write_text(&sb, "/precious", "still here", &err), &err);
  CHECK_OK(sl_sandbox_pause(h, sb.id, NULL, &err), &err);
  char cmd[4400];
  snprintf(cmd, sizeof cmd,
           "cd '%s/sandboxes/%s/%s' && head -c 512 /dev/urandom | dd of=$(ls core-*.img | head -1) "
           "bs=1 seek=8 conv=notrunc status=none",
           sl_sandboxes_home(h), sb.id, SL_PAUSE_DIR);
  CHECK_INT(system(cmd), ==, 0);
  CHECK_INT(sl_sandbox_resume(h, sb.id, NULL, &err), ==, -EIO);
  CHECK(strstr(err.msg, "stays paused") != NULL);
  /* The operation comes first. The id is in CRIU's image paths, so the
   * wrapper adds no subject of its own after the operation. */
  CHECK(strncmp(err.msg, "resume: sandbox stays paused: ", 30) == 0);
  CHECK(strstr(err.msg, sb.id) != NULL);
  CHECK_OK(sl_sandbox_get(h, sb.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_PAUSED);
  CHECK(holds_nothing(&after));
  char path[4200];
  snprintf(path, sizeof path, "%s/sandboxes/%s/upper/precious", sl_sandboxes_home(h), sb.id);
  CHECK_INT(access(path, F_OK), ==, 0);
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

/* A monitor that died in the middle of a pause left the overlay mounted
 * and the cgroups of a paused sandbox. gc releases them and keeps the
 * files, so the sandbox can still be resumed. */
static void test_gc_after_crashed_pause(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  sl_sandbox_info sb, after;
  CHECK_OK(sl_sandbox_create(h, &spec, &sb, &err), &err);
  CHECK_OK(agent_write_text(&sb, "/precious", "still here", &err), &err);
  /* Imitate the crash: the monitor is gone, the tree is dead, the row
   * reads paused and the mounts and cgroups are still there. */
  kill(sb.monitor_pid, SIGKILL);
  kill(sb.init_pid, SIGKILL);
  sleep_ms(200);
  CHECK_OK(sl_catalog_sandbox_set_state(sl_sbstore_catalog(h->store), sb.id, SL_SANDBOX_PAUSED,
                                        &err),
           &err);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s/", sl_sandboxes_home(h), sb.id);
  CHECK(mounted_below(dir));
  sl_gc_counts cleaned;
  CHECK_OK(sl_sandbox_gc(h, &cleaned, &err), &err);
  CHECK_INT(cleaned.sandboxes, ==, 1);
  CHECK_OK(sl_sandbox_get(h, sb.id, &after, &err), &err);
  CHECK_INT(after.state, ==, SL_SANDBOX_PAUSED);
  CHECK(holds_nothing(&after));
  CHECK_OK(sl_sandbox_resume(h, sb.id, &after, &err), &err);
  char buf[64];
  CHECK_OK(agent_read(&after, "/precious", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "still here");
  CHECK_OK(sl_sandbox_kill(h, sb.id, &err), &err);
}

int main(void) {
  require_privileges();
  if (access(SANDLOT_CRIU_PATH, X_OK) != 0)
    SKIP("no CRIU at SANDLOT_CRIU_PATH: run tools/deps.sh criu");
  h = open_store(home, sizeof home);
  if (h == NULL) return 1;
  RUN(test_pause_resume_keeps_id_and_state);
  RUN(test_twenty_cycles_lose_nothing);
  RUN(test_files_only_pause_boots_fresh);
  RUN(test_timeout_pauses);
  RUN(test_busy_and_bad_pauses);
  RUN(test_pause_of_frozen_sandbox);
  RUN(test_quiesce_timeout_messages);
  RUN(test_failed_resume_stays_paused);
  RUN(test_gc_after_crashed_pause);
  close_store(h, home);
  TEST_EXIT();
}
