#include <errno.h>

#include "test.h"
#include "catalog_fixture.h"

static void template_build_lists_layers(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char id[SL_ID_SIZE], layers[3][SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_TEMPLATE, id, &err), &err);
  CHECK_OK(sl_catalog_template_begin(fx.cat, id, "py", "deadbeef", &err), &err);

  sl_template tpl;
  CHECK_INT(sl_catalog_template_get(fx.cat, "py", &tpl, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "template not found: py");
  CHECK_INT(sl_catalog_template_finish(fx.cat, id, NULL, &err), ==, -EINVAL);
  CHECK(strstr(err.msg, "has no layers") != NULL);

  for (int i = 0; i < 3; i++) {
    CHECK_OK(sl_id_new(SL_ID_LAYER, layers[i], &err), &err);
    CHECK_OK(sl_catalog_template_add_layer(fx.cat, id, layers[i], "/store/layers/x", 10 * i,
                                           &err), &err);
  }
  CHECK_INT(sl_catalog_template_add_layer(fx.cat, id, layers[0], "/x", 0, &err), ==, -EEXIST);
  CHECK_OK(sl_catalog_template_finish(fx.cat, id, &tpl, &err), &err);
  CHECK_STR(tpl.id, id);
  CHECK_STR(tpl.name, "py");
  CHECK_STR(tpl.spec_hash, "deadbeef");
  CHECK_INT(tpl.status, ==, SL_TEMPLATE_READY);
  CHECK_INT(tpl.built_at, >=, tpl.created_at);
  CHECK_INT(tpl.layer_count, ==, 3);
  for (int i = 0; i < 3; i++) CHECK_STR(tpl.layer_ids[i], layers[i]);
  sl_template_clear(&tpl);

  sl_layer_list stack;
  CHECK_OK(sl_catalog_layer_stack(fx.cat, layers[2], &stack, &err), &err);
  CHECK_INT(stack.count, ==, 3);
  CHECK_STR(stack.items[0].id, layers[2]);
  CHECK_STR(stack.items[2].id, layers[0]);
  CHECK_STR(stack.items[0].parent_id, layers[1]);
  CHECK_INT(stack.items[0].owner, ==, SL_LAYER_OWNER_TEMPLATE);
  CHECK_STR(stack.items[0].owner_id, id);
  CHECK_INT(stack.items[0].size_bytes, ==, 20);
  sl_layer_list_free(&stack);

  CHECK_INT(sl_catalog_template_add_layer(fx.cat, id, "ly-0123456789ab", "/x", 0, &err), ==,
            -ENOENT);
  CHECK(strstr(err.msg, "not in progress") != NULL);
  CHECK_INT(sl_catalog_template_finish(fx.cat, id, NULL, &err), ==, -ENOENT);
  fixture_close(&fx);
}

static void one_build_per_name(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char a[SL_ID_SIZE], b[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_TEMPLATE, a, &err), &err);
  CHECK_OK(sl_id_new(SL_ID_TEMPLATE, b, &err), &err);
  CHECK_OK(sl_catalog_template_begin(fx.cat, a, "py", "01", &err), &err);
  CHECK_INT(sl_catalog_template_begin(fx.cat, b, "py", "02", &err), ==, -EBUSY);
  CHECK(strstr(err.msg, "in progress") != NULL);
  CHECK(strstr(err.msg, a) != NULL);
  CHECK_INT(sl_catalog_template_begin(fx.cat, a, "other", "02", &err), ==, -EEXIST);

  /* Deleting the abandoned build frees the name. */
  sl_layer_list removed = {0};
  char layer[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_LAYER, layer, &err), &err);
  CHECK_OK(sl_catalog_template_add_layer(fx.cat, a, layer, "/l", 0, &err), &err);
  CHECK_OK(sl_catalog_template_delete(fx.cat, a, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 1);
  CHECK_STR(removed.items[0].id, layer);
  sl_layer_list_free(&removed);
  CHECK_OK(sl_catalog_template_begin(fx.cat, b, "py", "02", &err), &err);
  CHECK_INT(sl_catalog_template_delete(fx.cat, a, NULL, &err), ==, -ENOENT);
  fixture_close(&fx);
}

