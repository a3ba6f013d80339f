/* bench_core: the sandlot side of the benchmark rows whose Lua API is not
 * on main yet, through the core C API (core/sandbox.h, core/snapshot.h,
 * core/agent_client.h, core/catalog.h). Each command does one thing,
 * times it inside this process and prints one JSON object on stdout:
 *
 *   bench_core create HOME [MEMORY]       create a sandbox, run `true` in it
 *   bench_core exec HOME ID COUNT         COUNT round trips of `true`
 *   bench_core spawn HOME ID ARG...       start a process, do not wait
 *   bench_core snapshot HOME ID           full snapshot (sl_snapshot_take)
 *   bench_core snapshot-remove HOME REF   delete a snapshot and its folders
 *   bench_core kill HOME ID               kill and remove a sandbox
 *   bench_core gc HOME                    kill every sandbox, clean up
 *   bench_core criu-stats FILE            decode stats-dump or stats-restore
 *   bench_core size PATH...               allocated bytes under the paths
 *   bench_core criu-path                  the CRIU binary the core runs
 *   bench_core catalog ROWS RUNS DIR      one page from a large catalog
 *
 * and for microVMs (bench/core_vm.c):
 *
 *   bench_core vm-create HOME [MEMORY]    create a VM sandbox, run `true`
 *   bench_core vm-exec HOME ID COUNT      COUNT round trips of `true`
 *   bench_core vm-spawn HOME ID ARG...    start a process in the guest
 *   bench_core vm-read HOME ID PATH       read a file of the guest
 *   bench_core vm-snapshot HOME ID SNAP   snapshot (sl_vm_snapshot)
 *   bench_core vm-snapshot-remove HOME SNAP
 *   bench_core vm-fork HOME SNAP COUNT    COUNT forks at once, then delete
 *   bench_core vm-pause HOME ID           pause to disk (sl_vm_pause)
 *   bench_core vm-resume HOME ID          resume until the first exec result
 *   bench_core vm-rollback HOME ID SNAP   roll back until the first exec result
 *
 * Times are CLOCK_MONOTONIC milliseconds (microseconds for the catalog).
 * Failures go to stderr and exit 1; usage errors exit 2. The program
 * finds sandlot-monitor and sandlot-agent through SANDLOT_BUILD_DIR or
 * the parent of its own folder. It asserts nothing. */
#include "core_driver.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "agent_client.h"
#include "catalog.h"
#include "criu.h"
#include "layer_copy.h"
#include "log.h"
#include "sandbox.h"
#include "snapshot.h"
#include "store.h"

double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void bench_json_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p < 0x20)
      fprintf(out, "\\u%04x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

void bench_json_key(FILE *out, const char *key, bool first) {
  if (!first) fputs(", ", out);
  bench_json_string(out, key);
  fputs(": ", out);
}

void bench_json_numbers(FILE *out, const char *key, const double *values, size_t count,
                        bool first) {
  bench_json_key(out, key, first);
  fputc('[', out);
  for (size_t i = 0; i < count; i++) fprintf(out, "%s%.3f", i ? ", " : "", values[i]);
  fputc(']', out);
}

static int fail(const char *operation, const sl_error *err) {
  fprintf(stderr, "bench_core: %s failed: %s: %s\n", operation, sl_errname(err->code), err->msg);
  return 1;
}

/* ---- agent ------------------------------------------------------------- */

typedef struct exec_wait {
  bool done;
  bool ok;
} exec_wait;

static void on_exec_exit(sl_agent_exec *x, const sl_exit_status *st, const sl_error *err,
                         void *data) {
  exec_wait *w = data;
  w->done = true;
  w->ok = err == NULL && st != NULL && st->exited && st->exit_code == 0;
  if (err != NULL) fprintf(stderr, "bench_core: exec failed: %s\n", err->msg);
}

/* Run /bin/true through the agent and wait for its exit; 0 when it
 * exited 0. */
static int run_true(uv_loop_t *loop, sl_agent *agent) {
  static const char *const argv[] = {"/bin/true", NULL};
  sl_exec_spec spec = {.argv = argv};
  sl_exec_callbacks cbs = {.on_exit = on_exec_exit};
  exec_wait w = {false, false};
  sl_error err = {0};
  if (sl_agent_exec_start(agent, &spec, &cbs, &w, NULL, &err) < 0) return fail("exec", &err);
  while (!w.done) uv_run(loop, UV_RUN_ONCE);
  return w.ok ? 0 : -1;
}

/* ---- sandboxes --------------------------------------------------------- */

/* Point the core at the build folder's binaries: SANDLOT_BUILD_DIR for
 * sandlot-monitor and sandlot-agent, SANDLOT_CRIU_ACTION for the action
 * CRIU runs (the core looks for it next to the running program, and this
 * one lives in build/bench). */
static void point_at_build_dir(void) {
  if (getenv("SANDLOT_BUILD_DIR") == NULL) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    setenv("SANDLOT_BUILD_DIR", dirname(dirname(self)), 1);
  }
  char action[PATH_MAX];
  snprintf(action, sizeof action, "%.4000s/sandlot-criu-action", getenv("SANDLOT_BUILD_DIR"));
  setenv("SANDLOT_CRIU_ACTION", action, 0);
}

