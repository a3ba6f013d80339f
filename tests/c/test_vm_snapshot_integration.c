/* Snapshots of VM sandboxes through the sandbox API (sandbox.h): the same
 * calls as for process sandboxes. The cases cover snapshot rows with their
 * layer and image folder, and forks (create from a snapshot, create_many)
 * that continue the source's memory and files independently and read
 * different random bytes. They also cover pause and resume, rollback and
 * its lineage rule, files-only snapshots, list and delete, timeouts that
 * pause, and bad input that leaves no QEMU, file or row.
 *
 * One source VM serves most cases, so the suite boots three guests in all
 * under TCG. Needs root and QEMU; the base template comes from
 * $SANDLOT_TEMPLATE_CACHE and the kernel from $SANDLOT_BUILD_DIR/vm-cache. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc_util.h"
#include "sandbox.h"
#include "test.h"
#include "vm_fixture.h"
#include "vm_internal.h"

static char home[] = "/tmp/sandlot-vmsn-XXXXXX";
static sl_sandboxes *H;
static sl_sandbox_info src;    /* the source VM, booted by the first case */
static char full_id[SL_ID_SIZE]; /* its snapshot with memory */
static char forks[2][SL_SANDBOX_ID_MAX];

/* Start the counter process; `tick` then prints 1, 2, 3, ... */
static const char start_counter[] =
    "mkfifo /tmp/tick /tmp/tock && "
    "(n=0; while read x </tmp/tick; do n=$((n+1)); echo $n >/tmp/tock; done) "
    ">/dev/null 2>&1 </dev/null & echo started";
static const char tick[] = "echo >/tmp/tick; cat /tmp/tock";

/* `command`'s stdout in sandbox `id`, malloc'd; NULL on failure. */
static char *run(const char *id, const char *command) {
  sl_vm *vm = NULL;
  sl_error err = {0};
  if (sl_vm_open(home, id, &vm, &err) < 0) {
    fprintf(stderr, "open %s: %s\n", id, err.msg);
    return NULL;
  }
  char *out = vm_exec(vm, command, NULL, &err);
  if (out == NULL) fprintf(stderr, "`%s` in %s: %s\n", command, id, err.msg);
  sl_vm_close(vm);
  return out;
}

static bool prints(const char *id, const char *command, const char *expected) {
  char *out = run(id, command);
  char want[256];
  snprintf(want, sizeof want, "%s\n", expected);
  bool ok = out != NULL && strcmp(out, want) == 0;
  if (!ok)
    fprintf(stderr, "`%s` in %s printed \"%s\", expected \"%s\"\n", command, id,
            out ? out : "", expected);
  free(out);
  return ok;
}

/* Until the guest's CRNG reseeds, forks of one snapshot share its state
 * and so its output unless the host adds entropy. The guest kernel
 * reseeds on its own more often early after boot. Without the host's
 * entropy, forks of a snapshot taken a few seconds after boot still
 * differed. Forks of one taken 12 s after boot, right after the
 * RNDRESEEDCRNG done here, read the same bytes in on_fork (Debian's 6.1
 * cloud kernel under TCG). Waiting for that uptime makes the forks'
 * check fail when the host adds no entropy. */
static void reseed_late(const char *id) {
  for (int i = 0; i < 120; i++) {
    char *uptime = run(id, "cat /proc/uptime");
    double seconds = uptime ? strtod(uptime, NULL) : 0;
    free(uptime);
    if (seconds >= 12) break;
    usleep(500000);
  }
  CHECK(prints(id, "python3 -c 'import fcntl; fcntl.ioctl(open(\"/dev/urandom\", \"rb\"), 0x5207)' "
                   "&& echo reseeded", "reseeded"));
}

static bool process_alive(pid_t pid) { return pid > 0 && sl_pid_alive(pid, 0); }

static size_t count_rows(void) {
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  sl_error err = {0};
  if (sl_sandbox_list(H, &list, &count, &err) < 0) return (size_t)-1;
  free(list);
  return count;
}

