/* The agent as PID 1 of new PID and UTS namespaces (clone), as in a
 * process sandbox. It leads its session, reaps orphans, attributes exits
 * to its own processes and keeps no inherited fd. It stops on SIGTERM,
 * which PID 1 would ignore without a handler. Needs root. */
#include <dirent.h>
#include <sched.h>

#include "agent_harness.h"
#include "error.h"
#include "test.h"

static harness H;
static pid_t agent_pid; /* as seen from the test's namespace */
static int leaked_fd = -1;

static sl_buf reply;
static sl_frame F;
static sl_error E;

static char child_stack[256 * 1024];

static int agent_main(void *arg) {
  (void)arg;
  const char *argv[] = {agent_binary(), "--listen", H.sock, NULL};
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  setenv("SANDLOT_LOG", "error", 1);
  execv(argv[0], (char **)argv);
  _exit(127);
}

static int start_pid1_agent(void) {
  if (harness_init(&H) < 0) return -1;
  /* An fd without close-on-exec that the agent must close at start. */
  int p[2];
  if (pipe(p) < 0) return -1;
  leaked_fd = p[0];
  close(p[1]);
  agent_pid = clone(agent_main, child_stack + sizeof child_stack, CLONE_NEWPID | CLONE_NEWUTS | SIGCHLD, NULL);
  if (agent_pid < 0) return -1;
  H.pid = agent_pid;
  for (int i = 0; i < 500; i++) {
    if (socket_ready(H.sock)) return 0;
    sleep_ms(10);
  }
  return -1;
}

static int call_simple(sl_agent_conn *c, uint8_t type, uint8_t key, int64_t value) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, type, 0);
  if (key != 0) sl_frame_put_i64(&b, key, value);
  sl_frame_end(&b, start, NULL);
  sl_error_clear(&E);
  int rc = sl_agent_conn_call(c, &b, NULL, NULL, &reply, &F, &E);
  sl_buf_free(&b);
  return rc;
}

static void agent_is_pid_1_and_session_leader(void) {
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  CHECK_OK(call_simple(&c, SL_MSG_HELLO, 0, 0), &E);
  CHECK_INT(field_i64(&F, SL_F_PID, 0), ==, 1);
  CHECK_INT(getsid(agent_pid), ==, agent_pid);
  CHECK_INT(getpgid(agent_pid), ==, agent_pid);
  sl_agent_conn_close(&c);
}

static void agent_holds_no_inherited_fd(void) {
  struct stat leaked;
  CHECK_INT(fstat(leaked_fd, &leaked), ==, 0);
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)agent_pid);
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  struct dirent *de;
  int found = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char path[384];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (stat(path, &st) == 0 && st.st_ino == leaked.st_ino && st.st_dev == leaked.st_dev)
      found = 1;
  }
  closedir(d);
  CHECK(!found);
}

/* Count the agent's children, and those of them that are zombies. */
static int children(int *zombies) {
  char path[96], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)agent_pid, (int)agent_pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  int count = 0;
  *zombies = 0;
  for (char *tok = strtok(buf, " \n"); tok != NULL; tok = strtok(NULL, " \n")) {
    count++;
    char stat_path[64], stat[512] = "";
    snprintf(stat_path, sizeof stat_path, "/proc/%s/stat", tok);
    FILE *s = fopen(stat_path, "r");
    if (s == NULL) continue;
    size_t m = fread(stat, 1, sizeof stat - 1, s);
    fclose(s);
    stat[m] = '\0';
    char *p = strrchr(stat, ')');
    if (p != NULL && p[1] == ' ' && p[2] == 'Z') (*zombies)++;
  }
  return count;
}