/* The lowerdir option of the overlay mounted at `root`, from
 * /proc/self/mountinfo: the read-only layers a fork of this sandbox
 * stacks its snapshot layer on. */
static int lowerdirs_of(const char *root, char *buf, size_t size, sl_error *err) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return sl_error_errno(err, errno, "cannot open /proc/self/mountinfo");
  char line[16384], mount_point[PATH_MAX];
  int rc = sl_error_set(err, ENOENT, "no overlay mounted at %s", root);
  while (rc < 0 && fgets(line, sizeof line, f) != NULL) {
    const char *lower = strstr(line, "lowerdir=");
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mount_point) != 1 ||
        strcmp(mount_point, root) != 0 || lower == NULL)
      continue;
    lower += strlen("lowerdir=");
    size_t n = strcspn(lower, ",\n");
    if (n >= size) {
      rc = sl_error_set(err, ENAMETOOLONG, "lowerdir of %s is too long", root);
      break;
    }
    memcpy(buf, lower, n);
    buf[n] = '\0';
    rc = 0;
  }
  fclose(f);
  return rc;
}

static void print_sandbox(const char *home, const sl_sandbox_info *info, double create_ms,
                          const char *lowers) {
  char upper[PATH_MAX];
  snprintf(upper, sizeof upper, "%.3000s/sandboxes/%s/upper", home, info->id);
  printf("{\"id\": ");
  bench_json_string(stdout, info->id);
  printf(", \"create_ms\": %.3f, \"init_pid\": %d, \"memory_bytes\": %llu, \"pids_max\": %lld",
         create_ms, (int)info->init_pid, (unsigned long long)info->memory_bytes,
         (long long)info->pids_max);
  bench_json_key(stdout, "root", false);
  bench_json_string(stdout, info->root);
  bench_json_key(stdout, "upper", false);
  bench_json_string(stdout, upper);
  bench_json_key(stdout, "lowerdirs", false);
  bench_json_string(stdout, lowers);
  bench_json_key(stdout, "cgroups", false);
  bench_json_string(stdout, info->cgroups);
  printf("}\n");
}

