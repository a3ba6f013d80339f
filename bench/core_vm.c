/* The microVM commands of bench_core: the sandbox API for create and
 * kill (core/sandbox.h) and core/vm.h for what is not behind the sandbox
 * and snapshot API yet (snapshot, fork, pause, resume, rollback). Every
 * exec goes through the agent on the VM's port (sl_vm_agent_open). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core_driver.h"
#include "layer_copy.h"
#include "sandbox.h"
#include "vm.h"

#define AGENT_TIMEOUT_MS 60000
#define FORKS_MAX 64

static int vm_fail(const char *operation, const sl_error *err) {
  fprintf(stderr, "bench_core: %s failed: %s: %s\n", operation, sl_errname(err->code), err->msg);
  return 1;
}

/* Run argv through the agent on `conn`; with `wait`, until it exits 0. */
static int agent_run(sl_agent_conn *conn, const char *const *argv, bool wait, int64_t *pid,
                     sl_error *err) {
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_EXEC, 0);
  sl_frame_put_strv(&request, SL_F_ARGV, argv);
  if (wait) sl_frame_put_i64(&request, SL_F_STREAM, 1);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  int rc = sl_agent_conn_call(conn, &request, NULL, NULL, &reply, &final, err);
  int64_t code = 0;
  if (rc == 0 && wait && (sl_frame_get_i64(&final, SL_F_EXIT_CODE, &code, NULL) != 1 || code))
    rc = sl_error_set(err, EIO, "%s did not exit 0", argv[0]);
  if (rc == 0 && pid != NULL) sl_frame_get_i64(&final, SL_F_PID, pid, NULL);
  sl_buf_free(&request);
  sl_buf_free(&reply);
  return rc;
}

static const char *const true_argv[] = {"/bin/true", NULL};

/* The first exec result of a VM: connect to its agent and run `true`. */
static int first_exec(sl_vm *vm, sl_error *err) {
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, AGENT_TIMEOUT_MS, err);
  if (rc < 0) return rc;
  rc = agent_run(&conn, true_argv, true, NULL, err);
  sl_vm_agent_close(&conn, lock);
  return rc;
}

static long pss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "re");
  long value = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "Pss: %ld", &value) == 1) break;
  if (f != NULL) fclose(f);
  return value;
}

/* ---- commands on one VM -------------------------------------------------- */

static int command_vm_create(const char *home, int argc, char **argv) {
  sl_sandboxes *h;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &h, &err) < 0) return vm_fail("open store", &err);
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .memory = argc > 0 ? argv[0] : NULL};
  sl_sandbox_info info;
  sl_vm *vm = NULL;
  double start = bench_now_ms();
  int rc = sl_sandbox_create(h, &spec, &info, &err);
  if (rc == 0) rc = sl_vm_open(home, info.id, &vm, &err);
  if (rc == 0) rc = first_exec(vm, &err);
  double create_ms = bench_now_ms() - start;
  if (rc == 0) {
    printf("{\"id\": ");
    bench_json_string(stdout, info.id);
    printf(", \"create_ms\": %.3f, \"qemu_pid\": %d, \"memory_bytes\": %llu}\n", create_ms,
           (int)sl_vm_pid(vm), (unsigned long long)info.memory_bytes);
  }
  sl_vm_close(vm);
  sl_sandboxes_close(h);
  return rc == 0 ? 0 : vm_fail("create VM", &err);
}

typedef int (*vm_command)(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err);

static int with_vm(const char *home, const char *id, vm_command fn, int argc, char **argv) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  int rc = sl_vm_open(home, id, &vm, &err);
  if (rc == 0) rc = fn(vm, home, argc, argv, &err);
  sl_vm_close(vm);
  return rc == 0 ? 0 : vm_fail(id, &err);
}

/* Start ARG... in the guest without waiting for it. */
static int vm_spawn(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  if (argc < 1) return sl_error_set(err, EINVAL, "nothing to run");
  sl_agent_conn conn;
  int lock = -1;
  int64_t pid = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, AGENT_TIMEOUT_MS, err);
  if (rc == 0) rc = agent_run(&conn, (const char *const *)argv, false, &pid, err);
  if (lock >= 0) sl_vm_agent_close(&conn, lock);
  if (rc == 0) printf("{\"pid\": %lld}\n", (long long)pid);
  return rc;
}

