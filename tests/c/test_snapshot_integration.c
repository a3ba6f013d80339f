/* The snapshot engine against a real catalog, store, CRIU and agent:
 * full and filesystem-only snapshots, forks from their rows, op.lock,
 * deletion while a fork uses the layer, clean failures and gc after a
 * crash. The sandboxes come from the test fixture and are registered in
 * the catalog as the process backend would. Needs root. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog.h"
#include "criu_tree.h"
#include "error.h"
#include "layer_copy.h"
#include "sandbox_fixture.h"
#include "sandlot_config.h"
#include "snapshot.h"
#include "store.h"
#include "test.h"

static fx_env env;
static sl_store store;
static sl_catalog *cat;
static fx_sandbox source, fork_sb, fresh, dead, broken;
static sl_snapshot full_snapshot;
static long counter_at_snapshot;

static int64_t start_time_of(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  long long start = 0;
  if (p != NULL)
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %lld",
           &start);
  return start;
}

/* Record a fixture sandbox as running, with its cgroups, in the catalog. */
static int register_sandbox(const fx_sandbox *sb, const char *source_snapshot, sl_error *err) {
  char cgroups[1400];
  snprintf(cgroups, sizeof cgroups,
           "{\"freezer\": \"%s\", \"memory\": \"%s\", \"pids\": \"%s\", \"cpu\": \"%s\"}",
           sb->cgroups[0], sb->cgroups[1], sb->cgroups[2], sb->cgroups[3]);
  sl_sandbox_spec spec = {.id = sb->name, .source_snapshot_id = source_snapshot};
  int rc = sl_catalog_sandbox_insert(cat, &spec, NULL, err);
  sl_sandbox_process proc = {
      .init_pid = sb->init_pid,
      .init_start_time = start_time_of(sb->init_pid),
      .monitor_pid = sb->keeper_pid,
      .cgroups = cgroups,
  };
  if (rc == 0) rc = sl_catalog_sandbox_set_running(cat, sb->name, &proc, err);
  return rc;
}

static int boot_registered(fx_sandbox *sb, const char *lowers, sl_error *err) {
  char id[SL_ID_SIZE];
  const char *args[] = {"4", NULL};
  int rc = sl_id_new(SL_ID_SANDBOX, id, err);
  if (rc == 0) rc = fx_boot(&env, sb, id, lowers, args, err);
  if (rc == 0) rc = register_sandbox(sb, NULL, err);
  return rc;
}

static int count_entries(const char *area) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/%s", store.root, area);
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static int snapshots_of(const char *sandbox_id) {
  sl_snapshot_query query = SL_SNAPSHOT_QUERY_INIT;
  query.sandbox_id = sandbox_id;
  sl_snapshot_page page = {0};
  sl_error err = {0};
  if (sl_catalog_snapshot_list(cat, &query, &page, &err) < 0) return -1;
  int n = (int)page.count;
  sl_snapshot_page_free(&page);
  return n;
}

static void test_full_snapshot_recorded(void) {
  sl_error err = {0};
  CHECK_OK(boot_registered(&source, NULL, &err), &err);
  CHECK(fx_wait_counter(&source, 20, 10000) > 0);
  int memory_ok;
  CHECK_INT(fx_counter(&source, &counter_at_snapshot, &memory_ok), ==, 0);

  sl_snapshot_request req = {.sandbox_id = source.name, .name = "base", .tag = "v1",
                             .labels = "{\"team\": \"infra\"}", .memory = true};
  sl_snapshot_timing timing;
  CHECK_OK(sl_snapshot_take(cat, &store, &req, &full_snapshot, &timing, &err), &err);
  CHECK_INT(full_snapshot.kind, ==, SL_SNAPSHOT_FULL);
  CHECK_STR(full_snapshot.source_sandbox_id, source.name);
  CHECK(full_snapshot.size_bytes > (4 << 20));
  CHECK(timing.frozen_ms > 0);
  CHECK(timing.total_ms >= timing.dump_ms);

  sl_snapshot found = {0};
  CHECK_OK(sl_catalog_snapshot_resolve(cat, "base:v1", &found, &err), &err);
  CHECK_STR(found.id, full_snapshot.id);
  sl_snapshot_clear(&found);

  sl_layer layer = {0};
  CHECK_OK(sl_catalog_layer_get(cat, full_snapshot.layer_id, &layer, &err), &err);
  char path[600];
  snprintf(path, sizeof path, "%s/data/log", layer.path);
  CHECK_INT(access(path, R_OK), ==, 0);
  sl_layer_clear(&layer);
  snprintf(path, sizeof path, "%s/pages-1.img", full_snapshot.image_dir);
  CHECK_INT(access(path, R_OK), ==, 0);

  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  CHECK(fx_wait_counter(&source, counter_at_snapshot + 20, 10000) > 0);
}