/* Time sl_sandbox_create() until `true` has run in the new sandbox. */
static int command_create(sl_sandboxes *h, int argc, char **argv) {
  sl_create_spec spec = {.memory = argc > 0 ? argv[0] : NULL};
  sl_sandbox_info info;
  sl_error err = {0};
  uv_loop_t loop;
  uv_loop_init(&loop);
  double start = bench_now_ms();
  if (sl_sandbox_create(h, &spec, &info, &err) < 0) return fail("create", &err);
  sl_agent *agent = sl_agent_new(&loop, info.agent_socket, NULL);
  int rc = agent != NULL ? run_true(&loop, agent) : -1;
  double create_ms = bench_now_ms() - start;
  if (agent != NULL) sl_agent_close(agent);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  char lowers[8192];
  if (rc == 0 && lowerdirs_of(info.root, lowers, sizeof lowers, &err) < 0)
    rc = fail("lower layers", &err);
  if (rc == 0) print_sandbox(sl_sandboxes_home(h), &info, create_ms, lowers);
  return rc == 0 ? 0 : 1;
}

/* COUNT round trips of `true` over one connection of the loop client. */
static int command_exec(sl_sandboxes *h, int argc, char **argv) {
  int count = argc > 1 ? atoi(argv[1]) : 0;
  if (count < 1) return 2;
  sl_sandbox_info info;
  sl_error err = {0};
  if (sl_sandbox_get(h, argv[0], &info, &err) < 0) return fail("get", &err);
  double *samples = calloc((size_t)count, sizeof *samples);
  uv_loop_t loop;
  uv_loop_init(&loop);
  sl_agent *agent = sl_agent_new(&loop, info.agent_socket, NULL);
  int rc = agent != NULL && samples != NULL ? 0 : -1;
  for (int i = 0; i < count && rc == 0; i++) {
    double start = bench_now_ms();
    rc = run_true(&loop, agent);
    samples[i] = bench_now_ms() - start;
  }
  if (agent != NULL) sl_agent_close(agent);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rc == 0) {
    fputc('{', stdout);
    bench_json_numbers(stdout, "samples_ms", samples, (size_t)count, true);
    printf("}\n");
  }
  free(samples);
  return rc == 0 ? 0 : 1;
}

/* Start ARG... in the sandbox through the agent without waiting for it. */
static int command_spawn(sl_sandboxes *h, int argc, char **argv) {
  if (argc < 2) return 2;
  sl_sandbox_info info;
  sl_error err = {0};
  if (sl_sandbox_get(h, argv[0], &info, &err) < 0) return fail("get", &err);
  sl_agent_conn conn;
  if (sl_agent_conn_open(&conn, info.agent_socket, 5000, 0, &err) < 0)
    return fail("connect", &err);
  sl_buf request = {0}, reply = {0};
  sl_frame final;
  size_t start = sl_frame_begin(&request, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&request, SL_F_ARGV, (const char *const *)&argv[1]);
  sl_frame_end(&request, start, NULL);
  int rc = sl_agent_conn_call(&conn, &request, NULL, NULL, &reply, &final, &err);
  if (rc == 0) {
    int64_t pid = -1;
    sl_frame_get_i64(&final, SL_F_PID, &pid, NULL);
    printf("{\"pid\": %lld}\n", (long long)pid);
  }
  sl_agent_conn_close(&conn);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  return rc == 0 ? 0 : fail("spawn", &err);
}

static int command_kill(sl_sandboxes *h, int argc, char **argv) {
  sl_error err = {0};
  double start = bench_now_ms();
  if (sl_sandbox_kill(h, argv[0], &err) < 0 && err.code != ESRCH) return fail("kill", &err);
  double kill_ms = bench_now_ms() - start;
  if (sl_sandbox_remove(h, argv[0], &err) < 0) return fail("remove", &err);
  printf("{\"kill_ms\": %.3f}\n", kill_ms);
  return 0;
}

/* Kill every sandbox of the store that is not dead, then clean up what a
 * crashed run left (sl_sandbox_gc). */