static void rebuild_keeps_layers_in_use(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char old_layers[2][SL_ID_SIZE], new_layers[1][SL_ID_SIZE], sb[SL_ID_SIZE], idle[SL_ID_SIZE];
  CHECK_OK(fixture_template(&fx, "base", 2, old_layers, &err), &err);
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, sb, &err), &err);
  CHECK_OK(fixture_template(&fx, "base", 1, new_layers, &err), &err);

  sl_template tpl;
  CHECK_OK(sl_catalog_template_get(fx.cat, "base", &tpl, &err), &err);
  CHECK_INT(tpl.layer_count, ==, 1);
  CHECK_STR(tpl.layer_ids[0], new_layers[0]);
  sl_template_clear(&tpl);

  sl_layer_usage usage;
  CHECK_OK(sl_catalog_layer_usage(fx.cat, old_layers[1], &usage, &err), &err);
  CHECK_INT(usage.templates, ==, 0);
  CHECK_INT(usage.live_sandboxes, ==, 1);
  CHECK_OK(sl_catalog_layer_usage(fx.cat, old_layers[0], &usage, &err), &err);
  CHECK_INT(usage.child_layers, ==, 1);

  /* Sandboxes created now use the new build. */
  CHECK_OK(fixture_sandbox(&fx, "base", NULL, idle, &err), &err);
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, idle, &row, &err), &err);
  CHECK_STR(row.base_layer_id, new_layers[0]);
  sl_sandbox_clear(&row);

  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_layer_collect(fx.cat, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 0);
  CHECK_INT(fixture_count(&fx, "layers"), ==, 3);

  /* Once the old sandbox is dead both old layers go, in one collection. */
  CHECK_OK(sl_catalog_sandbox_set_exited(fx.cat, sb, 0, 0, &err), &err);
  CHECK_OK(sl_catalog_layer_collect(fx.cat, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 2);
  CHECK_STR(removed.items[0].id, old_layers[1]);
  CHECK_STR(removed.items[1].id, old_layers[0]);
  sl_layer_list_free(&removed);
  CHECK_INT(fixture_count(&fx, "layers"), ==, 1);
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, sb, &row, &err), &err);
  CHECK_STR(row.base_layer_id, "");
  sl_sandbox_clear(&row);
  fixture_close(&fx);
}

static void templates_are_listed_by_name(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "zeta", 1, NULL, &err), &err);
  CHECK_OK(fixture_template(&fx, "alpha", 2, NULL, &err), &err);
  char building[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_TEMPLATE, building, &err), &err);
  CHECK_OK(sl_catalog_template_begin(fx.cat, building, "mid", "aa", &err), &err);

  sl_template_list list;
  CHECK_OK(sl_catalog_template_list(fx.cat, &list, &err), &err);
  CHECK_INT(list.count, ==, 2);
  CHECK_STR(list.items[0].name, "alpha");
  CHECK_INT(list.items[0].layer_count, ==, 2);
  CHECK_STR(list.items[1].name, "zeta");
  sl_template_list_free(&list);

  sl_template tpl;
  CHECK_OK(sl_catalog_template_get(fx.cat, "zeta", &tpl, &err), &err);
  sl_layer_list removed = {0};
  CHECK_OK(sl_catalog_template_delete(fx.cat, tpl.id, &removed, &err), &err);
  CHECK_INT(removed.count, ==, 1);
  sl_layer_list_free(&removed);
  sl_template_clear(&tpl);
  CHECK_INT(sl_catalog_template_get(fx.cat, "zeta", &tpl, &err), ==, -ENOENT);
  fixture_close(&fx);
}

static void layer_queries_reject_unknown(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  sl_layer layer;
  sl_layer_list stack;
  sl_layer_usage usage;
  CHECK_INT(sl_catalog_layer_get(fx.cat, "ly-0123456789ab", &layer, &err), ==, -ENOENT);
  CHECK_STR(err.msg, "layer not found: ly-0123456789ab");
  CHECK_INT(sl_catalog_layer_stack(fx.cat, "ly-0123456789ab", &stack, &err), ==, -ENOENT);
  CHECK_INT(stack.count, ==, 0);
  CHECK_INT(sl_catalog_layer_usage(fx.cat, "ly-0123456789ab", &usage, &err), ==, -ENOENT);
  CHECK(!sl_layer_usage_in_use(&usage));
  CHECK(!sl_layer_usage_in_use(NULL));
  fixture_close(&fx);
}

int main(void) {
  RUN(template_build_lists_layers);
  RUN(one_build_per_name);
  RUN(rebuild_keeps_layers_in_use);
  RUN(templates_are_listed_by_name);
  RUN(layer_queries_reject_unknown);
  TEST_EXIT();
}
