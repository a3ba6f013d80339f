/* Several processes and threads on one catalog. */
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>

#include "test.h"
#include "catalog_fixture.h"

#define ROWS_PER_WRITER 300

/* Block until the parent closes the write end of `start`. */
static void wait_for_start(int start[2]) {
  char byte;
  close(start[1]);
  while (read(start[0], &byte, 1) < 0 && errno == EINTR) {
  }
}

/* One writer: inserts sandboxes, moves each through a few states and
 * snapshots every tenth. Returns the number of failed calls. */
static int write_rows(const char *db_path, sl_store *store) {
  sl_error err = {0};
  sl_catalog *cat;
  if (sl_catalog_open(db_path, &cat, &err) < 0) {
    fprintf(stderr, "writer open: %s\n", err.msg);
    return 1;
  }
  fixture fx = {.store = *store, .cat = cat};
  int failures = 0;
  for (int i = 0; i < ROWS_PER_WRITER; i++) {
    char sb[SL_ID_SIZE], sn[SL_ID_SIZE];
    int rc = fixture_sandbox(&fx, "base", NULL, sb, &err);
    if (rc == 0) rc = sl_catalog_sandbox_set_state(cat, sb, SL_SANDBOX_FROZEN, &err);
    if (rc == 0) rc = sl_catalog_sandbox_set_state(cat, sb, SL_SANDBOX_RUNNING, &err);
    if (rc == 0 && i % 10 == 0) rc = fixture_snapshot(&fx, sb, "shared", NULL, NULL, sn, &err);
    if (rc < 0) {
      fprintf(stderr, "writer %d row %d: %s: %s\n", (int)getpid(), i, sl_errname(err.code),
              err.msg);
      failures++;
    }
  }
  sl_catalog_close(cat);
  return failures;
}

/* Read pages of sandboxes until the writers are done; returns failures. */
static int read_while_writing(sl_catalog *cat, pid_t writers[2]) {
  sl_error err = {0};
  int failures = 0, done = 0;
  while (done < 2) {
    sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
    q.state = "running";
    sl_sandbox_page page;
    if (sl_catalog_sandbox_list(cat, &q, &page, &err) < 0) {
      fprintf(stderr, "reader: %s: %s\n", sl_errname(err.code), err.msg);
      failures++;
    }
    sl_sandbox_page_free(&page);
    for (int i = 0; i < 2; i++) {
      int status;
      if (writers[i] > 0 && waitpid(writers[i], &status, WNOHANG) == writers[i]) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
        writers[i] = -1;
        done++;
      }
    }
  }
  return failures;
}

static void two_writers_and_a_reader(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  CHECK_OK(fixture_template(&fx, "base", 1, NULL, &err), &err);
  /* No SQLite connection may cross fork(), so the children open their
   * own and the parent reopens after forking. */
  sl_catalog_close(fx.cat);

  int start[2];
  CHECK_INT(pipe(start), ==, 0);
  pid_t writers[2];
  for (int i = 0; i < 2; i++) {
    writers[i] = fork();
    CHECK(writers[i] >= 0);
    if (writers[i] == 0) {
      wait_for_start(start);
      int failures = write_rows(fx.db_path, &fx.store);
      _exit(failures > 100 ? 100 : failures);
    }
  }
  CHECK_OK(sl_catalog_open(fx.db_path, &fx.cat, &err), &err);
  close(start[0]);
  close(start[1]);
  CHECK_INT(read_while_writing(fx.cat, writers), ==, 0);

  CHECK_INT(fixture_count(&fx, "sandboxes"), ==, 2 * ROWS_PER_WRITER);
  CHECK_INT(fixture_count(&fx, "snapshots"), ==, 2 * ROWS_PER_WRITER / 10);
  sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
  q.state = "running";
  q.limit = 1000;
  sl_sandbox_page page;
  CHECK_OK(sl_catalog_sandbox_list(fx.cat, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 2 * ROWS_PER_WRITER);
  sl_sandbox_page_free(&page);
  fixture_close(&fx);
}

static void lock_beyond_timeout_is_ebusy(void) {
  fixture fx;
  sl_error err = {0};
  CHECK(fixture_open(&fx) == 0);
  char existing[SL_ID_SIZE];
  CHECK_OK(fixture_sandbox(&fx, NULL, NULL, existing, &err), &err);

  sqlite3 *holder;
  CHECK_INT(sqlite3_open(fx.db_path, &holder), ==, SQLITE_OK);
  CHECK_INT(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), ==, SQLITE_OK);

  sl_catalog_set_busy_timeout(fx.cat, 100);
  char id[SL_ID_SIZE];
  CHECK_OK(sl_id_new(SL_ID_SANDBOX, id, &err), &err);
  sl_sandbox_spec spec = {.id = id};
  CHECK_INT(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), ==, -EBUSY);
  CHECK(strstr(err.msg, "begin write transaction") != NULL);
  CHECK_INT(sl_catalog_sandbox_set_state(fx.cat, existing, SL_SANDBOX_DEAD, &err), ==, -EBUSY);

  /* Readers do not wait for the writer in WAL mode. */
  sl_sandbox row;
  CHECK_OK(sl_catalog_sandbox_get(fx.cat, existing, &row, &err), &err);
  CHECK_INT(row.state, ==, SL_SANDBOX_RUNNING);
  sl_sandbox_clear(&row);

  CHECK_INT(sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close(holder);
  CHECK_OK(sl_catalog_sandbox_insert(fx.cat, &spec, NULL, &err), &err);
  CHECK_INT(fixture_count(&fx, "sandboxes"), ==, 2);
  fixture_close(&fx);
}