static int command_gc(sl_sandboxes *h, int argc, char **argv) {
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  sl_error err = {0};
  if (sl_sandbox_list(h, &list, &count, &err) < 0) return fail("list", &err);
  int killed = 0, rc = 0;
  for (size_t i = 0; i < count; i++) {
    if (list[i].state == SL_SANDBOX_DEAD) continue;
    if (sl_sandbox_kill(h, list[i].id, &err) < 0 && err.code != ESRCH) rc = fail("kill", &err);
    killed++;
  }
  free(list);
  int cleaned = 0;
  if (sl_sandbox_gc(h, &cleaned, &err) < 0) rc = fail("gc", &err);
  if (rc == 0) printf("{\"killed\": %d, \"cleaned\": %d}\n", killed, cleaned);
  return rc;
}

/* ---- snapshots --------------------------------------------------------- */

/* The argv of the last `criu` the core started, from its debug log. */
static char criu_argv[8192];

static void capture_criu_argv(sl_log_level level, const char *line, void *data) {
  const char *key = strstr(line, "event=criu.start");
  const char *argv = key != NULL ? strstr(key, "argv=\"") : NULL;
  if (argv == NULL) return;
  snprintf(criu_argv, sizeof criu_argv, "%s", argv + 6);
  size_t n = strlen(criu_argv);
  if (n > 0 && criu_argv[n - 1] == '"') criu_argv[n - 1] = '\0';
}

typedef struct store_handles {
  sl_store store;
  sl_catalog *cat;
} store_handles;

static int open_store(const char *home, store_handles *s, sl_error *err) {
  s->cat = NULL;
  int rc = sl_store_open(&s->store, home, err);
  if (rc == 0) rc = sl_catalog_open_store(&s->store, &s->cat, err);
  return rc;
}

static void print_snapshot(const sl_snapshot *sn, const sl_snapshot_timing *t,
                           const char *home) {
  printf("{\"id\": ");
  bench_json_string(stdout, sn->id);
  printf(", \"total_ms\": %.3f, \"dump_ms\": %.3f, \"frozen_ms\": %.3f, \"size_bytes\": %lld",
         t->total_ms, t->dump_ms, t->frozen_ms, (long long)sn->size_bytes);
  char work[PATH_MAX];
  snprintf(work, sizeof work, "%.2000s/sandboxes/%s/log/%s", home, sn->source_sandbox_id,
           sn->id);
  bench_json_key(stdout, "image_dir", false);
  bench_json_string(stdout, sn->image_dir);
  bench_json_key(stdout, "work_dir", false);
  bench_json_string(stdout, work);
  bench_json_key(stdout, "criu_argv", false);
  bench_json_string(stdout, criu_argv);
  printf("}\n");
}

static int command_snapshot(const char *home, int argc, char **argv) {
  store_handles s;
  sl_error err = {0};
  point_at_build_dir();
  if (open_store(home, &s, &err) < 0) return fail("open store", &err);
  sl_log_set_sink(capture_criu_argv, NULL);
  sl_log_set_level(SL_LOG_DEBUG);
  sl_snapshot_request req = {.sandbox_id = argv[0], .memory = true, .lock_timeout_ms = 10000};
  sl_snapshot sn = {0};
  sl_snapshot_timing timing;
  int rc = sl_snapshot_take(s.cat, &s.store, &req, &sn, &timing, &err);
  if (rc == 0) print_snapshot(&sn, &timing, home);
  sl_snapshot_clear(&sn);
  sl_catalog_close(s.cat);
  return rc == 0 ? 0 : fail("snapshot", &err);
}

static int command_snapshot_remove(const char *home, int argc, char **argv) {
  store_handles s;
  sl_error err = {0};
  if (open_store(home, &s, &err) < 0) return fail("open store", &err);
  int rc = sl_snapshot_remove(s.cat, &s.store, argv[0], &err);
  sl_catalog_close(s.cat);
  if (rc < 0) return fail("snapshot remove", &err);
  printf("{}\n");
  return 0;
}

/* ---- files ------------------------------------------------------------- */

