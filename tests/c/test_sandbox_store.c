#include <errno.h>
#include <stdlib.h>

#include "run.h"
#include "sandbox_store.h"
#include "test.h"

static sl_sandbox_info sample(const char *id, int64_t created) {
  sl_sandbox_info info;
  memset(&info, 0, sizeof info);
  snprintf(info.id, sizeof info.id, "%s", id);
  info.backend = SL_BACKEND_PROCESS;
  snprintf(info.template_name, sizeof info.template_name, "base");
  info.state = SL_SANDBOX_RUNNING;
  info.created_at_ms = created;
  info.memory_bytes = 512ULL << 20;
  info.cpus = 0.5;
  info.on_timeout = SL_ON_TIMEOUT_PAUSE;
  snprintf(info.labels, sizeof info.labels, "team=a\nnote=back\\slash\n");
  snprintf(info.cgroups, sizeof info.cgroups, "freezer=/f/sb\npids=/p/sb\n");
  info.exit_status = -1;
  return info;
}

static void format_round_trips(void) {
  sl_sandbox_info info = sample("sb-0123456789ab", 1700000000123), back;
  static char text[65536];
  CHECK(sl_sbstore_format(&info, text, sizeof text) > 0);
  sl_error err = {0};
  CHECK_OK(sl_sbstore_parse(text, &back, &err), &err);
  CHECK_STR(back.id, info.id);
  CHECK_INT(back.backend, ==, SL_BACKEND_PROCESS);
  CHECK_INT(back.state, ==, SL_SANDBOX_RUNNING);
  CHECK_INT(back.created_at_ms, ==, 1700000000123);
  CHECK(back.memory_bytes == 512ULL << 20);
  CHECK(back.cpus == 0.5);
  CHECK_INT(back.on_timeout, ==, SL_ON_TIMEOUT_PAUSE);
  CHECK_STR(back.labels, info.labels);
  CHECK_STR(back.cgroups, info.cgroups);
  CHECK_INT(back.exit_status, ==, -1);
}

static void parse_rejects_bad_values(void) {
  sl_sandbox_info back;
  sl_error err = {0};
  CHECK_INT(sl_sbstore_parse("state=sleeping\n", &back, &err), ==, -EINVAL);
  CHECK_INT(sl_sbstore_parse("init_pid=12a\n", &back, &err), ==, -EINVAL);
  CHECK_INT(sl_sbstore_parse("no separator\n", &back, &err), ==, -EINVAL);
  CHECK_OK(sl_sbstore_parse("future_key=1\nid=sb-0123456789ab\n", &back, &err), &err);
  CHECK_STR(back.id, "sb-0123456789ab");
}

static int mark_frozen(sl_sandbox_info *info, void *data, sl_error *err) {
  (void)data;
  (void)err;
  info->state = SL_SANDBOX_FROZEN;
  return 0;
}

static int refuse(sl_sandbox_info *info, void *data, sl_error *err) {
  (void)data;
  return sl_error_set(err, ESRCH, "sandbox has ended: %s", info->id);
}

static void files_insert_update_list(void) {
  char home[] = "/tmp/sandlot-store-XXXXXX";
  CHECK(mkdtemp(home) != NULL);
  sl_sbstore *store;
  sl_error err = {0};
  CHECK_OK(sl_sbstore_open(home, &store, &err), &err);

  sl_sandbox_info a = sample("sb-00000000000a", 20), b = sample("sb-00000000000b", 10), got;
  CHECK_OK(sl_sbstore_insert(store, &a, &err), &err);
  CHECK_OK(sl_sbstore_insert(store, &b, &err), &err);
  CHECK_INT(sl_sbstore_insert(store, &a, &err), ==, -EEXIST);

  CHECK_OK(sl_sbstore_update(store, a.id, mark_frozen, NULL, &err), &err);
  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK_INT(got.state, ==, SL_SANDBOX_FROZEN);
  CHECK_INT(sl_sbstore_update(store, a.id, refuse, NULL, &err), ==, -ESRCH);
  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK_INT(got.state, ==, SL_SANDBOX_FROZEN);

  sl_sandbox_info *items;
  size_t n;
  CHECK_OK(sl_sbstore_list(store, &items, &n, &err), &err);
  CHECK_INT(n, ==, 2);
  CHECK_STR(items[0].id, b.id); /* oldest first */
  CHECK_STR(items[1].id, a.id);
  free(items);

  CHECK_OK(sl_sbstore_delete(store, b.id, &err), &err);
  CHECK_INT(sl_sbstore_get(store, b.id, &got, &err), ==, -ENOENT);
  CHECK_INT(sl_sbstore_get(store, "../../etc", &got, &err), ==, -ENOENT);
  CHECK_INT(sl_sbstore_update(store, "sb-ffffffffffff", mark_frozen, NULL, &err), ==, -ENOENT);
  sl_sbstore_close(store);
  CHECK_OK(sl_remove_tree(home, &err), &err);
}

static void new_ids_are_valid_and_distinct(void) {
  char a[SL_SANDBOX_ID_MAX], b[SL_SANDBOX_ID_MAX];
  sl_error err = {0};
  CHECK_OK(sl_sbstore_new_id(a, &err), &err);
  CHECK_OK(sl_sbstore_new_id(b, &err), &err);
  CHECK_INT(strlen(a), ==, 15);
  CHECK(strncmp(a, "sb-", 3) == 0);
  CHECK(strcmp(a, b) != 0);
}

int main(void) {
  RUN(format_round_trips);
  RUN(parse_rejects_bad_values);
  RUN(files_insert_update_list);
  RUN(new_ids_are_valid_and_distinct);
  TEST_EXIT();
}