/* Open the catalog at `path` and insert one sandbox; returns 0 or -1. */
static int open_and_insert(const char *path) {
  sl_error err = {0};
  sl_catalog *cat;
  char id[SL_ID_SIZE];
  sl_sandbox_spec spec = {.id = id};
  int rc = sl_catalog_open(path, &cat, &err);
  if (rc == 0) rc = sl_id_new(SL_ID_SANDBOX, id, &err);
  if (rc == 0) rc = sl_catalog_sandbox_insert(cat, &spec, NULL, &err);
  if (rc < 0) fprintf(stderr, "opener: %s: %s\n", sl_errname(err.code), err.msg);
  if (rc == 0) sl_catalog_close(cat);
  return rc < 0 ? -1 : 0;
}

static void new_file_opened_at_once(void) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  CHECK(fixture_make_dir(dir) == 0);
  snprintf(path, sizeof path, "%s/catalog.db", dir);
  int start[2];
  CHECK_INT(pipe(start), ==, 0);
  pid_t children[4];
  for (int i = 0; i < 4; i++) {
    children[i] = fork();
    CHECK(children[i] >= 0);
    if (children[i] == 0) {
      wait_for_start(start);
      _exit(open_and_insert(path) == 0 ? 0 : 1);
    }
  }

  close(start[0]);
  close(start[1]);
  for (int i = 0; i < 4; i++) {
    int status;
    CHECK_INT(waitpid(children[i], &status, 0), ==, children[i]);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), ==, 0);
  }

  sl_error err = {0};
  sl_catalog *cat;
  CHECK_OK(sl_catalog_open(path, &cat, &err), &err);
  sl_sandbox_query q = SL_SANDBOX_QUERY_INIT;
  sl_sandbox_page page;
  CHECK_OK(sl_catalog_sandbox_list(cat, &q, &page, &err), &err);
  CHECK_INT(page.count, ==, 4);
  sl_sandbox_page_free(&page);
  sl_catalog_close(cat);
  fixture_remove_dir(dir);
}

typedef struct {
  fixture *fx;
  int failures;
} thread_arg;

static void *insert_from_thread(void *p) {
  thread_arg *arg = p;
  sl_error err = {0};
  for (int i = 0; i < 100; i++) {
    char sb[SL_ID_SIZE], sn[SL_ID_SIZE];
    int rc = fixture_sandbox(arg->fx, NULL, NULL, sb, &err);
    if (rc == 0) rc = fixture_snapshot(arg->fx, sb, "t", NULL, NULL, sn, &err);
    if (rc < 0) {
      fprintf(stderr, "thread: %s\n", err.msg);
      arg->failures++;
    }
  }
  return NULL;
}

static void threads_share_one_handle(void) {
  fixture fx;
  CHECK(fixture_open(&fx) == 0);
  pthread_t threads[3];
  thread_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (thread_arg){&fx, 0};
    CHECK_INT(pthread_create(&threads[i], NULL, insert_from_thread, &args[i]), ==, 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(threads[i], NULL);
    CHECK_INT(args[i].failures, ==, 0);
  }
  CHECK_INT(fixture_count(&fx, "sandboxes"), ==, 300);
  CHECK_INT(fixture_count(&fx, "snapshots"), ==, 300);
  fixture_close(&fx);
}

int main(void) {
  RUN(two_writers_and_a_reader);
  RUN(lock_beyond_timeout_is_ebusy);
  RUN(new_file_opened_at_once);
  RUN(threads_share_one_handle);
  TEST_EXIT();
}
