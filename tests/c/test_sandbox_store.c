/* Sandbox records on a real catalog in a temporary store, and the JSON
 * helpers behind them. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_flat.h"
#include "run.h"
#include "sandbox_store.h"
#include "test.h"

typedef struct members {
  char text[512];
} members;

static void collect(const char *key, const char *value, int is_string, void *data) {
  members *m = data;
  size_t used = strlen(m->text);
  snprintf(m->text + used, sizeof m->text - used, "%s%s=%s;", is_string ? "s:" : "n:", key, value);
}

static void json_round_trips(void) {
  sl_json_buf b = {0};
  sl_json_add_string(&b, "path", "/a \"quoted\"\\dir\n\x01");
  sl_json_add_integer(&b, "pids", -5);
  sl_json_add_number(&b, "cpus", 0.25);
  const char *text = sl_json_close(&b);
  CHECK(text != NULL);
  CHECK_STR(text, "{\"path\":\"/a \\\"quoted\\\"\\\\dir\\u000a\\u0001\",\"pids\":-5,\"cpus\":0.25}");
  members m = {""};
  CHECK_INT(sl_json_each(text, collect, &m), ==, 0);
  CHECK_STR(m.text, "s:path=/a \"quoted\"\\dir\n\x01;n:pids=-5;n:cpus=0.25;");
  sl_json_free(&b);

  sl_json_buf empty = {0};
  CHECK_STR(sl_json_close(&empty), "{}");
  sl_json_free(&empty);
}

static void json_reads_unicode_escapes(void) {
  members m = {""};
  CHECK_INT(sl_json_each(" { \"k\" : \"\\u00e9\\ud83d\\ude00\\/\" , \"t\":true } ", collect, &m), ==, 0);
  CHECK_STR(m.text, "s:k=\xc3\xa9\xf0\x9f\x98\x80/;n:t=true;");
  CHECK_INT(sl_json_each("{}", collect, &m), ==, 0);
}

static void json_rejects_malformed(void) {
  static const char *const bad[] = {"", "[]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":\"x}",
                                    "{\"a\":{\"b\":1}}", "{a:1}", "{\"a\":\"\\q\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    members m = {""};
    if (sl_json_each(bad[i], collect, &m) != -EINVAL) fprintf(stderr, "case %s\n", bad[i]);
    CHECK_INT(sl_json_each(bad[i], collect, &m), ==, -EINVAL);
  }
  members m = {""};
  CHECK_INT(sl_json_each(NULL, collect, &m), ==, -EINVAL);
}

static void lines_convert_both_ways(void) {
  char *json = sl_json_from_lines("freezer=/f/sandlot/sb-1\npids=/p/sandlot/sb-1\n");
  CHECK(json != NULL);
  CHECK_STR(json, "{\"freezer\":\"/f/sandlot/sb-1\",\"pids\":\"/p/sandlot/sb-1\"}");
  char lines[256];
  CHECK(sl_json_to_lines(json, lines, sizeof lines) > 0);
  CHECK_STR(lines, "freezer=/f/sandlot/sb-1\npids=/p/sandlot/sb-1\n");
  CHECK_INT(sl_json_to_lines(json, lines, 10), ==, -ENOSPC);
  free(json);
  CHECK_INT(sl_json_to_lines(NULL, lines, sizeof lines), ==, 0);
  CHECK_STR(lines, "");
}

/* A ready template "base" whose one layer is an empty folder. */
static int add_template(sl_sbstore *store, const char *home, sl_error *err) {
  char layer[SL_ID_SIZE], build[SL_ID_SIZE], path[256];
  if (sl_id_new(SL_ID_LAYER, layer, err) < 0 || sl_id_new(SL_ID_TEMPLATE, build, err) < 0)
    return -1;
  snprintf(path, sizeof path, "%s/layers/%s", home, layer);
  mkdir(path, 0755);
  sl_catalog *cat = sl_sbstore_catalog(store);
  if (sl_catalog_template_begin(cat, build, "base", "abc123", err) < 0) return -1;
  if (sl_catalog_template_add_layer(cat, build, layer, path, 0, err) < 0) return -1;
  return sl_catalog_template_finish(cat, build, NULL, err);
}

static sl_sandbox_info sample(void) {
  sl_sandbox_info info;
  memset(&info, 0, sizeof info);
  info.backend = SL_BACKEND_PROCESS;
  snprintf(info.template_name, sizeof info.template_name, "base");
  info.memory_bytes = 512ULL << 20;
  info.pids_max = 64;
  info.cpu_shares = 512;
  info.cpus = 0.5;
  info.auto_kill = 1;
  info.timeout_ms = 60000;
  info.on_timeout = SL_ON_TIMEOUT_PAUSE;
  snprintf(info.labels, sizeof info.labels, "team=a\nnote=back\\slash \"q\"\n");
  info.exit_status = -1;
  return info;
}