static size_t count_snapshots(const char *sandbox_id) {
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  q.sandbox_id = sandbox_id;
  sl_snapshot_page page;
  sl_error err = {0};
  if (sl_snapshots_list(H, &q, &page, &err) < 0) return (size_t)-1;
  size_t n = page.count;
  sl_snapshot_page_free(&page);
  return n;
}

/* QEMU processes of this store, found by their command line. */
static int qemu_processes(void) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  char needle[300];
  snprintf(needle, sizeof needle, "%s/sandboxes/", home);
  while (d != NULL && (e = readdir(d)) != NULL) {
    char path[300], *cmd = NULL;
    size_t len = 0;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (sl_read_file(path, 1 << 20, &cmd, &len, NULL) < 0) continue;
    bool qemu = strstr(cmd, "qemu-system") != NULL;
    for (size_t i = 0; qemu && i < len; i += strlen(cmd + i) + 1)
      if (strstr(cmd + i, needle)) {
        n++;
        break;
      }
    free(cmd);
  }
  if (d) closedir(d);
  return n;
}

static void snapshot_then_fork_continues(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .hostname = "source"};
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &src, &err), &err);
  CHECK(prints(src.id, start_counter, "started"));
  CHECK(prints(src.id, tick, "1"));
  CHECK(prints(src.id, tick, "2"));
  CHECK(prints(src.id, "echo before > /root/f; cat /root/f", "before"));
  reseed_late(src.id);

  sl_snapshot_opts opts = {.name = "vm-full", .tag = "v1",
                           .labels = (const char *[]){"kind=test", NULL}};
  sl_snapshot sn = {0};
  sl_snapshot_timing timing = {0};
  CHECK_OK(sl_sandbox_snapshot(H, src.id, &opts, &sn, &timing, &err), &err);
  snprintf(full_id, sizeof full_id, "%s", sn.id);
  CHECK_INT(sn.kind, ==, SL_SNAPSHOT_FULL);
  CHECK_INT(sn.backend, ==, SL_BACKEND_VM);
  CHECK_STR(sn.source_sandbox_id, src.id);
  CHECK_STR(sn.template_name, "base");
  CHECK(sn.size_bytes > 0);
  CHECK(timing.frozen_ms > 0);
  sl_snapshot_clear(&sn);

  /* The source continues from where it was. */
  CHECK(prints(src.id, tick, "3"));
  CHECK(prints(src.id, "echo after > /root/f; cat /root/f", "after"));

  /* on_fork reads the random bytes before the forks' CRNG reseeds. */
  sl_create_spec fork_spec = {
      .snapshot = "vm-full:v1",
      .on_fork = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /tmp/random"};
  sl_sandbox_info made[2];
  CHECK_OK(sl_sandbox_create_many(H, &fork_spec, 2, made, &err), &err);
  for (int i = 0; i < 2; i++) {
    memcpy(forks[i], made[i].id, sizeof forks[i]);
    CHECK_INT(made[i].backend, ==, SL_BACKEND_VM);
    CHECK_STR(made[i].source_snapshot_id, full_id);
    CHECK(prints(made[i].id, tick, "3"));
    CHECK(prints(made[i].id, "cat /root/f", "before"));
    CHECK(prints(made[i].id, "hostname", made[i].id));
  }

  /* Each fork got fresh entropy, so their random streams differ. */
  char *a = run(forks[0], "cat /tmp/random"), *b = run(forks[1], "cat /tmp/random");
  CHECK(a != NULL);
  CHECK(b != NULL);
  CHECK_INT(strlen(a), ==, 64);
  CHECK(strcmp(a, b) != 0);
  free(a);
  free(b);

  /* Forks are independent of each other and of the source. */
  CHECK(prints(forks[0], tick, "4"));
  CHECK(prints(forks[0], "echo mine > /root/g; cat /root/g", "mine"));
  CHECK(prints(forks[1], "cat /root/g 2>/dev/null || echo none", "none"));
  CHECK(prints(forks[1], tick, "4"));
  CHECK(prints(src.id, tick, "4"));
  CHECK(prints(src.id, "cat /root/f", "after"));
}