/* Print a file of the guest (up to 1 MiB) as {"data": "..."}. */
static int vm_read(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  if (argc != 1) return sl_error_set(err, EINVAL, "expected one path");
  sl_agent_conn conn;
  int lock = -1;
  int rc = sl_vm_agent_open(vm, &conn, &lock, AGENT_TIMEOUT_MS, err);
  sl_buf request = {0}, reply = {0};
  size_t start = sl_frame_begin(&request, SL_MSG_FILE_READ, 0);
  sl_frame_put_str(&request, SL_F_PATH, argv[0]);
  sl_frame_end(&request, start, NULL);
  sl_frame final;
  if (rc == 0) rc = sl_agent_conn_call(&conn, &request, NULL, NULL, &reply, &final, err);
  if (lock >= 0) sl_vm_agent_close(&conn, lock);
  if (rc == 0) {
    const uint8_t *data = NULL;
    size_t len = 0;
    sl_frame_get_bytes(&final, SL_F_DATA, &data, &len);
    char *text = strndup(data != NULL ? (const char *)data : "", len);
    printf("{\"data\": ");
    bench_json_string(stdout, text != NULL ? text : "");
    printf("}\n");
    free(text);
  }
  sl_buf_free(&request);
  sl_buf_free(&reply);
  return rc;
}

/* Snapshot SNAP of the running VM: the call's time, the pause (QMP stop
 * to the reply of cont) and its parts, and the snapshot's size on disk. */
static int vm_snapshot(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  if (argc != 1) return sl_error_set(err, EINVAL, "expected a snapshot id");
  sl_vm_snapshot_stats st;
  double start = bench_now_ms();
  int rc = sl_vm_snapshot(vm, argv[0], &st, err);
  double total_ms = bench_now_ms() - start;
  char dir[4200];
  snprintf(dir, sizeof dir, "%.4000s/snapshots/%s", home, argv[0]);
  uint64_t size = 0;
  if (rc == 0) rc = sl_layer_size(dir, &size, err);
  if (rc == 0)
    printf("{\"total_ms\": %.3f, \"pause_ms\": %.3f, \"disk_ms\": %.3f, \"ram_ms\": %.3f, "
           "\"state_ms\": %.3f, \"state_bytes\": %lld, \"size_bytes\": %llu}\n",
           total_ms, st.pause_ms, st.disk_ms, st.ram_ms, st.state_ms, st.state_bytes,
           (unsigned long long)size);
  return rc;
}

static int vm_pause(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  double start = bench_now_ms();
  int rc = sl_vm_pause(vm, err);
  if (rc == 0) printf("{\"pause_ms\": %.3f}\n", bench_now_ms() - start);
  return rc;
}

/* Resume a paused VM until its first exec result. */
static int vm_resume(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  double start = bench_now_ms();
  int rc = sl_vm_resume(vm, err);
  if (rc == 0) rc = first_exec(vm, err);
  if (rc == 0) printf("{\"resume_ms\": %.3f}\n", bench_now_ms() - start);
  return rc;
}

/* Roll the VM back to SNAP, until its first exec result. */
static int vm_rollback(sl_vm *vm, const char *home, int argc, char **argv, sl_error *err) {
  if (argc != 1) return sl_error_set(err, EINVAL, "expected a snapshot id");
  double start = bench_now_ms();
  int rc = sl_vm_rollback(vm, argv[0], err);
  if (rc == 0) rc = first_exec(vm, err);
  if (rc == 0) printf("{\"rollback_ms\": %.3f}\n", bench_now_ms() - start);
  return rc;
}

/* ---- forks --------------------------------------------------------------- */

typedef struct fork_job {
  const char *home;
  const char *snapshot;
  char id[32];
  double start_ms, done_ms;
  sl_vm_fork_stats stats;
  sl_vm *vm;
  sl_error err;
  int rc;
} fork_job;

static void *run_fork(void *data) {
  fork_job *job = data;
  job->start_ms = bench_now_ms();
  job->rc = sl_vm_fork(job->home, job->snapshot, job->id, &job->stats, &job->vm, &job->err);
  if (job->rc == 0) job->rc = first_exec(job->vm, &job->err);
  job->done_ms = bench_now_ms();
  return NULL;
}

