#include <errno.h>

#include "proc_cgroup.h"
#include "test.h"

static const char hybrid_mountinfo[] =
    "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
    "31 25 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    "33 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "34 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "35 31 0:31 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
    "36 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
    "37 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
    "38 31 0:34 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n";

static const char v2_mountinfo[] =
    "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
    "26 25 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

static void layout_prefers_v1_on_hybrid(void) {
  sl_cgroup_layout layout;
  sl_error err = {0};
  CHECK_OK(sl_cgroup_layout_parse(hybrid_mountinfo, "hugetlb\n", &layout, &err), &err);
  CHECK_INT(layout.mode, ==, SL_CGROUP_V1);
  CHECK_STR(layout.mounts[SL_CG_CPU], "/sys/fs/cgroup/cpu,cpuacct");
  CHECK_STR(layout.mounts[SL_CG_MEMORY], "/sys/fs/cgroup/memory");
  CHECK_STR(layout.mounts[SL_CG_DEVICES], "/sys/fs/cgroup/devices");
  CHECK_STR(layout.mounts[SL_CG_UNIFIED], "");
}

static void layout_uses_v2_with_controllers(void) {
  sl_cgroup_layout layout;
  sl_error err = {0};
  CHECK_OK(sl_cgroup_layout_parse(v2_mountinfo, "cpuset cpu io memory hugetlb pids rdma\n",
                                  &layout, &err),
           &err);
  CHECK_INT(layout.mode, ==, SL_CGROUP_V2);
  CHECK_STR(layout.mounts[SL_CG_UNIFIED], "/sys/fs/cgroup");
  CHECK_STR(layout.mounts[SL_CG_MEMORY], "");
}

static void layout_rejects_long_mount_paths(void) {
  char mountinfo[2048], long_path[600];
  memset(long_path, 'x', sizeof long_path - 1);
  long_path[sizeof long_path - 1] = '\0';
  snprintf(mountinfo, sizeof mountinfo, "26 25 0:24 / /%s rw - cgroup2 cgroup2 rw\n", long_path);
  sl_cgroup_layout layout;
  sl_error err = {0};
  CHECK_INT(sl_cgroup_layout_parse(mountinfo, "memory pids\n", &layout, &err), ==, -ENAMETOOLONG);
  CHECK(strstr(err.msg, "cgroup mount path too long") != NULL);
}

static void layout_rejects_missing_controllers(void) {
  sl_cgroup_layout layout;
  sl_error err = {0};
  CHECK_INT(sl_cgroup_layout_parse(v2_mountinfo, "cpu io hugetlb\n", &layout, &err), ==, -ENOTSUP);
  CHECK_INT(sl_cgroup_layout_parse(v2_mountinfo, NULL, &layout, &err), ==, -ENOTSUP);
  /* A longer name that starts with "memory" is another controller. */
  CHECK_INT(sl_cgroup_layout_parse(v2_mountinfo, "memory_x pids\n", &layout, &err), ==, -ENOTSUP);
}

static void paths_per_sandbox(void) {
  sl_cgroup_layout layout;
  sl_error err = {0};
  CHECK_OK(sl_cgroup_layout_parse(hybrid_mountinfo, NULL, &layout, &err), &err);
  sl_cgroup cg;
  sl_cgroup_for(&layout, "sb-0123456789ab", &cg);
  CHECK_STR(cg.dirs[SL_CG_FREEZER], "/sys/fs/cgroup/freezer/sandlot/sb-0123456789ab");
  CHECK_STR(cg.dirs[SL_CG_CPU], "/sys/fs/cgroup/cpu,cpuacct/sandlot/sb-0123456789ab");
  CHECK_STR(cg.dirs[SL_CG_UNIFIED], "");
}

