/* Times the VM backend: snapshot pause, fork to running, fork to first
 * exec result, and memory per fork. Prints one JSON object on stdout and
 * progress on stderr. Usage (as root):
 *
 *     build/bench/vm_bench [memory_mb] [forks] [guest command to print]
 *
 * The guest is sandlot-agent on the busybox root of tests/c/vm_fixture.h,
 * or on the root file system directory named by VM_BENCH_ROOT (a Debian
 * root made by mmdebstrap, say). Run it from the build directory or set
 * SANDLOT_BUILD_DIR. The kernel
 * cache is $SANDLOT_VM_CACHE (default /tmp/sandlot-vm-cache); the store is
 * a fresh directory under /tmp, removed at the end. Before each snapshot
 * the guest writes $VM_BENCH_DISK_MB MiB (default 16) to its disk, which
 * the pause must not depend on. With VM_BENCH_KEEP set, the store stays
 * for a look at the snapshot files. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm.h"
#include "vm_fixture.h"
#include "vm_util.h"

#define SNAPSHOTS 5
#define FORKS_MAX 8

typedef struct smaps {
  long rss_kb, pss_kb, shared_kb, private_kb;
} smaps;

/* Sum the fields of /proc/<pid>/smaps_rollup. */
static smaps read_smaps(pid_t pid) {
  smaps m = {0};
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) {
    long v = 0;
    if (sscanf(line, "Rss: %ld", &v) == 1) m.rss_kb = v;
    if (sscanf(line, "Pss: %ld", &v) == 1) m.pss_kb = v;
    if (sscanf(line, "Shared_Clean: %ld", &v) == 1) m.shared_kb += v;
    if (sscanf(line, "Shared_Dirty: %ld", &v) == 1) m.shared_kb += v;
    if (sscanf(line, "Private_Clean: %ld", &v) == 1) m.private_kb += v;
    if (sscanf(line, "Private_Dirty: %ld", &v) == 1) m.private_kb += v;
  }
  if (f) fclose(f);
  return m;
}

static long allocated_kb(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)(st.st_blocks / 2) : -1;
}

static void die(const char *what, const sl_error *err) {
  fprintf(stderr, "vm_bench: %s: %s\n", what, err->msg);
  exit(1);
}

/* A snapshot's files where the sandbox store puts them. */
typedef struct bench_image {
  char dir[700];
  char disk[700];
  sl_vm_image image;
} bench_image;

static sl_vm_image *image_at(bench_image *b, const char *home, const char *name) {
  char folder[680];
  snprintf(b->dir, sizeof b->dir, "%s/snapshots/%s/vm", home, name);
  snprintf(folder, sizeof folder, "%s/layers/%s", home, name);
  snprintf(b->disk, sizeof b->disk, "%s/disk.qcow2", folder);
  sl_mkdir_p(folder, 0700, NULL);
  sl_mkdir_p(b->dir, 0700, NULL);
  b->image = (sl_vm_image){.dir = b->dir, .disk = b->disk};
  return &b->image;
}

/* Remove a snapshot's RAM and state; its disk stays, because the source's
 * overlay stacks on it. */
static void drop_memory(const char *home, const char *name) {
  char path[700];
  snprintf(path, sizeof path, "%s/snapshots/%s", home, name);
  sl_remove_tree(path, NULL);
}

static void bench_snapshots(sl_vm *src, const char *home, json_t *out) {
  json_t *list = json_array();
  const char *disk_mb = getenv("VM_BENCH_DISK_MB");
  char write_disk[200];
  snprintf(write_disk, sizeof write_disk,
           "dd if=/dev/urandom of=/data/bench-$(date +%%s%%N) bs=1M count=%s 2>/dev/null; sync",
           disk_mb ? disk_mb : "16");
  for (int i = 0; i < SNAPSHOTS; i++) {
    char id[32];
    snprintf(id, sizeof id, "sn-bench-%d", i);
    sl_vm_snapshot_stats st;
    sl_error err = {0};
    bench_image b;
    free(vm_exec(src, write_disk, NULL, &err));
    if (sl_vm_snapshot(src, image_at(&b, home, id), &st, &err) < 0) die("snapshot", &err);
    fprintf(stderr, "snapshot %d: pause %.1f ms (disk switch %.1f, ram %.1f, state %.1f ms)\n",
            i, st.pause_ms, st.disk_ms, st.ram_ms, st.state_ms);
    json_array_append_new(list, json_pack("{s:f, s:f, s:f, s:f, s:I}", "pause_ms", st.pause_ms,
                                          "disk_switch_ms", st.disk_ms, "ram_copy_ms", st.ram_ms,
                                          "state_ms", st.state_ms, "state_bytes",
                                          (json_int_t)st.state_bytes));
    if (i > 0) {
      snprintf(id, sizeof id, "sn-bench-%d", i - 1);
      drop_memory(home, id);
    }
  }
  json_object_set_new(out, "snapshots", list);
}

static json_t *smaps_json(smaps m) {
  return json_pack("{s:I, s:I, s:I, s:I}", "rss_kib", (json_int_t)m.rss_kb, "pss_kib",
                   (json_int_t)m.pss_kb, "shared_kib", (json_int_t)m.shared_kb,
                   "private_kib", (json_int_t)m.private_kb);
}