static int command_criu_stats(int argc, char **argv) {
  sl_criu_stats st;
  sl_error err = {0};
  if (sl_criu_read_stats(argv[0], &st, &err) < 0) return fail("stats", &err);
  printf("{\"freezing_ms\": %.3f, \"frozen_ms\": %.3f, \"memdump_ms\": %.3f, "
         "\"memwrite_ms\": %.3f, \"pages_written\": %llu, \"forking_ms\": %.3f, "
         "\"restore_ms\": %.3f, \"pages_restored\": %llu}\n",
         st.freezing_time_us / 1e3, st.frozen_time_us / 1e3, st.memdump_time_us / 1e3,
         st.memwrite_time_us / 1e3, (unsigned long long)st.pages_written,
         st.forking_time_us / 1e3, st.restore_time_us / 1e3,
         (unsigned long long)st.pages_restored);
  return 0;
}

static int command_size(int argc, char **argv) {
  uint64_t total = 0;
  for (int i = 0; i < argc; i++) {
    uint64_t bytes = 0;
    sl_error err = {0};
    if (sl_layer_size(argv[i], &bytes, &err) < 0) return fail("size", &err);
    total += bytes;
  }
  printf("{\"bytes\": %llu}\n", (unsigned long long)total);
  return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

typedef int (*sandbox_command)(sl_sandboxes *h, int argc, char **argv);

static int with_sandboxes(const char *home, sandbox_command fn, int argc, char **argv) {
  sl_sandboxes *h;
  sl_error err = {0};
  point_at_build_dir();
  if (sl_sandboxes_open(home, &h, &err) < 0) return fail("open store", &err);
  int rc = fn(h, argc, argv);
  sl_sandboxes_close(h);
  return rc;
}

static int usage(void) {
  fprintf(stderr,
          "usage: bench_core create HOME [MEMORY] | exec HOME ID COUNT | spawn HOME ID ARG... |\n"
          "       snapshot HOME ID | snapshot-remove HOME REF | kill HOME ID | gc HOME |\n"
          "       criu-stats FILE | size PATH... | criu-path | catalog ROWS RUNS DIR |\n"
          "       vm-create | vm-exec | vm-spawn | vm-read | vm-snapshot | vm-snapshot-remove |\n"
          "       vm-fork | vm-pause | vm-resume | vm-rollback (see bench/core_driver.c)\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "criu-path") == 0) {
    printf("{\"path\": ");
    bench_json_string(stdout, sl_criu_path());
    printf("}\n");
    return 0;
  }
  if (argc < 3) return usage();
  const char *cmd = argv[1];
  int rest = argc - 3;
  char **args = argv + 3;
  int rc = -1;
  point_at_build_dir();
  if (strncmp(cmd, "vm-", 3) == 0) rc = bench_vm_command(cmd, argv[2], rest, args);
  if (strcmp(cmd, "create") == 0) rc = with_sandboxes(argv[2], command_create, rest, args);
  if (strcmp(cmd, "exec") == 0 && rest == 2)
    rc = with_sandboxes(argv[2], command_exec, rest, args);
  if (strcmp(cmd, "spawn") == 0) rc = with_sandboxes(argv[2], command_spawn, rest, args);
  if (strcmp(cmd, "kill") == 0 && rest == 1) rc = with_sandboxes(argv[2], command_kill, rest, args);
  if (strcmp(cmd, "gc") == 0 && rest == 0) rc = with_sandboxes(argv[2], command_gc, rest, args);
  if (strcmp(cmd, "snapshot") == 0 && rest == 1) rc = command_snapshot(argv[2], rest, args);
  if (strcmp(cmd, "snapshot-remove") == 0 && rest == 1)
    rc = command_snapshot_remove(argv[2], rest, args);
  if (strcmp(cmd, "criu-stats") == 0 && argc == 3) rc = command_criu_stats(1, argv + 2);
  if (strcmp(cmd, "size") == 0) rc = command_size(argc - 2, argv + 2);
  if (strcmp(cmd, "catalog") == 0) rc = bench_catalog_command(argc - 2, argv + 2);
  return rc == -1 || rc == 2 ? usage() : rc;
}
