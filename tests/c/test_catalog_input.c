/* Bad input to every public catalog function: each call fails with EINVAL
 * and a message, and the database is left unchanged. */
#include <errno.h>

#include "test.h"
#include "catalog_fixture.h"

/* Check that `call` fails with EINVAL and a message that contains
 * `needle` ("" accepts any message). */
#define EXPECT_EINVAL(call, needle)                                                   \
  do {                                                                                \
    sl_error_clear(&err);                                                             \
    int expect_rc_ = (call);                                                          \
    if (expect_rc_ != -EINVAL || err.code != EINVAL || err.msg[0] == '\0' ||          \
        strstr(err.msg, (needle)) == NULL) {                                          \
      fprintf(stderr, "%s:%d: %s returned %d (%s: %s), expected EINVAL with \"%s\"\n", \
              __FILE__, __LINE__, #call, expect_rc_, sl_errname(err.code), err.msg,   \
              (needle));                                                              \
      test_failures++;                                                                \
      return;                                                                         \
    }                                                                                 \
  } while (0)

typedef struct {
  fixture fx;
  char sandbox[SL_ID_SIZE];
  char snapshot[SL_ID_SIZE];
  char layer[SL_ID_SIZE];
  char tpl[SL_ID_SIZE];
  int total_changes;
  long long counts[6];
} world;

static const char *const tables[] = {"sandboxes", "snapshots", "layers", "templates",
                                     "template_layers", "snapshot_labels"};

static int open_world(world *w) {
  sl_error err = {0};
  if (fixture_open(&w->fx) < 0) return -1;
  char layers[1][SL_ID_SIZE] = {""};
  int rc = fixture_template(&w->fx, "base", 1, layers, &err);
  if (rc == 0) rc = fixture_sandbox(&w->fx, "base", NULL, w->sandbox, &err);
  if (rc == 0) rc = fixture_snapshot(&w->fx, w->sandbox, "snap", "v1", "{\"a\": \"b\"}",
                                     w->snapshot, &err);
  if (rc == 0) rc = sl_id_new(SL_ID_TEMPLATE, w->tpl, &err);
  if (rc == 0) rc = sl_catalog_template_begin(w->fx.cat, w->tpl, "building", "ab", &err);
  if (rc < 0) {
    fprintf(stderr, "setup: %s\n", err.msg);
    return -1;
  }
  memcpy(w->layer, layers[0], SL_ID_SIZE);
  w->total_changes = sqlite3_total_changes(catalog_db(w->fx.cat));
  for (int i = 0; i < 6; i++) w->counts[i] = fixture_count(&w->fx, tables[i]);
  return 0;
}

/* Nothing was written since open_world(). */
static bool unchanged(world *w) {
  if (sqlite3_total_changes(catalog_db(w->fx.cat)) != w->total_changes) return false;
  for (int i = 0; i < 6; i++)
    if (fixture_count(&w->fx, tables[i]) != w->counts[i]) return false;
  return true;
}

static void enum_names_are_checked(void) {
  sl_error err = {0};
  sl_backend backend;
  sl_sandbox_state state;
  sl_on_timeout action;
  sl_snapshot_kind kind;
  EXPECT_EINVAL(sl_backend_parse(NULL, &backend, &err), "invalid backend: (null)");
  EXPECT_EINVAL(sl_backend_parse("qemu", &backend, &err), "expected one of: process, vm");
  EXPECT_EINVAL(sl_sandbox_state_parse("Running", &state, &err), "\"Running\"");
  EXPECT_EINVAL(sl_sandbox_state_parse("zombie", &state, &err),
                "expected one of: creating, running, frozen, paused, dead");
  EXPECT_EINVAL(sl_sandbox_state_parse("", &state, &err), "invalid sandbox state");
  EXPECT_EINVAL(sl_on_timeout_parse("pause-fs", &action, &err), "pause_fs");
  EXPECT_EINVAL(sl_snapshot_kind_parse("memory", &kind, &err), "full, fs");
  CHECK_OK(sl_sandbox_state_parse("paused", &state, &err), &err);
  CHECK_INT(state, ==, SL_SANDBOX_PAUSED);
  CHECK_OK(sl_on_timeout_parse("pause_fs", &action, &err), &err);
  CHECK_INT(action, ==, SL_ON_TIMEOUT_PAUSE_FS);
  CHECK_STR(sl_sandbox_state_name((sl_sandbox_state)42), "invalid");
  CHECK_STR(sl_backend_name(SL_BACKEND_VM), "vm");
}