static void orphans_are_reaped(void) {
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_EXEC, 0);
  /* The shell exits at once; its background sleeps become orphans that
   * the kernel hands to PID 1. */
  sl_frame_put_str(&b, SL_F_COMMAND, "sleep 0.5 & sleep 0.5 & exit 5");
  sl_frame_put_i64(&b, SL_F_STREAM, 0);
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&c, &b, NULL, NULL, &reply, &F, &E), &E);
  int64_t proc = field_i64(&F, SL_F_PROC, 0);
  sl_buf_free(&b);
  CHECK_OK(call_simple(&c, SL_MSG_WAIT, SL_F_PROC, proc), &E);
  CHECK_INT(field_i64(&F, SL_F_EXIT_CODE, -1), ==, 5);

  int zombies = 0;
  int count = children(&zombies);
  if (count < 0) {
    fprintf(stderr, "no /proc/PID/task/PID/children on this kernel; orphan check skipped\n");
  } else {
    CHECK_INT(count, ==, 2); /* the two sleeps, now the agent's */
    int left = count;
    for (int i = 0; i < 500 && (left > 0 || zombies > 0); i++) {
      sleep_ms(10);
      left = children(&zombies);
    }
    CHECK_INT(left, ==, 0);
    CHECK_INT(zombies, ==, 0);
  }
  /* The exit of the tracked shell was not taken by the orphan reaping. */
  CHECK_OK(call_simple(&c, SL_MSG_WAIT, SL_F_PROC, proc), &E);
  CHECK_INT(field_i64(&F, SL_F_EXIT_CODE, -1), ==, 5);
  CHECK_OK(call_simple(&c, SL_MSG_RELEASE, SL_F_PROC, proc), &E);
  sl_agent_conn_close(&c);
}

static void quiesce_then_serve_again(void) {
  CHECK_OK(sl_agent_quiesce(H.sock, 5000, &E), &E);
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  CHECK_OK(call_simple(&c, SL_MSG_PING, 0, 0), &E);
  sl_agent_conn_close(&c);
}

static void post_restore_hooks_run(void) {
  char host_name[256] = "";
  CHECK_INT(gethostname(host_name, sizeof host_name), ==, 0);
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  uint8_t entropy[64];
  for (size_t i = 0; i < sizeof entropy; i++) entropy[i] = (uint8_t)(i * 37);
  int code = -1;
  /* The agent runs in its own UTS namespace (CLONE_NEWUTS). */
  CHECK_OK(sl_agent_post_restore(&c, "sandlot-fork-1", entropy, sizeof entropy,
                                 "test \"$(cat /proc/sys/kernel/hostname)\" = sandlot-fork-1",
                                 5000, &code, &E),
           &E);
  CHECK_INT(code, ==, 0);
  char after[256] = "";
  CHECK_INT(gethostname(after, sizeof after), ==, 0);
  CHECK_STR(after, host_name);
  CHECK_OK(sl_agent_post_restore(&c, NULL, NULL, 0, "exit 3", 5000, &code, &E), &E);
  CHECK_INT(code, ==, 3);
  CHECK_INT(sl_agent_post_restore(&c, NULL, NULL, 0, "kill -9 $$", 5000, &code, &E), ==,
            -ECHILD);
  CHECK_INT(sl_agent_post_restore(&c, "", NULL, 0, NULL, 5000, &code, &E), ==, -EINVAL);
  sl_agent_conn_close(&c);
}

static void sighup_is_ignored(void) {
  CHECK_INT(kill(agent_pid, SIGHUP), ==, 0);
  sleep_ms(100);
  sl_agent_conn c;
  CHECK_OK(sl_agent_conn_open(&c, H.sock, 5000, 0, &E), &E);
  CHECK_OK(call_simple(&c, SL_MSG_PING, 0, 0), &E);
  sl_agent_conn_close(&c);
}

static void sigterm_stops_pid_1(void) {
  CHECK_INT(kill(agent_pid, SIGTERM), ==, 0);
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 500 && got == 0; i++) {
    got = waitpid(agent_pid, &status, WNOHANG);
    if (got == 0) sleep_ms(10);
  }
  CHECK_INT(got, ==, agent_pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), ==, 0);
  agent_pid = 0;
  H.pid = 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (geteuid() != 0) SKIP("a new PID namespace needs root (CAP_SYS_ADMIN)");
  if (start_pid1_agent() < 0) {
    fprintf(stderr, "could not start the agent in a new PID namespace: %s\n", strerror(errno));
    harness_stop(&H);
    return 1;
  }
  RUN(agent_is_pid_1_and_session_leader);
  RUN(agent_holds_no_inherited_fd);
  RUN(orphans_are_reaped);
  RUN(quiesce_then_serve_again);
  RUN(post_restore_hooks_run);
  RUN(sighup_is_ignored);
  RUN(sigterm_stops_pid_1);
  sl_buf_free(&reply);
  harness_stop(&H);
  TEST_EXIT();
}