int main(int argc, char **argv) {
  unsigned memory_mb = argc > 1 ? (unsigned)atoi(argv[1]) : 256;
  int forks = argc > 2 ? atoi(argv[2]) : 4;
  if (forks > FORKS_MAX) forks = FORKS_MAX;
  if (getenv("SANDLOT_VM_CACHE") == NULL) setenv("SANDLOT_VM_CACHE", "/tmp/sandlot-vm-cache", 1);
  char home[] = "/tmp/sandlot-bench-XXXXXX";
  if (mkdtemp(home) == NULL) return 1;
  char base[600], agent[600];
  sl_error err = {0};
  if (vm_fixture_setup(home, base, sizeof base, agent, sizeof agent, &err) < 0) die("setup", &err);
  const char *root = getenv("VM_BENCH_ROOT");
  if (root != NULL && sl_vm_base_disk(home, "bench-root", root, 1024, base, sizeof base, &err) < 0)
    die("root disk", &err);

  sl_vm *src = NULL;
  sl_vm_options opt = {.home = home, .base_disk = base, .agent = agent, .memory_mb = memory_mb};
  double t = sl_clock_ms();
  if (sl_vm_create(&opt, "sb-bench", &src, &err) < 0) die("create", &err);
  json_t *out = json_pack("{s:i, s:f}", "memory_mib", (int)memory_mb, "boot_ms", sl_clock_ms() - t);
  free(vm_exec(src,
               "mkfifo /tmp/tick /tmp/tock && (n=0; while read x </tmp/tick; do n=$((n+1)); "
               "echo $n >/tmp/tock; done) >/dev/null 2>&1 </dev/null &",
               NULL, &err));
  free(vm_exec(src, "echo >/tmp/tick; cat /tmp/tock", NULL, &err));
  sleep(3); /* let the guest settle into idle and report its free pages */
  if (argc > 3) {
    char *guest_out = vm_exec(src, argv[3], NULL, &err);
    fprintf(stderr, "guest `%s`:\n%s", argv[3], guest_out ? guest_out : "(no output)\n");
    free(guest_out);
  }

  bench_snapshots(src, home, out);
  char snap_ram[700];
  snprintf(snap_ram, sizeof snap_ram, "%s/snapshots/sn-bench-%d/vm/ram", home, SNAPSHOTS - 1);
  json_object_set_new(out, "snapshot_ram_allocated_kib", json_integer(allocated_kb(snap_ram)));

  char snap[32];
  snprintf(snap, sizeof snap, "sn-bench-%d", SNAPSHOTS - 1);
  sl_vm *fork[FORKS_MAX] = {0};
  json_t *fork_list = json_array();
  for (int i = 0; i < forks; i++) {
    char id[32];
    snprintf(id, sizeof id, "sb-fork-%d", i);
    bench_image b;
    image_at(&b, home, snap);
    sl_vm_fork_options fopt = {.home = home, .id = id, .from = b.image};
    t = sl_clock_ms();
    sl_vm_fork_stats st;
    if (sl_vm_fork(&fopt, NULL, &st, &fork[i], &err) < 0) die("fork", &err);
    char *result = vm_exec(fork[i], "echo >/tmp/tick; cat /tmp/tock", NULL, &err);
    double first = sl_clock_ms() - t;
    fprintf(stderr,
            "fork %d: overlay %.1f, QEMU up %.1f, running after cont %.1f, ready %.1f, "
            "first exec result %.1f ms (%s)\n",
            i, st.disk_ms, st.launch_ms, st.running_ms, st.ready_ms, first,
            result ? strtok(result, "\n") : "no output");
    json_array_append_new(
        fork_list,
        json_pack("{s:f, s:f, s:f, s:f, s:f, s:b}", "overlay_ms", st.disk_ms, "launch_ms",
                  st.launch_ms, "running_ms", st.running_ms, "ready_ms", st.ready_ms,
                  "first_exec_ms", first, "exec_ok",
                  result != NULL && strcmp(result, "2") == 0));
    free(result);
  }
  for (int i = 0; i < forks; i++)
    json_object_set_new(json_array_get(fork_list, (size_t)i), "memory",
                        smaps_json(read_smaps(sl_vm_pid(fork[i]))));
  if (forks > 0) {
    /* A fork's RAM is a private mapping, so its snapshot carries the RAM
     * in the migration stream. */
    sl_vm_snapshot_stats st;
    bench_image b;
    if (sl_vm_snapshot(fork[0], image_at(&b, home, "sn-of-fork"), &st, &err) < 0)
      die("snapshot of a fork", &err);
    fprintf(stderr,
            "snapshot of a fork: pause %.1f ms (state %.1f ms, %lld bytes; RAM file read "
            "before the pause in %.1f ms)\n",
            st.pause_ms, st.state_ms, st.state_bytes, st.warm_ms);
    json_object_set_new(out, "fork_snapshot",
                        json_pack("{s:f, s:f, s:I, s:f}", "pause_ms", st.pause_ms, "state_ms",
                                  st.state_ms, "state_bytes", (json_int_t)st.state_bytes,
                                  "warm_ms", st.warm_ms));
  }
  json_object_set_new(out, "forks", fork_list);
  json_object_set_new(out, "source_memory", smaps_json(read_smaps(sl_vm_pid(src))));
  json_dumpf(out, stdout, JSON_INDENT(2));
  printf("\n");
  json_decref(out);

  for (int i = 0; i < forks; i++) {
    sl_vm_delete(home, sl_vm_id(fork[i]), &err);
    sl_vm_close(fork[i]);
  }
  sl_vm_delete(home, "sb-bench", &err);
  sl_vm_close(src);
  if (getenv("VM_BENCH_KEEP") != NULL)
    fprintf(stderr, "kept the store (VM_BENCH_KEEP): %s\n", home);
  else
    sl_remove_tree(home, &err);
  return 0;
}