static void test_fork_from_snapshot_row(void) {
  sl_error err = {0};
  char lowers[1024];
  CHECK_OK(sl_snapshot_lowerdirs(cat, "base:v1", lowers, sizeof lowers, &err), &err);
  sl_layer layer = {0};
  CHECK_OK(sl_catalog_layer_get(cat, full_snapshot.layer_id, &layer, &err), &err);
  CHECK_STR(lowers, layer.path);
  sl_layer_clear(&layer);

  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  CHECK_OK(fx_prepare(&env, &fork_sb, id, lowers, &err), &err);
  char work[400];
  snprintf(work, sizeof work, "%s/restore-%s", env.base, id);
  sl_fork_result res;
  CHECK_OK(fx_fork(&fork_sb, full_snapshot.image_dir, work, "forked",
                   "hostname > /tmp/hostname; exit 7", false, &res, &err),
           &err);
  CHECK_INT(res.on_fork_exit, ==, 7);
  CHECK(res.restore_ms > 0);
  CHECK_OK(register_sandbox(&fork_sb, full_snapshot.id, &err), &err);
  char buf[64];
  CHECK_INT(fx_read(&fork_sb, "/tmp/hostname", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "forked\n");
  long first = fx_wait_counter(&fork_sb, counter_at_snapshot, 10000);
  CHECK(first > counter_at_snapshot);
  CHECK(fx_check_log(&fork_sb, first) > 0);

  sl_sandbox row = {0};
  CHECK_OK(sl_catalog_sandbox_get(cat, fork_sb.name, &row, &err), &err);
  CHECK_STR(row.base_layer_id, full_snapshot.layer_id);
  sl_sandbox_clear(&row);
}

/* A fork whose images are unusable fails and leaves no task behind. */
static void test_failed_fork_kills_tasks(void) {
  sl_error err = {0};
  char id[SL_ID_SIZE], work[400];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  CHECK_OK(fx_prepare(&env, &broken, id, NULL, &err), &err);
  snprintf(work, sizeof work, "%s/restore-%s", env.base, id);
  int rc = fx_fork(&broken, "/nonexistent/images", work, "x", NULL, false, NULL, &err);
  CHECK_INT(rc, ==, -ENOENT);
  CHECK(strstr(err.msg, "/nonexistent/images") != NULL);
  CHECK_INT(fx_task_count(&broken), ==, 0);
}

static void test_snapshot_of_fork_stacks(void) {
  sl_error err = {0};
  sl_snapshot_request req = {.sandbox_id = fork_sb.name, .memory = true};
  sl_snapshot child = {0};
  CHECK_OK(sl_snapshot_take(cat, &store, &req, &child, NULL, &err), &err);
  CHECK_STR(child.parent_id, full_snapshot.id);
  sl_layer_list stack = {0};
  CHECK_OK(sl_catalog_layer_stack(cat, child.layer_id, &stack, &err), &err);
  CHECK_INT(stack.count, ==, 2);
  CHECK_STR(stack.items[1].id, full_snapshot.layer_id);
  sl_layer_list_free(&stack);
  CHECK_OK(sl_snapshot_remove(cat, &store, child.id, &err), &err);
  sl_snapshot_clear(&child);
}

static void test_fs_snapshot_boots_fresh(void) {
  sl_error err = {0};
  CHECK_INT(fx_write(&source, "/marker", "fs only"), ==, 0);
  sl_snapshot_request req = {.sandbox_id = source.name, .name = "files"};
  sl_snapshot fs = {0};
  CHECK_OK(sl_snapshot_take(cat, &store, &req, &fs, NULL, &err), &err);
  CHECK_INT(fs.kind, ==, SL_SNAPSHOT_FS);
  char path[600];
  snprintf(path, sizeof path, "%s/pages-1.img", fs.image_dir);
  CHECK_INT(access(path, F_OK), ==, -1);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);

  char lowers[1024];
  CHECK_INT(sl_snapshot_lowerdirs(cat, "files", lowers, sizeof lowers, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "filesystem only") != NULL);
  CHECK_INT(sl_snapshot_lowerdirs(cat, "no-such-name", lowers, sizeof lowers, &err), ==, -ENOENT);

  sl_layer layer = {0};
  CHECK_OK(sl_catalog_layer_get(cat, fs.layer_id, &layer, &err), &err);
  int rc = boot_registered(&fresh, layer.path, &err);
  sl_layer_clear(&layer);
  CHECK_OK(rc, &err);
  CHECK(fx_wait_counter(&fresh, 3, 10000) > 0);
  char buf[64];
  CHECK_INT(fx_read(&fresh, "/marker", buf, sizeof buf), ==, 0);
  CHECK_STR(buf, "fs only");
  sl_snapshot_clear(&fs);
}