static void sandbox_calls_reject_bad_input(void) {
  world w;
  sl_error err = {0};
  CHECK(open_world(&w) == 0);
  sl_catalog *cat = w.fx.cat;
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);

  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, NULL, NULL, &err), "no sandbox spec");
  const char *bad_ids[] = {NULL, "", "sb-1", "sn-0123456789ab", "sb-../../etc/x"};
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    sl_sandbox_spec spec = {.id = bad_ids[i]};
    EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "invalid sandbox id");
  }
  sl_sandbox_spec spec = {.id = id, .backend = (sl_backend)7};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "invalid backend: 7");
  spec = (sl_sandbox_spec){.id = id, .on_timeout = (sl_on_timeout)9};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "invalid timeout action");
  spec = (sl_sandbox_spec){.id = id, .timeout_ms = -1};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "-1 ms");
  spec = (sl_sandbox_spec){.id = id, .template_name = "../base"};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "\"../base\"");
  spec = (sl_sandbox_spec){.id = id, .source_snapshot_id = w.sandbox};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "invalid snapshot id");

  const char *bad_options[] = {"not json", "[1, 2]", "\"text\"", "{\"a\": 1, \"a\": 2}"};
  const char *option_errors[] = {"not JSON", "expected a JSON object", "expected a JSON object",
                                 "duplicate key"};
  for (size_t i = 0; i < 4; i++) {
    spec = (sl_sandbox_spec){.id = id, .options = bad_options[i]};
    EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), option_errors[i]);
  }
  char *huge = malloc(SL_OPTIONS_MAX + 16);
  memset(huge, ' ', SL_OPTIONS_MAX + 15);
  huge[0] = '{';
  huge[SL_OPTIONS_MAX + 14] = '}';
  huge[SL_OPTIONS_MAX + 15] = '\0';
  spec = (sl_sandbox_spec){.id = id, .options = huge};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "longer than 65536 bytes");
  free(huge);

  const char *bad_labels[] = {"{\"a\": 1}", "{\"a b\": \"x\"}", "{\"\": \"x\"}", "[]",
                              "{\"k\": \"v\", \"k\": \"w\"}"};
  const char *label_errors[] = {"value of \"a\" is integer", "key \"a b\"", "key \"\"",
                                "expected a JSON object", "duplicate key \"k\""};
  for (size_t i = 0; i < 5; i++) {
    spec = (sl_sandbox_spec){.id = id, .labels = bad_labels[i]};
    EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), label_errors[i]);
  }
  char many[SL_LABELS_MAX * 16 + 64] = "{";
  for (int i = 0; i <= SL_LABELS_MAX; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"k%d\": \"v\"", i ? ", " : "",
             i);
  strcat(many, "}");
  spec = (sl_sandbox_spec){.id = id, .labels = many};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "more than 64 labels");
  char long_value[SL_LABEL_VALUE_MAX + 32];
  snprintf(long_value, sizeof long_value, "{\"k\": \"%0*d\"}", SL_LABEL_VALUE_MAX + 1, 0);
  spec = (sl_sandbox_spec){.id = id, .labels = long_value};
  EXPECT_EINVAL(sl_catalog_sandbox_insert(cat, &spec, NULL, &err), "longer than 255");

  sl_sandbox row;
  EXPECT_EINVAL(sl_catalog_sandbox_get(cat, NULL, &row, &err), "invalid sandbox id: (null)");
  EXPECT_EINVAL(sl_catalog_sandbox_get(cat, "sb-x/../y", &row, &err), "\"sb-x/../y\"");
  EXPECT_EINVAL(sl_catalog_sandbox_get(cat, w.sandbox, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_sandbox_get(NULL, w.sandbox, &row, &err), "no catalog");
  EXPECT_EINVAL(sl_catalog_sandbox_set_state(cat, "", SL_SANDBOX_DEAD, &err), "invalid sandbox id");
  EXPECT_EINVAL(sl_catalog_sandbox_set_state(cat, w.sandbox, (sl_sandbox_state)99, &err),
                "invalid sandbox state: 99");

  sl_sandbox_process proc = {.init_pid = 1, .init_start_time = 1, .monitor_pid = 1};
  EXPECT_EINVAL(sl_catalog_sandbox_set_running(cat, w.sandbox, NULL, &err), "no process");
  proc.init_pid = 0;
  EXPECT_EINVAL(sl_catalog_sandbox_set_running(cat, w.sandbox, &proc, &err), "init 0");
  proc.init_pid = 1;
  proc.monitor_pid = -5;
  EXPECT_EINVAL(sl_catalog_sandbox_set_running(cat, w.sandbox, &proc, &err), "monitor -5");
  proc.monitor_pid = 1;
  proc.init_start_time = -1;
  EXPECT_EINVAL(sl_catalog_sandbox_set_running(cat, w.sandbox, &proc, &err), "start time");
  proc.init_start_time = 1;
  proc.cgroups = "{\"freezer\": 3}";
  EXPECT_EINVAL(sl_catalog_sandbox_set_running(cat, w.sandbox, &proc, &err), "invalid cgroups");

  EXPECT_EINVAL(sl_catalog_sandbox_set_exited(cat, w.sandbox, 256, 0, &err), "status 256");
  EXPECT_EINVAL(sl_catalog_sandbox_set_exited(cat, w.sandbox, -2, 0, &err), "status -2");
  EXPECT_EINVAL(sl_catalog_sandbox_set_exited(cat, w.sandbox, -1, 65, &err), "signal 65");
  EXPECT_EINVAL(sl_catalog_sandbox_set_exited(cat, w.sandbox, 0, 9, &err), "signal 9");
  EXPECT_EINVAL(sl_catalog_sandbox_set_timeout(cat, w.sandbox, -1, 0, SL_ON_TIMEOUT_KILL, &err),
                "-1 ms");
  EXPECT_EINVAL(sl_catalog_sandbox_set_timeout(cat, w.sandbox, 1, -1, SL_ON_TIMEOUT_KILL, &err),
                "deadline -1");
  EXPECT_EINVAL(sl_catalog_sandbox_set_timeout(cat, w.sandbox, 1, 1, (sl_on_timeout)3, &err),
                "invalid timeout action");
  EXPECT_EINVAL(sl_catalog_sandbox_delete(cat, "sb-", &err), "invalid sandbox id");

  sl_sandbox_page page;
  sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
  EXPECT_EINVAL(sl_catalog_sandbox_list(cat, NULL, &page, &err), "no catalog or query");
  EXPECT_EINVAL(sl_catalog_sandbox_list(cat, &q, NULL, &err), "no output page");
  const int bad_limits[] = {0, -1, 1001};
  for (size_t i = 0; i < 3; i++) {
    q.limit = bad_limits[i];
    EXPECT_EINVAL(sl_catalog_sandbox_list(cat, &q, &page, &err), "expected a whole number from 1 to 1000");
  }
  q.limit = 10;
  q.state = "zombie";
  EXPECT_EINVAL(sl_catalog_sandbox_list(cat, &q, &page, &err), "\"zombie\"");
  q.state = NULL;
  q.cursor = "";
  EXPECT_EINVAL(sl_catalog_sandbox_list(cat, &q, &page, &err), "invalid cursor: empty");
  CHECK(unchanged(&w));
  fixture_close(&w.fx);
}