/* The command line of a running QEMU, arguments separated by newlines. */
static void print_cmdline(pid_t pid) {
  char path[64], buf[16384];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  FILE *f = fopen(path, "re");
  size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f != NULL) fclose(f);
  for (size_t i = 0; i + 1 < n; i++)
    if (buf[i] == '\0') buf[i] = '\n';
  buf[n] = '\0';
  bench_json_string(stdout, buf);
}

/* Print the forks' times from `start`, taken before the first thread was
 * created. running_ms ends at QEMU's reply to cont and first_exec_ms at
 * the result of `true`. The totals are those of the latest fork. */
static void print_forks(const fork_job *jobs, int count, double start) {
  double last = start, last_running = start;
  for (int i = 0; i < count; i++) {
    double running = jobs[i].start_ms + jobs[i].stats.running_ms;
    if (jobs[i].done_ms > last) last = jobs[i].done_ms;
    if (running > last_running) last_running = running;
  }
  printf("{\"total_ms\": %.3f, \"running_ms\": %.3f, \"forks\": [", last - start,
         last_running - start);
  for (int i = 0; i < count; i++)
    printf("%s{\"id\": \"%s\", \"running_ms\": %.3f, \"first_exec_ms\": %.3f, "
           "\"pss_kib\": %ld}",
           i ? ", " : "", jobs[i].id, jobs[i].start_ms + jobs[i].stats.running_ms - start,
           jobs[i].done_ms - start, pss_kib(sl_vm_pid(jobs[i].vm)));
  printf("], \"fork_dir\": ");
  bench_json_string(stdout, sl_vm_dir(jobs[0].vm));
  printf(", \"qemu_argv\": ");
  print_cmdline(sl_vm_pid(jobs[0].vm));
  printf("}\n");
}

/* Start COUNT forks of SNAP at once, each until its first exec result,
 * report, then delete them. */
static int command_vm_fork(const char *home, int argc, char **argv) {
  int count = argc == 2 ? atoi(argv[1]) : 0;
  if (count < 1 || count > FORKS_MAX) return 2;
  fork_job jobs[FORKS_MAX];
  pthread_t threads[FORKS_MAX];
  double start = bench_now_ms();
  for (int i = 0; i < count; i++) {
    jobs[i] = (fork_job){.home = home, .snapshot = argv[0]};
    snprintf(jobs[i].id, sizeof jobs[i].id, "sb-bfork%04x%02x", (unsigned)getpid() & 0xffff, i);
    pthread_create(&threads[i], NULL, run_fork, &jobs[i]);
  }
  int failed = -1;
  for (int i = 0; i < count; i++) {
    pthread_join(threads[i], NULL);
    if (jobs[i].rc < 0 && failed < 0) failed = i;
  }
  if (failed < 0) print_forks(jobs, count, start);
  for (int i = 0; i < count; i++) {
    sl_error err = {0};
    sl_vm_close(jobs[i].vm);
    sl_vm_delete(home, jobs[i].id, &err);
  }
  return failed < 0 ? 0 : vm_fail("fork", &jobs[failed].err);
}

static int command_vm_snapshot_remove(const char *home, int argc, char **argv) {
  sl_error err = {0};
  if (sl_vm_snapshot_delete(home, argv[0], &err) < 0) return vm_fail("snapshot remove", &err);
  printf("{}\n");
  return 0;
}

typedef struct vm_entry {
  const char *name;
  vm_command fn;
} vm_entry;

static const vm_entry vm_commands[] = {
    {"vm-spawn", vm_spawn},       {"vm-read", vm_read},
    {"vm-snapshot", vm_snapshot}, {"vm-pause", vm_pause},   {"vm-resume", vm_resume},
    {"vm-rollback", vm_rollback},
};

int bench_vm_command(const char *name, const char *home, int argc, char **argv) {
  if (strcmp(name, "vm-create") == 0) return command_vm_create(home, argc, argv);
  if (strcmp(name, "vm-fork") == 0) return command_vm_fork(home, argc, argv);
  if (strcmp(name, "vm-snapshot-remove") == 0 && argc == 1)
    return command_vm_snapshot_remove(home, argc, argv);
  for (size_t i = 0; i < sizeof vm_commands / sizeof vm_commands[0]; i++)
    if (strcmp(name, vm_commands[i].name) == 0 && argc >= 1)
      return with_vm(home, argv[0], vm_commands[i].fn, argc - 1, argv + 1);
  return -1;
}