static void snapshots_listed_and_deleted(void) {
  sl_error err = {0};
  CHECK_INT(count_snapshots(src.id), ==, 1);
  sl_snapshot sn = {0};
  CHECK_OK(sl_snapshots_get(H, "vm-full", &sn, &err), &err);
  CHECK_STR(sn.id, full_id);
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  q.label = "kind=test";
  sl_snapshot_page page;
  CHECK_OK(sl_snapshots_list(H, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 1);
  sl_snapshot_page_free(&page);

  /* A snapshot of a fork lists under the fork, with the first as parent. */
  sl_snapshot child = {0};
  CHECK_OK(sl_sandbox_snapshot(H, forks[0], NULL, &child, NULL, &err), &err);
  CHECK_STR(child.parent_id, full_id);
  CHECK_INT(count_snapshots(forks[0]), ==, 1);
  CHECK_OK(sl_snapshots_delete(H, child.id, &err), &err);
  CHECK_INT(count_snapshots(forks[0]), ==, 0);
  CHECK_INT(sl_snapshots_delete(H, child.id, &err), ==, -ENOENT);
  sl_snapshot_clear(&child);
  sl_snapshot_clear(&sn);
}

static void pause_and_resume_keep_memory(void) {
  sl_error err = {0};
  CHECK_OK(sl_sandbox_pause(H, src.id, NULL, &err), &err);
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, src.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_PAUSED);
  CHECK(!process_alive(src.init_pid));
  CHECK(!process_alive(src.monitor_pid));
  /* Pausing again changes nothing; a snapshot of a paused VM is EBUSY. */
  CHECK_OK(sl_sandbox_pause(H, src.id, NULL, &err), &err);
  CHECK_INT(sl_sandbox_snapshot(H, src.id, NULL, NULL, NULL, &err), ==, -EBUSY);
  char paused[128];
  snprintf(paused, sizeof paused, "sandbox is paused (resume it first): %s", src.id);
  CHECK_STR(err.msg, paused);
  /* connect resumes a paused sandbox. */
  CHECK_OK(sl_sandbox_connect(H, src.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK(now.init_pid != src.init_pid);
  CHECK(prints(src.id, tick, "5"));
  CHECK(prints(src.id, "cat /root/f; hostname", "after\nsource"));
  src = now;
}

static void rollback_follows_lineage(void) {
  sl_error err = {0};
  sl_snapshot_opts opts = {.name = "vm-rb"};
  CHECK_OK(sl_sandbox_snapshot(H, src.id, &opts, NULL, NULL, &err), &err);
  CHECK(prints(src.id, tick, "6"));
  CHECK(prints(src.id, "echo lost > /root/f; cat /root/f", "lost"));
  CHECK_OK(sl_sandbox_rollback(H, src.id, "vm-rb", &err), &err);
  CHECK(prints(src.id, tick, "6"));
  CHECK(prints(src.id, "cat /root/f; hostname", "after\nsource"));
  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(H, src.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  sl_snapshot rb = {0};
  CHECK_OK(sl_snapshots_get(H, "vm-rb", &rb, &err), &err);
  CHECK_STR(now.source_snapshot_id, rb.id);
  sl_snapshot_clear(&rb);
  src = now;

  /* A fork may roll back to its source's snapshot (an ancestor), but not
   * to a snapshot of its sibling. */
  CHECK_OK(sl_sandbox_rollback(H, forks[1], full_id, &err), &err);
  CHECK(prints(forks[1], tick, "3"));
  sl_snapshot_opts sibling = {.name = "vm-sibling"};
  CHECK_OK(sl_sandbox_snapshot(H, forks[0], &sibling, NULL, NULL, &err), &err);
  CHECK_INT(sl_sandbox_rollback(H, forks[1], "vm-sibling", &err), ==, -EINVAL);
  CHECK(prints(forks[1], tick, "4"));
  CHECK_INT(sl_sandbox_rollback(H, forks[1], "no-such-snapshot", &err), ==, -ENOENT);
}

static void files_only_snapshot_boots(void) {
  sl_error err = {0};
  CHECK(prints(src.id, "echo synced > /root/f; cat /root/f", "synced"));
  sl_snapshot_opts opts = {.name = "vm-files", .files_only = true};
  sl_snapshot sn = {0};
  CHECK_OK(sl_sandbox_snapshot(H, src.id, &opts, &sn, NULL, &err), &err);
  CHECK_INT(sn.kind, ==, SL_SNAPSHOT_FS);
  sl_snapshot_clear(&sn);
  CHECK(prints(src.id, tick, "7"));

  sl_create_spec bad = {.snapshot = "vm-files", .on_fork = "true"};
  sl_sandbox_info info;
  size_t rows = count_rows();
  CHECK_INT(sl_sandbox_create(H, &bad, &info, &err), ==, -EINVAL);
  CHECK_INT(count_rows(), ==, rows);

  sl_create_spec spec = {.snapshot = "vm-files", .hostname = "from-files"};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK(prints(info.id, "cat /root/f; hostname", "synced\nfrom-files"));
  CHECK(prints(info.id, "test -p /tmp/tick && echo counter || echo booted", "booted"));
  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

static void on_fork_runs_before_return(void) {
  sl_error err = {0};
  sl_create_spec spec = {.snapshot = full_id, .on_fork = "echo ran > /root/on_fork"};
  sl_sandbox_info info;
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK(prints(info.id, "cat /root/on_fork", "ran"));
  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);

  size_t rows = count_rows();
  int qemus = qemu_processes();
  spec.on_fork = "exit 3";
  CHECK_INT(sl_sandbox_create(H, &spec, &info, &err), ==, -EIO);
  CHECK(strstr(err.msg, "on_fork") != NULL);
  CHECK_INT(count_rows(), ==, rows);
  CHECK_INT(qemu_processes(), ==, qemus);
}

static void bad_input_leaves_nothing(void) {
  sl_error err = {0};
  size_t rows = count_rows();
  int qemus = qemu_processes();
  sl_sandbox_info info;
  sl_create_spec unknown = {.snapshot = "no-such-snapshot"};
  CHECK_INT(sl_sandbox_create(H, &unknown, &info, &err), ==, -ENOENT);
  sl_create_spec memory = {.snapshot = full_id, .memory = "512M"};
  CHECK_INT(sl_sandbox_create(H, &memory, &info, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "invalid memory size for a fork: 512M") != NULL);
  CHECK_INT(count_rows(), ==, rows);

  /* A corrupted state file fails the fork with EIO and leaves nothing. */
  sl_snapshot sn = {0};
  CHECK_OK(sl_snapshots_get(H, full_id, &sn, &err), &err);
  char state[PATH_MAX];
  snprintf(state, sizeof state, "%s/state", sn.image_dir);
  sl_snapshot_clear(&sn);
  int fd = open(state, O_WRONLY);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, "garbage!garbage!", 16, 0), ==, 16);
  close(fd);
  sl_create_spec fork = {.snapshot = full_id};
  CHECK_INT(sl_sandbox_create(H, &fork, &info, &err), ==, -EIO);
  CHECK_INT(count_rows(), ==, rows);
  CHECK_INT(qemu_processes(), ==, qemus);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/sandboxes", home);
  DIR *d = opendir(dir);
  int folders = 0;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') folders++;
  if (d != NULL) closedir(d);
  CHECK_INT((size_t)folders, ==, rows);
}

/* Deleting the snapshot the forks came from leaves them running. Its
 * layer goes once nothing reads through it: no live sandbox and no later
 * snapshot's layer stacked on it. */
static void delete_under_forks(void) {
  sl_error err = {0};
  sl_snapshot sn = {0};
  CHECK_OK(sl_snapshots_get(H, full_id, &sn, &err), &err);
  char layer[PATH_MAX];
  snprintf(layer, sizeof layer, "%s/layers/%s", home, sn.layer_id);
  sl_snapshot_clear(&sn);
  CHECK_OK(sl_snapshots_delete(H, full_id, &err), &err);
  CHECK(prints(forks[0], tick, "5"));
  CHECK(sl_path_exists(layer));

  for (int i = 0; i < 2; i++) {
    CHECK_OK(sl_sandbox_kill(H, forks[i], &err), &err);
    CHECK_OK(sl_sandbox_remove(H, forks[i], &err), &err);
  }
  CHECK_OK(sl_sandbox_kill(H, src.id, &err), &err);
  CHECK_OK(sl_sandbox_remove(H, src.id, &err), &err);
  sl_gc_counts cleaned;
  CHECK_OK(sl_sandbox_gc(H, &cleaned, &err), &err);
  CHECK(sl_path_exists(layer)); /* vm-rb, vm-sibling and vm-files stack on it */
  static const char *const rest[] = {"vm-rb", "vm-sibling", "vm-files", NULL};
  for (const char *const *name = rest; *name; name++)
    CHECK_OK(sl_snapshots_delete(H, *name, &err), &err);
  CHECK_OK(sl_sandbox_gc(H, &cleaned, &err), &err);
  CHECK(!sl_path_exists(layer));

  char layers[PATH_MAX];
  snprintf(layers, sizeof layers, "%s/layers", home);
  DIR *d = opendir(layers);
  int left = 0;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') left++;
  if (d != NULL) closedir(d);
  CHECK_INT(left, ==, 1); /* the base template's */
}

/* on_timeout pause: the monitor pauses the VM at its deadline. */
static void timeout_pauses_vm(void) {
  sl_create_spec spec = {.backend = SL_BACKEND_VM, .timeout_sec = 3,
                         .on_timeout = SL_ON_TIMEOUT_PAUSE};
  sl_sandbox_info info;
  sl_error err = {0};
  CHECK_OK(sl_sandbox_create(H, &spec, &info, &err), &err);
  CHECK(prints(info.id, start_counter, "started"));
  CHECK(prints(info.id, tick, "1"));
  sl_sandbox_info now = {0};
  for (int i = 0; i < 1500 && now.state != SL_SANDBOX_PAUSED; i++) {
    CHECK_OK(sl_sandbox_get(H, info.id, &now, &err), &err);
    usleep(20000);
  }
  CHECK_INT(now.state, ==, SL_SANDBOX_PAUSED);
  CHECK_OK(sl_sandbox_resume(H, info.id, &now, &err), &err);
  CHECK(prints(info.id, tick, "2"));
  CHECK_OK(sl_sandbox_kill(H, info.id, &err), &err);
  CHECK_OK(sl_sandbox_remove(H, info.id, &err), &err);
}

int main(void) {
  if (geteuid() != 0) SKIP("VM sandbox tests need root");
  const char *which[] = {"sh", "-c", "command -v qemu-system-x86_64", NULL};
  if (sl_run_output(which, NULL, NULL) < 0) SKIP("qemu-system-x86_64 is not installed");
  const char *build = getenv("SANDLOT_BUILD_DIR");
  char cache[512];
  snprintf(cache, sizeof cache, "%s/vm-cache", build ? build : "/tmp");
  setenv("SANDLOT_VM_CACHE", cache, 1);
  if (mkdtemp(home) == NULL) return 1;
  sl_error err = {0};
  if (sl_sandboxes_open(home, &H, &err) < 0) {
    fprintf(stderr, "open store: %s\n", err.msg);
    return 1;
  }
  RUN(snapshot_then_fork_continues);
  RUN(snapshots_listed_and_deleted);
  RUN(pause_and_resume_keep_memory);
  RUN(rollback_follows_lineage);
  RUN(files_only_snapshot_boots);
  RUN(on_fork_runs_before_return);
  RUN(bad_input_leaves_nothing);
  RUN(delete_under_forks);
  RUN(timeout_pauses_vm);

  /* Kill whatever a failed check left running, then remove the store. */
  sl_sandbox_info *list = NULL;
  size_t count = 0;
  if (sl_sandbox_list(H, &list, &count, &err) == 0)
    for (size_t i = 0; i < count; i++) sl_sandbox_kill(H, list[i].id, NULL);
  free(list);
  sl_sandboxes_close(H);
  sl_remove_tree(home, NULL);
  TEST_EXIT();
}
