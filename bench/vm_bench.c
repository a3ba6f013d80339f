/* Times the VM backend: snapshot pause, fork to running, fork to first
 * exec result, and memory per fork. Usage (as root):
 *
 *     build/bench/vm_bench [memory_mb] [forks] [guest command to print]
 *
 * The guest is the development root of tests/c/vm_dev_root.h. The kernel
 * cache is $SANDLOT_VM_CACHE (default /tmp/sandlot-vm-cache); the store is
 * a fresh directory under /tmp, removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm.h"
#include "vm_dev_root.h"
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

static void bench_snapshots(sl_vm *src, const char *home, double *mean_pause) {
  double sum = 0;
  for (int i = 0; i < SNAPSHOTS; i++) {
    char id[32];
    snprintf(id, sizeof id, "sn-bench-%d", i);
    sl_vm_snapshot_stats st;
    sl_error err = {0};
    if (sl_vm_snapshot(src, id, &st, &err) < 0) die("snapshot", &err);
    printf("snapshot %d: pause %.1f ms (disk %.1f, ram %.1f, state %.1f ms, %lld bytes)\n", i,
           st.pause_ms, st.disk_ms, st.ram_ms, st.state_ms, st.state_bytes);
    sum += st.pause_ms;
    if (i > 0) {
      snprintf(id, sizeof id, "sn-bench-%d", i - 1);
      sl_vm_snapshot_delete(home, id, &err);
    }
  }
  *mean_pause = sum / SNAPSHOTS;
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
  if (vm_dev_setup(home, base, sizeof base, agent, sizeof agent, &err) < 0) die("setup", &err);

  sl_vm *src = NULL;
  sl_vm_options opt = {.home = home, .base_disk = base, .agent = agent, .memory_mb = memory_mb};
  double t = sl_now_ms();
  if (sl_vm_create(&opt, "sb-bench", &src, &err) < 0) die("create", &err);
  printf("boot to agent port: %.0f ms (memory %u MiB)\n", sl_now_ms() - t, memory_mb);
  free(vm_dev_exec(src, "n=1; echo $n"));
  sleep(3); /* let the guest settle into idle and report its free pages */
  if (argc > 3) {
    char *out = vm_dev_exec(src, argv[3]);
    printf("guest `%s`:\n%s", argv[3], out ? out : "(no output)\n");
    free(out);
  }

  char ram[700];
  snprintf(ram, sizeof ram, "/dev/shm");
  printf("source QEMU pid %d\n", (int)sl_vm_pid(src));
  double mean_pause = 0;
  bench_snapshots(src, home, &mean_pause);
  printf("snapshot pause, mean of %d: %.1f ms\n", SNAPSHOTS, mean_pause);
  char snap_ram[700];
  snprintf(snap_ram, sizeof snap_ram, "%s/snapshots/sn-bench-%d/ram", home, SNAPSHOTS - 1);
  printf("snapshot RAM file: %ld KiB allocated of %u MiB\n", allocated_kb(snap_ram), memory_mb);

  char snap[32];
  snprintf(snap, sizeof snap, "sn-bench-%d", SNAPSHOTS - 1);
  sl_vm *fork[FORKS_MAX] = {0};
  for (int i = 0; i < forks; i++) {
    char id[32];
    snprintf(id, sizeof id, "sb-fork-%d", i);
    t = sl_now_ms();
    if (sl_vm_fork(home, snap, id, &fork[i], &err) < 0) die("fork", &err);
    double running = sl_now_ms() - t;
    char *out = vm_dev_exec(fork[i], "n=$((n+1)); echo $n");
    double first = sl_now_ms() - t;
    printf("fork %d: running after %.1f ms, first exec result after %.1f ms (%s)\n", i, running,
           first, out ? strtok(out, "\n") : "no output");
    free(out);
  }
  for (int i = 0; i < forks; i++) {
    smaps m = read_smaps(sl_vm_pid(fork[i]));
    printf("fork %d memory: Rss %ld KiB, Pss %ld KiB, shared %ld KiB, private %ld KiB\n", i,
           m.rss_kb, m.pss_kb, m.shared_kb, m.private_kb);
  }
  smaps m = read_smaps(sl_vm_pid(src));
  printf("source memory: Rss %ld KiB, Pss %ld KiB, shared %ld KiB, private %ld KiB\n", m.rss_kb,
         m.pss_kb, m.shared_kb, m.private_kb);

  for (int i = 0; i < forks; i++) {
    sl_vm_delete(home, sl_vm_id(fork[i]), &err);
    sl_vm_close(fork[i]);
  }
  sl_vm_delete(home, "sb-bench", &err);
  sl_vm_close(src);
  sl_remove_tree(home, &err);
  return 0;
}