static void test_snapshot_of_frozen_sandbox(void) {
  sl_error err = {0};
  CHECK_OK(sl_freezer_freeze(fresh.cgroups[0], 5000, &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_state(cat, fresh.name, SL_SANDBOX_FROZEN, &err), &err);
  sl_snapshot_request req = {.sandbox_id = fresh.name, .memory = false};
  sl_snapshot sn = {0};
  CHECK_OK(sl_snapshot_take(cat, &store, &req, &sn, NULL, &err), &err);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(fresh.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_FROZEN);
  sl_snapshot_clear(&sn);
  CHECK_OK(sl_freezer_thaw(fresh.cgroups[0], &err), &err);
  CHECK_OK(sl_catalog_sandbox_set_state(cat, fresh.name, SL_SANDBOX_RUNNING, &err), &err);
}

/* Hold the op.lock of `sb` in a child for `ms` milliseconds. */
static pid_t hold_lock(const fx_sandbox *sb, int ms, int ready_fd) {
  pid_t child = fork();
  if (child != 0) return child;
  char path[400];
  snprintf(path, sizeof path, "%s/op.lock", sb->dir);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || flock(fd, LOCK_EX) < 0) _exit(1);
  ssize_t ignored = write(ready_fd, "x", 1);
  (void)ignored;
  usleep((useconds_t)ms * 1000);
  _exit(0);
}

static void test_op_lock_busy_or_wait(void) {
  sl_error err = {0};
  int ready[2];
  CHECK_INT(pipe(ready), ==, 0);
  pid_t holder = hold_lock(&source, 500, ready[1]);
  char c;
  CHECK_INT(read(ready[0], &c, 1), ==, 1);
  close(ready[0]);
  close(ready[1]);
  int before = snapshots_of(source.name);
  sl_snapshot_request req = {.sandbox_id = source.name, .memory = true};
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -EBUSY);
  CHECK(strstr(err.msg, "another operation") != NULL);
  CHECK_INT(snapshots_of(source.name), ==, before);

  req.lock_timeout_ms = 10000;
  sl_snapshot sn = {0};
  CHECK_OK(sl_snapshot_take(cat, &store, &req, &sn, NULL, &err), &err);
  int status;
  CHECK_INT(waitpid(holder, &status, 0), ==, holder);
  CHECK_INT(snapshots_of(source.name), ==, before + 1);
  CHECK_OK(sl_snapshot_remove(cat, &store, sn.id, &err), &err);
  sl_snapshot_clear(&sn);
}