static void plan_v1_limits(void) {
  sl_cgroup_limits limits = {512ULL << 20, 100, 512, 1.5};
  sl_cgroup_write w[16];
  size_t n = sl_cgroup_plan(SL_CGROUP_V1, &limits, w, 16);
  CHECK_INT(n, ==, 6);
  CHECK_STR(w[0].file, "memory.limit_in_bytes");
  CHECK_STR(w[0].value, "536870912");
  CHECK_STR(w[1].file, "memory.memsw.limit_in_bytes");
  CHECK_STR(w[2].file, "pids.max");
  CHECK_STR(w[2].value, "100");
  CHECK_STR(w[3].file, "cpu.shares");
  CHECK_STR(w[3].value, "512");
  CHECK_STR(w[4].file, "cpu.cfs_period_us");
  CHECK_STR(w[4].value, "100000");
  CHECK_STR(w[5].file, "cpu.cfs_quota_us");
  CHECK_STR(w[5].value, "150000");
  CHECK_INT(w[5].controller, ==, SL_CG_CPU);
}

static void plan_v2_limits(void) {
  sl_cgroup_limits limits = {1ULL << 30, 64, 1024, 0.5};
  sl_cgroup_write w[16];
  size_t n = sl_cgroup_plan(SL_CGROUP_V2, &limits, w, 16);
  CHECK_INT(n, ==, 5);
  CHECK_STR(w[0].file, "memory.max");
  CHECK_STR(w[0].value, "1073741824");
  CHECK_STR(w[1].file, "memory.swap.max");
  CHECK_STR(w[1].value, "0");
  CHECK_STR(w[2].file, "pids.max");
  CHECK_STR(w[3].file, "cpu.weight");
  CHECK_STR(w[3].value, "39"); /* 1 + (1022 * 9999) / 262142 */
  CHECK_STR(w[4].file, "cpu.max");
  CHECK_STR(w[4].value, "50000 100000");
  CHECK_INT(w[4].controller, ==, SL_CG_UNIFIED);
}

static void plan_skips_unset_limits(void) {
  sl_cgroup_limits none = {0, 0, 0, 0};
  sl_cgroup_write w[4];
  CHECK_INT(sl_cgroup_plan(SL_CGROUP_V1, &none, w, 4), ==, 0);
  CHECK_INT(sl_cgroup_plan(SL_CGROUP_V2, &none, w, 4), ==, 0);
}

static void format_round_trips(void) {
  sl_cgroup cg = {0};
  cg.mode = SL_CGROUP_V1;
  snprintf(cg.dirs[SL_CG_FREEZER], SL_CGROUP_PATH_MAX, "/f/sandlot/sb-1");
  snprintf(cg.dirs[SL_CG_PIDS], SL_CGROUP_PATH_MAX, "/p/sandlot/sb-1");
  char text[1024];
  CHECK(sl_cgroup_format(&cg, text, sizeof text) > 0);
  CHECK_STR(text, "freezer=/f/sandlot/sb-1\npids=/p/sandlot/sb-1\n");
  sl_cgroup back;
  sl_error err = {0};
  CHECK_OK(sl_cgroup_parse(text, &back, &err), &err);
  CHECK_INT(back.mode, ==, SL_CGROUP_V1);
  CHECK_STR(back.dirs[SL_CG_PIDS], "/p/sandlot/sb-1");
  CHECK_STR(back.dirs[SL_CG_MEMORY], "");
  CHECK_OK(sl_cgroup_parse("unified=/u/sandlot/sb-1\n", &back, &err), &err);
  CHECK_INT(back.mode, ==, SL_CGROUP_V2);
  CHECK_INT(sl_cgroup_parse("bogus=/x\n", &back, &err), ==, -EINVAL);
  CHECK_OK(sl_cgroup_parse("", &back, &err), &err);
  CHECK(!sl_cgroup_exists(&back));
}

static void device_list_is_narrow(void) {
  int n = 0;
  for (const char *const *rule = sl_cgroup_device_allow; *rule; rule++, n++) {
    CHECK(strncmp(*rule, "c ", 2) == 0); /* character devices only */
    CHECK(strstr(*rule, "*:") == NULL);  /* no wildcard majors */
  }
  CHECK_INT(n, ==, 8);
}

int main(void) {
  RUN(layout_prefers_v1_on_hybrid);
  RUN(layout_uses_v2_with_controllers);
  RUN(layout_rejects_missing_controllers);
  RUN(layout_rejects_long_mount_paths);
  RUN(paths_per_sandbox);
  RUN(plan_v1_limits);
  RUN(plan_v2_limits);
  RUN(plan_skips_unset_limits);
  RUN(format_round_trips);
  RUN(device_list_is_narrow);
  TEST_EXIT();
}