static void snapshot_calls_reject_bad_input(void) {
  world w;
  sl_error err = {0};
  CHECK(open_world(&w) == 0);
  sl_catalog *cat = w.fx.cat;
  char id[SL_ID_SIZE], layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
  const sl_snapshot_spec good = {.id = id, .source_sandbox_id = w.sandbox, .layer_id = layer,
                                 .layer_path = "/l", .image_dir = "/i"};

  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, NULL, &err), "no snapshot spec");
  sl_snapshot_spec spec = good;
  spec.id = "sn-../x";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid snapshot id");
  spec = good;
  spec.source_sandbox_id = NULL;
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid sandbox id");
  spec = good;
  spec.layer_id = w.sandbox;
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid layer id");
  spec = good;
  spec.tag = "v1";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "a tag needs a name");
  spec.name = "sn-named";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "must not start with an id prefix");
  spec.name = "ok";
  spec.tag = "a:b";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid snapshot tag");
  spec = good;
  spec.kind = (sl_snapshot_kind)5;
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid snapshot kind");
  spec = good;
  spec.layer_path = "relative/layer";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "\"relative/layer\"");
  spec = good;
  spec.image_dir = NULL;
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid image directory");
  spec = good;
  spec.image_dir = "/a\nb";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "control character");
  spec = good;
  spec.expires_at = -1;
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "invalid expiry");
  spec = good;
  spec.labels = "{\"k\": [1]}";
  EXPECT_EINVAL(sl_catalog_snapshot_begin(cat, &spec, &err), "expected a string");

  EXPECT_EINVAL(sl_catalog_snapshot_commit(cat, "x", 1, 1, NULL, &err), "invalid snapshot id");
  EXPECT_EINVAL(sl_catalog_snapshot_commit(cat, w.snapshot, -1, 1, NULL, &err), "invalid sizes");
  EXPECT_EINVAL(sl_catalog_snapshot_commit(cat, w.snapshot, 1, -1, NULL, &err), "layer -1");

  sl_snapshot sn;
  EXPECT_EINVAL(sl_catalog_snapshot_get(cat, w.sandbox, &sn, &err), "invalid snapshot id");
  EXPECT_EINVAL(sl_catalog_snapshot_get(cat, w.snapshot, NULL, &err), "no output");
  const char *bad_refs[] = {NULL, "", "a:b:c", ":tag", "name:", "sb-0123456789ab", "sn-nope",
                            "../x", "a b"};
  for (size_t i = 0; i < sizeof bad_refs / sizeof bad_refs[0]; i++)
    EXPECT_EINVAL(sl_catalog_snapshot_resolve(cat, bad_refs[i], &sn, &err), "invalid");
  char long_ref[SL_NAME_MAX + 8];
  memset(long_ref, 'n', sizeof long_ref - 1);
  long_ref[sizeof long_ref - 1] = '\0';
  EXPECT_EINVAL(sl_catalog_snapshot_resolve(cat, long_ref, &sn, &err), "longer than 64");
  EXPECT_EINVAL(sl_catalog_snapshot_delete(cat, "sn-0123456789aZ", NULL, &err),
                "invalid snapshot id");

  sl_id_list ids;
  EXPECT_EINVAL(sl_catalog_snapshot_expired(cat, 0, 0, &ids, &err), "invalid limit: 0 (expected a whole number from 1 to 1000)");
  EXPECT_EINVAL(sl_catalog_snapshot_expired(cat, 0, 1001, &ids, &err), "invalid limit: 1001 (expected a whole number from 1 to 1000)");
  EXPECT_EINVAL(sl_catalog_snapshot_expired(cat, 0, 1, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_snapshot_pending(cat, 0, 0, &ids, &err), "invalid limit: 0 (expected a whole number from 1 to 1000)");
  EXPECT_EINVAL(sl_catalog_snapshot_pending(cat, 0, 1001, &ids, &err), "invalid limit: 1001 (expected a whole number from 1 to 1000)");

  sl_snapshot_page page;
  sl_snapshot_query q = SL_SNAPSHOT_QUERY_INIT;
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, NULL, &page, &err), "no catalog or query");
  EXPECT_EINVAL(sl_catalog_snapshot_list(NULL, &q, &page, &err), "no catalog or query");
  q.limit = 0;
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid limit: 0 (expected a whole number from 1 to 1000)");
  q.limit = 1001;
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid limit: 1001 (expected a whole number from 1 to 1000)");
  q.limit = 50;
  q.ref = "snap:v1:x";
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid snapshot tag");
  q.ref = NULL;
  q.sandbox_id = w.snapshot;
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid sandbox id");
  q.sandbox_id = NULL;
  const char *bad_labels[] = {"novalue", "=x", "bad key=x", ""};
  for (size_t i = 0; i < 4; i++) {
    q.label = bad_labels[i];
    EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid label filter");
  }
  q.label = NULL;
  q.cursor = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  EXPECT_EINVAL(sl_catalog_snapshot_list(cat, &q, &page, &err), "invalid cursor");
  CHECK_INT(page.count, ==, 0);
  CHECK(page.items == NULL);
  CHECK(unchanged(&w));
  fixture_close(&w.fx);
}