static void test_bad_sandboxes_rejected(void) {
  sl_error err = {0};
  int snapshots_before = count_entries("snapshots");
  int layers_before = count_entries("layers");
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_snapshot_request req = {.sandbox_id = id, .memory = true};
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -ENOENT);
  req.sandbox_id = "../../etc";
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -EINVAL);

  CHECK_OK(boot_registered(&dead, NULL, &err), &err);
  /* The same pid with another start time is a reused pid, not the sandbox. */
  char cgroups[400];
  snprintf(cgroups, sizeof cgroups, "{\"freezer\": \"%s\"}", dead.cgroups[0]);
  sl_sandbox_process reused = {.init_pid = dead.init_pid,
                               .init_start_time = start_time_of(dead.init_pid) + 1,
                               .monitor_pid = dead.keeper_pid, .cgroups = cgroups};
  CHECK_OK(sl_catalog_sandbox_set_running(cat, dead.name, &reused, &err), &err);
  req.sandbox_id = dead.name;
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -ESRCH);
  fx_kill(&dead);
  req.sandbox_id = dead.name;
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -ESRCH);
  CHECK(strstr(err.msg, "no running process") != NULL);
  CHECK_OK(sl_catalog_sandbox_set_exited(cat, dead.name, -1, 9, &err), &err);
  CHECK_INT(sl_snapshot_take(cat, &store, &req, NULL, NULL, &err), ==, -ESRCH);
  CHECK(strstr(err.msg, "dead") != NULL);

  CHECK_INT(count_entries("snapshots"), ==, snapshots_before);
  CHECK_INT(count_entries("layers"), ==, layers_before);
  CHECK(fx_wait_counter(&source, 0, 1000) > 0);
}

/* A capture that cannot write its layer fails the dump; the source keeps
 * running and nothing of the snapshot stays. */
static void test_failed_snapshot_leaves_nothing(void) {
  sl_error err = {0};
  char layers[PATH_MAX + 16], cmd[PATH_MAX + 64];
  snprintf(layers, sizeof layers, "%s/layers", store.root);
  snprintf(cmd, sizeof cmd, "chattr +i '%s'", layers);
  if (system(cmd) != 0) {
    fprintf(stderr, "  chattr +i is not supported here; case not run\n");
    return;
  }
  int snapshots_before = count_entries("snapshots");
  int rows_before = snapshots_of(source.name);
  sl_snapshot_request req = {.sandbox_id = source.name, .memory = true};
  int rc = sl_snapshot_take(cat, &store, &req, NULL, NULL, &err);
  snprintf(cmd, sizeof cmd, "chattr -i '%s'", layers);
  CHECK_INT(system(cmd), ==, 0);
  CHECK_INT(rc, ==, -EIO);
  CHECK(strstr(err.msg, "criu dump failed") != NULL);
  CHECK_INT(count_entries("snapshots"), ==, snapshots_before);
  CHECK_INT(snapshots_of(source.name), ==, rows_before);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  long counter;
  int memory_ok;
  CHECK_INT(fx_counter(&source, &counter, &memory_ok), ==, 0);
  CHECK(fx_wait_counter(&source, counter + 10, 10000) > 0);
}

static void test_delete_while_fork_runs(void) {
  sl_error err = {0};
  sl_layer layer = {0};
  CHECK_OK(sl_catalog_layer_get(cat, full_snapshot.layer_id, &layer, &err), &err);
  char layer_path[600];
  snprintf(layer_path, sizeof layer_path, "%s", layer.path);
  sl_layer_clear(&layer);

  CHECK_OK(sl_snapshot_remove(cat, &store, "base:v1", &err), &err);
  CHECK_INT(sl_snapshot_remove(cat, &store, "base:v1", &err), ==, -ENOENT);
  CHECK_INT(sl_snapshot_remove(cat, &store, full_snapshot.id, &err), ==, -ENOENT);
  CHECK_INT(access(full_snapshot.image_dir, F_OK), ==, -1);
  CHECK_INT(access(layer_path, F_OK), ==, 0);
  CHECK(fx_wait_counter(&fork_sb, 0, 1000) > 0);

  fx_kill(&fork_sb);
  CHECK_OK(sl_catalog_sandbox_set_exited(cat, fork_sb.name, -1, 9, &err), &err);
  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_layer_collect(cat, &removed, &err), &err);
  int found = 0;
  for (size_t i = 0; i < removed.count; i++) {
    found |= strcmp(removed.items[i].id, full_snapshot.layer_id) == 0;
    CHECK_OK(sl_layer_remove(removed.items[i].path, &err), &err);
  }
  sl_layer_list_free(&removed);
  CHECK(found);
  CHECK_INT(access(layer_path, F_OK), ==, -1);
}