static void records_follow_the_lifecycle(void) {
  char home[] = "/tmp/sandlot-store-XXXXXX";
  CHECK(mkdtemp(home) != NULL);
  sl_sbstore *store;
  sl_error err = {0};
  CHECK_OK(sl_sbstore_open(home, &store, &err), &err);
  CHECK_OK(add_template(store, home, &err), &err);

  sl_sandbox_info a = sample(), got;
  CHECK_OK(sl_sbstore_new_id(a.id, &err), &err);
  CHECK_OK(sl_sbstore_insert(store, &a, &err), &err);
  CHECK_INT(a.state, ==, SL_SANDBOX_CREATING);
  CHECK(strncmp(a.base_layer_id, "ly-", 3) == 0);
  CHECK(a.deadline_ms > 0);
  CHECK_INT(sl_sbstore_insert(store, &a, &err), ==, -EEXIST);

  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK(got.memory_bytes == 512ULL << 20);
  CHECK_INT(got.pids_max, ==, 64);
  CHECK_INT(got.cpu_shares, ==, 512);
  CHECK(got.cpus == 0.5);
  CHECK_INT(got.auto_kill, ==, 1);
  CHECK_INT(got.on_timeout, ==, SL_ON_TIMEOUT_PAUSE);
  CHECK_STR(got.labels, "team=a\nnote=back\\slash \"q\"\n");
  char root[300];
  snprintf(root, sizeof root, "%s/sandboxes/%s/root", home, a.id);
  CHECK_STR(got.root, root);
  CHECK_STR(got.agent_socket, ""); /* no PID 1 yet */

  CHECK_OK(sl_sbstore_set_running(store, a.id, 1234, 99, 1233, "freezer=/f/x\n", &err), &err);
  CHECK_OK(sl_sbstore_set_state(store, a.id, SL_SANDBOX_FROZEN, &err), &err);
  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK_INT(got.state, ==, SL_SANDBOX_FROZEN);
  CHECK_INT(got.init_pid, ==, 1234);
  CHECK_INT(got.monitor_pid, ==, 1233);
  CHECK_STR(got.cgroups, "freezer=/f/x\n");
  char socket_path[300];
  snprintf(socket_path, sizeof socket_path, "%s/sandboxes/%s/agent.sock", home, a.id);
  CHECK_STR(got.agent_socket, socket_path);

  CHECK_OK(sl_sbstore_set_ended(store, a.id, -1, 9, "timeout", &err), &err);
  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK_INT(got.state, ==, SL_SANDBOX_DEAD);
  CHECK_INT(got.exit_signal, ==, 9);
  CHECK_STR(got.end_reason, "timeout");
  CHECK(got.ended_at_ms >= got.created_at_ms);
  CHECK_INT(sl_sbstore_set_state(store, a.id, SL_SANDBOX_RUNNING, &err), ==, -ESRCH);
  CHECK_INT(sl_sbstore_set_ended(store, a.id, 0, 0, "exited", &err), ==, -ESRCH);
  CHECK_OK(sl_sbstore_get(store, a.id, &got, &err), &err);
  CHECK_STR(got.end_reason, "timeout"); /* the first reason stays */

  sl_sbstore_close(store);
  CHECK_OK(sl_remove_tree(home, &err), &err);
}

static void list_and_delete(void) {
  char home[] = "/tmp/sandlot-store-XXXXXX";
  CHECK(mkdtemp(home) != NULL);
  sl_sbstore *store;
  sl_error err = {0};
  CHECK_OK(sl_sbstore_open(home, &store, &err), &err);
  CHECK_OK(add_template(store, home, &err), &err);
  sl_sandbox_info a = sample(), b = sample(), got;
  CHECK_OK(sl_sbstore_new_id(a.id, &err), &err);
  CHECK_OK(sl_sbstore_insert(store, &a, &err), &err);
  CHECK_OK(sl_sbstore_new_id(b.id, &err), &err);
  CHECK_OK(sl_sbstore_insert(store, &b, &err), &err);

  sl_sandbox_info *items;
  size_t n;
  CHECK_OK(sl_sbstore_list(store, &items, &n, &err), &err);
  CHECK_INT(n, ==, 2);
  CHECK(items[0].created_at_ms <= items[1].created_at_ms); /* oldest first */
  free(items);

  CHECK_OK(sl_sbstore_delete(store, b.id, &err), &err);
  CHECK_INT(sl_sbstore_get(store, b.id, &got, &err), ==, -ENOENT);
  char dir[300];
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, b.id);
  CHECK_INT(access(dir, F_OK), ==, -1);
  CHECK_INT(sl_sbstore_get(store, "../../etc", &got, &err), ==, -ENOENT);
  CHECK_INT(sl_sbstore_get(store, NULL, &got, &err), ==, -ENOENT);

  sl_sandbox_info unknown = sample();
  CHECK_OK(sl_sbstore_new_id(unknown.id, &err), &err);
  snprintf(unknown.template_name, sizeof unknown.template_name, "nope");
  CHECK_INT(sl_sbstore_insert(store, &unknown, &err), ==, -ENOENT);
  snprintf(dir, sizeof dir, "%s/sandboxes/%s", home, unknown.id);
  CHECK_INT(access(dir, F_OK), ==, -1);
  sl_sbstore_close(store);
  CHECK_OK(sl_remove_tree(home, &err), &err);
}

int main(void) {
  RUN(json_round_trips);
  RUN(json_reads_unicode_escapes);
  RUN(json_rejects_malformed);
  RUN(lines_convert_both_ways);
  RUN(records_follow_the_lifecycle);
  RUN(list_and_delete);
  TEST_EXIT();
}