static void layer_and_template_calls_reject_bad_input(void) {
  world w;
  sl_error err = {0};
  CHECK(open_world(&w) == 0);
  sl_catalog *cat = w.fx.cat;
  sl_layer layer;
  sl_layer_list list;
  sl_layer_usage usage;
  EXPECT_EINVAL(sl_catalog_layer_get(cat, w.snapshot, &layer, &err), "invalid layer id");
  EXPECT_EINVAL(sl_catalog_layer_get(cat, w.layer, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_layer_stack(cat, "ly-", &list, &err), "invalid layer id");
  EXPECT_EINVAL(sl_catalog_layer_stack(cat, w.layer, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_layer_usage(cat, NULL, &usage, &err), "invalid layer id");
  EXPECT_EINVAL(sl_catalog_layer_usage(cat, w.layer, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_layer_collect(NULL, NULL, &err), "no catalog");

  char tpl[SL_ID_SIZE], new_layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_TEMPLATE, tpl, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, new_layer, &err), &err);
  EXPECT_EINVAL(sl_catalog_template_begin(cat, w.layer, "t", "ab", &err), "invalid template id");
  EXPECT_EINVAL(sl_catalog_template_begin(cat, tpl, "../t", "ab", &err), "invalid template name");
  EXPECT_EINVAL(sl_catalog_template_begin(cat, tpl, "t", "XYZ", &err), "\"XYZ\"");
  EXPECT_EINVAL(sl_catalog_template_begin(cat, tpl, "t", "", &err), "invalid template spec hash");
  char long_hash[SL_HASH_MAX + 2];
  memset(long_hash, 'a', sizeof long_hash - 1);
  long_hash[sizeof long_hash - 1] = '\0';
  EXPECT_EINVAL(sl_catalog_template_begin(cat, tpl, "t", long_hash, &err), "1..128 hex digits");
  EXPECT_EINVAL(sl_catalog_template_add_layer(cat, "tp-1", new_layer, "/l", 0, &err),
                "invalid template id");
  EXPECT_EINVAL(sl_catalog_template_add_layer(cat, w.tpl, "ly-1", "/l", 0, &err),
                "invalid layer id");
  EXPECT_EINVAL(sl_catalog_template_add_layer(cat, w.tpl, new_layer, "l", 0, &err),
                "invalid layer path");
  EXPECT_EINVAL(sl_catalog_template_add_layer(cat, w.tpl, new_layer, "/l", -4, &err),
                "invalid layer size: -4");
  EXPECT_EINVAL(sl_catalog_template_finish(cat, NULL, NULL, &err), "invalid template id");
  EXPECT_EINVAL(sl_catalog_template_delete(cat, "", NULL, &err), "invalid template id");
  sl_template t;
  sl_template_list tl;
  EXPECT_EINVAL(sl_catalog_template_get(cat, "tp-0123456789ab", &t, &err), "id prefix");
  EXPECT_EINVAL(sl_catalog_template_get(cat, "base", NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_template_list(cat, NULL, &err), "no output");
  EXPECT_EINVAL(sl_catalog_template_list(NULL, &tl, &err), "no catalog");
  CHECK(unchanged(&w));
  fixture_close(&w.fx);
}

/* Failures found inside the transaction (unknown rows, wrong states) also
 * leave the database unchanged. */
static void failed_writes_leave_no_trace(void) {
  world w;
  sl_error err = {0};
  CHECK(open_world(&w) == 0);
  sl_catalog *cat = w.fx.cat;
  char id[SL_ID_SIZE], layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SNAPSHOT, id, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);

  sl_snapshot_spec spec = {.id = id, .source_sandbox_id = w.sandbox, .name = "snap", .tag = "v1",
                           .layer_id = layer, .layer_path = "/l", .image_dir = "/i"};
  CHECK_INT(sl_catalog_snapshot_begin(cat, &spec, &err), ==, -EEXIST);
  spec.tag = "v2";
  spec.layer_id = w.layer;
  CHECK_INT(sl_catalog_snapshot_begin(cat, &spec, &err), ==, -EEXIST);
  sl_sandbox_spec sb = {.id = w.sandbox};
  CHECK_INT(sl_catalog_sandbox_insert(cat, &sb, NULL, &err), ==, -EEXIST);
  CHECK_INT(sl_catalog_sandbox_set_state(cat, w.sandbox, SL_SANDBOX_CREATING, &err), ==, -EINVAL);
  CHECK_INT(sl_catalog_sandbox_delete(cat, w.sandbox, &err), ==, -EBUSY);
  CHECK_INT(sl_catalog_snapshot_delete(cat, "sn-0123456789ab", NULL, &err), ==, -ENOENT);
  CHECK_INT(sl_catalog_template_finish(cat, w.tpl, NULL, &err), ==, -EINVAL);
  CHECK(unchanged(&w));
  fixture_close(&w.fx);
}

int main(void) {
  RUN(enum_names_are_checked);
  RUN(sandbox_calls_reject_bad_input);
  RUN(snapshot_calls_reject_bad_input);
  RUN(layer_and_template_calls_reject_bad_input);
  RUN(failed_writes_leave_no_trace);
  TEST_EXIT();
}