/* A host that died mid-snapshot left a pending row, its folders and a
 * frozen sandbox; gc clears them once the op.lock is free. */
static void test_gc_after_crash(void) {
  sl_error err = {0};
  char snapshot_id[SL_ID_SIZE], layer_id[SL_ID_SIZE], dir[400], layer_path[400], images[420];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, snapshot_id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer_id, &err), &err);
  CHECK_OK(sl_store_create_entry(&store, SL_AREA_SNAPSHOTS, snapshot_id, dir, sizeof dir, &err),
           &err);
  snprintf(images, sizeof images, "%s/images", dir);
  CHECK_INT(mkdir(images, 0700), ==, 0);
  char source_file[450];
  snprintf(source_file, sizeof source_file, "%s/source", dir);
  FILE *f = fopen(source_file, "w");
  CHECK(f != NULL);
  fprintf(f, "%s\n", source.name);
  fclose(f);
  CHECK_OK(sl_store_layer_path(&store, layer_id, NULL, layer_path, sizeof layer_path, &err), &err);
  CHECK_INT(mkdir(layer_path, 0700), ==, 0);
  sl_snapshot_spec spec = {.id = snapshot_id, .source_sandbox_id = source.name,
                           .kind = SL_SNAPSHOT_FULL, .layer_id = layer_id,
                           .layer_path = layer_path, .image_dir = images};
  CHECK_OK(sl_catalog_snapshot_begin(cat, &spec, &err), &err);
  CHECK_OK(sl_freezer_freeze(source.cgroups[0], 5000, &err), &err);

  int ready[2];
  CHECK_INT(pipe(ready), ==, 0);
  pid_t holder = hold_lock(&source, 300, ready[1]);
  char c;
  CHECK_INT(read(ready[0], &c, 1), ==, 1);
  close(ready[0]);
  close(ready[1]);
  int cleaned = -1;
  CHECK_OK(sl_snapshot_gc(cat, &store, 0, &cleaned, &err), &err);
  CHECK_INT(cleaned, ==, 0);
  CHECK_INT(access(dir, F_OK), ==, 0);
  sl_freezer_state state;
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_FROZEN);
  int status;
  CHECK_INT(waitpid(holder, &status, 0), ==, holder);

  CHECK_OK(sl_snapshot_gc(cat, &store, 0, &cleaned, &err), &err);
  CHECK_INT(cleaned, ==, 2);
  CHECK_INT(access(dir, F_OK), ==, -1);
  CHECK_INT(access(layer_path, F_OK), ==, -1);
  CHECK_OK(sl_freezer_get(source.cgroups[0], &state, &err), &err);
  CHECK_INT(state, ==, SL_FREEZER_THAWED);
  long counter;
  int memory_ok;
  CHECK_INT(fx_counter(&source, &counter, &memory_ok), ==, 0);
  CHECK(fx_wait_counter(&source, counter + 10, 10000) > 0);

  CHECK_OK(sl_snapshot_gc(cat, &store, 0, &cleaned, &err), &err);
  CHECK_INT(cleaned, ==, 0);
}

/* A sandbox that swaps its agent socket for a symlink to a host socket
 * must not lead the host there: resolution stays inside its root. */
