/* Snapshots and forks of real process sandboxes through the sandbox API:
 * the process backend, its monitor, the catalog, the agent and the built
 * CRIU. The workload (tests/c/fixture/test_workload.c) is copied into
 * each sandbox and read back through the agent. The cases share
 * sandboxes and snapshots and run in order. Needs root. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "test.h"
#include "proc_helpers.h"
#include "snapshot_helpers.h"
#include "backend.h"
#include "layer_copy.h"
#include "sandbox_store.h"
#include "sandlot_config.h"
#include "snapshot.h"

static char home[64];
static sl_sandboxes *h;
static sl_sandbox_info source, forks[4], grandchild;
static sl_snapshot loaded;       /* full snapshot of source, "loaded:v1" */
static long counter_at_snapshot;

static unsigned long net_ns_of(pid_t pid) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
  return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static int in_procs(const char *cgroups, pid_t pid) {
  sl_cgroup cg;
  sl_error err = {0};
  if (sl_cgroup_parse(cgroups, &cg, &err) < 0) return 0;
  char path[SL_CGROUP_PATH_MAX + 16];
  const char *dir = cg.dirs[SL_CG_PIDS][0] ? cg.dirs[SL_CG_PIDS] : cg.dirs[SL_CG_UNIFIED];
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  FILE *f = fopen(path, "r");
  int value, found = 0;
  while (f && fscanf(f, "%d", &value) == 1) found |= value == pid;
  if (f) fclose(f);
  return found;
}

static void test_snapshot_keeps_source_running(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  CHECK_OK(sl_sandbox_create(h, &spec, &source, &err), &err);
  const char *args[] = {"10", NULL};
  CHECK(start_workload(&source, args, &err) > 0);
  CHECK(wait_counter(&source, 20, 10000) > 0);

  const char *labels[] = {"step=3", NULL};
  sl_snapshot_opts opts = {.name = "loaded", .tag = "v1", .labels = labels};
  sl_snapshot_timing timing;
  counter_at_snapshot = read_counter(&source, NULL);
  CHECK_OK(sl_sandbox_snapshot(h, source.id, &opts, &loaded, &timing, &err), &err);
  CHECK(loaded.id[0] != '\0');
  CHECK_STR(loaded.name, "loaded");
  CHECK_STR(loaded.tag, "v1");
  CHECK_STR(loaded.source_sandbox_id, source.id);
  CHECK_INT(loaded.kind, ==, SL_SNAPSHOT_FULL);
  CHECK(loaded.size_bytes > (4 << 20));
  CHECK(loaded.created_at > 0);
  CHECK(strstr(loaded.labels, "\"step\"") != NULL);
  CHECK(timing.frozen_ms > 0);

  sl_sandbox_info now;
  CHECK_OK(sl_sandbox_get(h, source.id, &now, &err), &err);
  CHECK_INT(now.state, ==, SL_SANDBOX_RUNNING);
  CHECK_INT(now.init_pid, ==, source.init_pid);
  long after = wait_counter(&source, counter_at_snapshot + 20, 10000);
  CHECK(after > 0);
  int memory_ok = 0;
  CHECK(read_counter(&source, &memory_ok) > 0);
  CHECK_INT(memory_ok, ==, 1);
  CHECK(check_log(&source, after) > 0);
}

static void test_fork_continues_from_snapshot(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  spec.snapshot = "loaded:v1";
  spec.on_fork = "hostname > /tmp/hostname; cat /tmp/counter > /tmp/seen";
  sl_sandbox_info fork;
  CHECK_OK(sl_sandbox_create(h, &spec, &fork, &err), &err);
  CHECK(strcmp(fork.id, source.id) != 0);
  CHECK_STR(fork.source_snapshot_id, loaded.id);
  CHECK_STR(fork.template_name, "base");
  CHECK_INT(fork.state, ==, SL_SANDBOX_RUNNING);

  char buf[256];
  CHECK_OK(agent_read(&fork, "/tmp/hostname", buf, sizeof buf, &err), &err);
  char expected[64];
  snprintf(expected, sizeof expected, "%s\n", fork.id);
  CHECK_STR(buf, expected);
  CHECK_OK(agent_read(&fork, "/tmp/seen", buf, sizeof buf, &err), &err);
  CHECK(atol(buf) >= counter_at_snapshot);

  /* The counter continues from the snapshot's memory, and the log on the
   * overlay continues without a gap: memory and files of one instant. */
  long first = wait_counter(&fork, counter_at_snapshot, 10000);
  CHECK(first >= counter_at_snapshot);
  CHECK(wait_counter(&fork, first + 30, 10000) > 0);
  int memory_ok = 0;
  CHECK(read_counter(&fork, &memory_ok) > 0);
  CHECK_INT(memory_ok, ==, 1);
  CHECK(check_log(&fork, first) > 0);

  CHECK(net_ns_of(fork.init_pid) != net_ns_of(source.init_pid));
  CHECK(net_ns_of(fork.init_pid) != net_ns_of(getpid()));
  CHECK(in_procs(fork.cgroups, fork.init_pid));
  CHECK(!in_procs(source.cgroups, fork.init_pid));
  CHECK_OK(sl_sandbox_kill(h, fork.id, &err), &err);
  CHECK_OK(sl_sandbox_get(h, fork.id, &fork, &err), &err);
  CHECK(nothing_left(h, &fork));
}