static void test_agent_socket_symlink_rejected(void) {
  char root[300], dir[400], link_path[450], host_dir[300];
  snprintf(root, sizeof root, "%s/evil-root", env.base);
  snprintf(dir, sizeof dir, "%s/run/sandlot", root);
  snprintf(link_path, sizeof link_path, "%s/agent.sock", dir);
  snprintf(host_dir, sizeof host_dir, "%s/host-run", env.base);
  CHECK_INT(mkdir(root, 0755), ==, 0);
  char run[350];
  snprintf(run, sizeof run, "%s/run", root);
  CHECK_INT(mkdir(run, 0755), ==, 0);
  CHECK_INT(mkdir(dir, 0755), ==, 0);
  CHECK_INT(mkdir(host_dir, 0755), ==, 0);
  char target[350];
  snprintf(target, sizeof target, "%s/host.sock", host_dir);
  FILE *f = fopen(target, "w");
  CHECK(f != NULL);
  fclose(f);
  CHECK_INT(symlink(target, link_path), ==, 0);

  sl_error err = {0};
  CHECK_INT(sl_agent_socket_open_in_root(root, &err), ==, -ELOOP);
  CHECK(strstr(err.msg, "not a socket") != NULL);
  char published[400];
  snprintf(published, sizeof published, "%s/published.sock", env.base);
  CHECK_INT(sl_agent_socket_publish(root, published, &err), ==, -ELOOP);
  CHECK_INT(access(published, F_OK), ==, -1);

  CHECK_INT(unlink(link_path), ==, 0);
  CHECK_INT(symlink("../../../host-run/host.sock", link_path), ==, 0);
  CHECK_INT(sl_agent_socket_open_in_root(root, &err), ==, -ELOOP);
  CHECK_OK(sl_layer_remove(root, &err), &err);
  CHECK_OK(sl_layer_remove(host_dir, &err), &err);
  unlink(published);
}

static void test_cgroup_json_parsing(void) {
  char path[256];
  sl_error err = {0};
  CHECK_OK(sl_cgroup_path_from_json("{\"memory\": \"/m\", \"freezer\": \"/sys/a\\/b\"}",
                                    "freezer", path, sizeof path, &err),
           &err);
  CHECK_STR(path, "/sys/a/b");
  CHECK_INT(sl_cgroup_path_from_json("{\"memory\": \"/m\"}", "freezer", path, sizeof path, &err),
            ==, -ENOENT);
  CHECK_INT(sl_cgroup_path_from_json(NULL, "freezer", path, sizeof path, &err), ==, -EINVAL);
  CHECK_INT(sl_cgroup_path_from_json("{\"freezer\" \"x\"}", "freezer", path, sizeof path, &err),
            ==, -EINVAL);
  CHECK_INT(sl_cgroup_path_from_json("{\"freezer\": \"x", "freezer", path, sizeof path, &err),
            ==, -EINVAL);
  CHECK_OK(sl_cgroup_path_from_json("{\"unified\": \"/sys/fs/cgroup/sandlot/sb-1\"}", "unified",
                                    path, sizeof path, &err),
           &err);
  CHECK_STR(path, "/sys/fs/cgroup/sandlot/sb-1");
}

int main(void) {
  if (geteuid() != 0) SKIP("snapshots need root");
  if (access(SANDLOT_CRIU_PATH, X_OK) != 0)
    SKIP("no CRIU at SANDLOT_CRIU_PATH: run tools/deps.sh criu");
  sl_error err = {0};
  if (fx_setup(&env) < 0 || sl_store_open(&store, env.base, &err) < 0 ||
      sl_catalog_open_store(&store, &cat, &err) < 0) {
    fprintf(stderr, "cannot set up the store: %s\n", err.msg);
    return 1;
  }
  RUN(test_cgroup_json_parsing);
  RUN(test_agent_socket_symlink_rejected);
  RUN(test_full_snapshot_recorded);
  RUN(test_fork_from_snapshot_row);
  RUN(test_failed_fork_kills_tasks);
  RUN(test_snapshot_of_fork_stacks);
  RUN(test_fs_snapshot_boots_fresh);
  RUN(test_snapshot_of_frozen_sandbox);
  RUN(test_op_lock_busy_or_wait);
  RUN(test_bad_sandboxes_rejected);
  RUN(test_failed_snapshot_leaves_nothing);
  RUN(test_delete_while_fork_runs);
  RUN(test_gc_after_crash);

  sl_snapshot_clear(&full_snapshot);
  fx_sandbox *all[] = {&source, &fork_sb, &fresh, &dead, &broken};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) fx_destroy(all[i]);
  sl_catalog_close(cat);
  fx_teardown(&env);
  TEST_EXIT();
}