static void test_four_forks_diverge(void) {
  sl_error err = {0};
  sl_create_spec spec = test_spec();
  spec.snapshot = loaded.id;
  CHECK_OK(sl_sandbox_create_many(h, &spec, 4, forks, &err), &err);
  char path[64], buf[256];
  for (int i = 0; i < 4; i++) {
    snprintf(buf, sizeof buf, "fork %d", i);
    CHECK_OK(agent_write_text(&forks[i], "/diverge", buf, &err), &err);
  }
  for (int i = 0; i < 4; i++) {
    char expected[32];
    snprintf(expected, sizeof expected, "fork %d", i);
    CHECK_OK(agent_read(&forks[i], "/diverge", buf, sizeof buf, &err), &err);
    CHECK_STR(buf, expected);
    CHECK(wait_counter(&forks[i], counter_at_snapshot + 20, 10000) > 0);
    CHECK(check_log(&forks[i], counter_at_snapshot) > 0);
    for (int j = 0; j < i; j++) {
      CHECK(strcmp(forks[i].id, forks[j].id) != 0);
      CHECK(net_ns_of(forks[i].init_pid) != net_ns_of(forks[j].init_pid));
      CHECK(!in_procs(forks[j].cgroups, forks[i].init_pid));
    }
  }
  snprintf(path, sizeof path, "/diverge");
  CHECK_INT(agent_read(&source, path, buf, sizeof buf, &err), ==, -ENOENT);
}

/* Forks must not share random state or a hostname. The kernel's pool is
 * shared with the host, so /dev/urandom differs anyway; the agent also
 * adds 32 fresh bytes to it in every fork. */
static void test_forks_differ_in_hostname_and_random(void) {
  sl_error err = {0};
  char a[128], b[128], host_a[64], host_b[64];
  CHECK_INT(agent_run(&forks[0], "head -c 16 /dev/urandom | od -An -tx1", a, sizeof a, &err), ==, 0);
  CHECK_INT(agent_run(&forks[1], "head -c 16 /dev/urandom | od -An -tx1", b, sizeof b, &err), ==, 0);
  CHECK(strlen(a) > 30);
  CHECK(strcmp(a, b) != 0);
  CHECK_INT(agent_run(&forks[0], "hostname", host_a, sizeof host_a, &err), ==, 0);
  CHECK_INT(agent_run(&forks[1], "hostname", host_b, sizeof host_b, &err), ==, 0);
  CHECK(strcmp(host_a, host_b) != 0);
  CHECK(strncmp(host_a, forks[0].id, strlen(forks[0].id)) == 0);
}

static void test_fork_of_fork_stacks_layers(void) {
  sl_error err = {0};
  CHECK_OK(agent_write_text(&forks[0], "/from-fork0", "fork0 was here", &err), &err);
  sl_snapshot child = {0};
  long counter_fork0 = read_counter(&forks[0], NULL);
  CHECK_OK(sl_sandbox_snapshot(h, forks[0].id, NULL, &child, NULL, &err), &err);
  CHECK_STR(child.parent_id, loaded.id);

  sl_create_spec spec = test_spec();
  spec.snapshot = child.id;
  CHECK_OK(sl_sandbox_create(h, &spec, &grandchild, &err), &err);
  char buf[64];
  CHECK_OK(agent_read(&grandchild, "/from-fork0", buf, sizeof buf, &err), &err);
  CHECK_STR(buf, "fork0 was here");
  CHECK(wait_counter(&grandchild, counter_fork0 + 20, 10000) > 0);
  CHECK(check_log(&grandchild, counter_fork0) > 0);

  sl_layer_list stack = {0};
  CHECK_OK(sl_catalog_layer_stack(sl_sbstore_catalog(h->store), grandchild.base_layer_id, &stack,
                                  &err),
           &err);
  CHECK(stack.count >= 3); /* child's layer, loaded's layer, the template's */
  CHECK_STR(stack.items[0].id, child.layer_id);
  CHECK_STR(stack.items[1].id, loaded.layer_id);
  sl_layer_list_free(&stack);
  sl_snapshot_clear(&child);
}

int main(void) {
  require_privileges();
  if (access(SANDLOT_CRIU_PATH, X_OK) != 0)
    SKIP("no CRIU at SANDLOT_CRIU_PATH: run tools/deps.sh criu");
  h = open_store(home, sizeof home);
  if (h == NULL) return 1;
  RUN(test_snapshot_keeps_source_running);
  RUN(test_fork_continues_from_snapshot);
  RUN(test_four_forks_diverge);
  RUN(test_forks_differ_in_hostname_and_random);
  RUN(test_fork_of_fork_stacks_layers);
  sl_snapshot_clear(&loaded);
  close_store(h, home);
  TEST_EXIT();
}
