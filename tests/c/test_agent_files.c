/* File requests of the agent: read, write, list, stat, mkdir, remove,
 * rename, and the errors each one reports. */
#include <sched.h>
#include <sys/mount.h>

#include "agent_harness.h"
#include "error.h"
#include "test.h"

static harness H;
static sl_agent_conn C;

typedef struct request {
  sl_buf b;
  size_t start;
} request;

static request *begin(uint8_t type, const char *path) {
  static request r;
  r.b.len = 0;
  r.start = sl_frame_begin(&r.b, type, 0);
  if (path != NULL) sl_frame_put_str(&r.b, SL_F_PATH, path);
  return &r;
}

static sl_buf reply;
static sl_frame F;
static sl_error E;

/* Finish and send the request; returns the call's result. */
static int call(request *r, void (*on_event)(const sl_frame *, void *), void *data) {
  sl_frame_end(&r->b, r->start, NULL);
  sl_error_clear(&E);
  return sl_agent_conn_call(&C, &r->b, on_event, data, &reply, &F, &E);
}

static const char *in_dir(const char *name) {
  static char paths[4][160];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, sizeof paths[0], "%s/%s", H.dir, name);
  return p;
}

static int write_file(const char *path, const char *text, int64_t flags) {
  request *r = begin(SL_MSG_FILE_WRITE, path);
  sl_frame_put_str(&r->b, SL_F_DATA, text);
  if (flags >= 0) sl_frame_put_i64(&r->b, SL_F_FLAGS, flags);
  return call(r, NULL, NULL);
}

static char *str_field(uint8_t key) {
  char *s = NULL;
  sl_frame_get_str(&F, key, &s, NULL);
  return s;
}

static void write_then_read_chunks(void) {
  const char *path = in_dir("chunks.txt");
  CHECK_OK(write_file(path, "0123456789", -1), &E);
  request *r = begin(SL_MSG_FILE_WRITE, path);
  sl_frame_put_str(&r->b, SL_F_DATA, "abc");
  sl_frame_put_i64(&r->b, SL_F_OFFSET, 4);
  sl_frame_put_i64(&r->b, SL_F_FLAGS, 0);
  CHECK_OK(call(r, NULL, NULL), &E);
  CHECK_OK(write_file(path, "XY", SL_FILE_APPEND), &E);

  r = begin(SL_MSG_FILE_READ, path);
  sl_frame_put_i64(&r->b, SL_F_OFFSET, 2);
  sl_frame_put_i64(&r->b, SL_F_LENGTH, 5);
  CHECK_OK(call(r, NULL, NULL), &E);
  const uint8_t *data;
  size_t len;
  CHECK(sl_frame_get_bytes(&F, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 5);
  CHECK(memcmp(data, "23abc", 5) == 0);
  CHECK_INT(field_i64(&F, SL_F_SIZE, 0), ==, 12);
  CHECK_INT(field_i64(&F, SL_F_EOF, 1), ==, 0);

  r = begin(SL_MSG_FILE_READ, path);
  sl_frame_put_i64(&r->b, SL_F_OFFSET, 7);
  CHECK_OK(call(r, NULL, NULL), &E);
  CHECK(sl_frame_get_bytes(&F, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 5);
  CHECK(memcmp(data, "789XY", 5) == 0);
  CHECK_INT(field_i64(&F, SL_F_EOF, 0), ==, 1);

  r = begin(SL_MSG_FILE_READ, path);
  sl_frame_put_i64(&r->b, SL_F_OFFSET, 100);
  CHECK_OK(call(r, NULL, NULL), &E);
  CHECK(sl_frame_get_bytes(&F, SL_F_DATA, &data, &len));
  CHECK_INT(len, ==, 0);
  CHECK_INT(field_i64(&F, SL_F_EOF, 0), ==, 1);
}

static void write_errors(void) {
  CHECK_INT(write_file(H.dir, "x", -1), ==, -EISDIR);
  CHECK_INT(E.code, ==, EISDIR);
  const char *existing = in_dir("exists.txt");
  CHECK_OK(write_file(existing, "x", -1), &E);
  CHECK_INT(write_file(existing, "y", SL_FILE_EXCL), ==, -EEXIST);
  char expected[200];
  snprintf(expected, sizeof expected, "already exists: %s", existing);
  CHECK_STR(E.msg, expected);
  CHECK_INT(write_file(in_dir("absent/file"), "x", SL_FILE_CREATE), ==, -ENOENT);
  CHECK_INT(write_file(in_dir("never-created"), "x", 0), ==, -ENOENT);
  char under_file[200];
  snprintf(under_file, sizeof under_file, "%s/below", existing);
  CHECK_INT(write_file(under_file, "x", -1), ==, -ENOTDIR);
  /* Parents are made on request. */
  CHECK_OK(write_file(in_dir("made/on/request.txt"), "ok", SL_FILE_CREATE | SL_FILE_PARENTS),
           &E);
  struct stat st;
  CHECK_INT(stat(in_dir("made/on/request.txt"), &st), ==, 0);
  CHECK_INT(write_file("", "x", -1), ==, -EINVAL);
}

static void read_errors(void) {
  request *r = begin(SL_MSG_FILE_READ, H.dir);
  CHECK_INT(call(r, NULL, NULL), ==, -EISDIR);
  char expected[200];
  snprintf(expected, sizeof expected, "is a directory: %s", H.dir);
  CHECK_STR(E.msg, expected);
  r = begin(SL_MSG_FILE_READ, in_dir("missing.txt"));
  CHECK_INT(call(r, NULL, NULL), ==, -ENOENT);
  snprintf(expected, sizeof expected, "no such file: %s", in_dir("missing.txt"));
  CHECK_STR(E.msg, expected);
  r = begin(SL_MSG_FILE_READ, NULL);
  CHECK_INT(call(r, NULL, NULL), ==, -EINVAL);
  CHECK_STR(E.msg, "missing path");
}

static void stat_describes_types(void) {
  const char *file = in_dir("stat.txt");
  CHECK_OK(write_file(file, "12345", -1), &E);
  request *r = begin(SL_MSG_STAT, file);
  CHECK_OK(call(r, NULL, NULL), &E);
  char *type = str_field(SL_F_TYPE);
  CHECK_STR(type, "file");
  free(type);
  CHECK_INT(field_i64(&F, SL_F_SIZE, 0), ==, 5);
  CHECK_INT(field_i64(&F, SL_F_MODE, 0), ==, 0644);
  CHECK_INT(field_i64(&F, SL_F_MTIME_MS, 0), >, 0);

  CHECK_INT(symlink("stat.txt", in_dir("link")), ==, 0);
  r = begin(SL_MSG_STAT, in_dir("link"));
  sl_frame_put_i64(&r->b, SL_F_FLAGS, SL_FILE_NOFOLLOW);
  CHECK_OK(call(r, NULL, NULL), &E);
  type = str_field(SL_F_TYPE);
  char *target = str_field(SL_F_LINK_TARGET);
  CHECK_STR(type, "symlink");
  CHECK_STR(target, "stat.txt");
  free(type);
  free(target);
  r = begin(SL_MSG_STAT, in_dir("link"));
  CHECK_OK(call(r, NULL, NULL), &E);
  type = str_field(SL_F_TYPE);
  CHECK_STR(type, "file");
  free(type);

  r = begin(SL_MSG_STAT, H.dir);
  CHECK_OK(call(r, NULL, NULL), &E);
  type = str_field(SL_F_TYPE);
  CHECK_STR(type, "dir");
  free(type);
  r = begin(SL_MSG_STAT, in_dir("nothing"));
  CHECK_INT(call(r, NULL, NULL), ==, -ENOENT);
}

typedef struct listing {
  int count;
  char names[16][32];
  char types[16][16];
} listing;

static void on_entry(const sl_frame *f, void *data) {
  listing *l = data;
  if (f->type != SL_MSG_ENTRY || l->count >= 16) return;
  char *name = NULL, *type = NULL;
  sl_frame_get_str(f, SL_F_NAME, &name, NULL);
  sl_frame_get_str(f, SL_F_TYPE, &type, NULL);
  snprintf(l->names[l->count], sizeof l->names[0], "%s", name ? name : "");
  snprintf(l->types[l->count], sizeof l->types[0], "%s", type ? type : "");
  l->count++;
  free(name);
  free(type);
}

static const char *type_of(const listing *l, const char *name) {
  for (int i = 0; i < l->count; i++)
    if (strcmp(l->names[i], name) == 0) return l->types[i];
  return NULL;
}

static void list_dir_shows_entries(void) {
  const char *dir = in_dir("listed");
  CHECK_INT(mkdir(dir, 0755), ==, 0);
  char path[200];
  snprintf(path, sizeof path, "%s/a-file", dir);
  CHECK_OK(write_file(path, "x", -1), &E);
  snprintf(path, sizeof path, "%s/a-dir", dir);
  CHECK_INT(mkdir(path, 0700), ==, 0);
  snprintf(path, sizeof path, "%s/a-link", dir);
  CHECK_INT(symlink("/nowhere", path), ==, 0);
  listing l = {0};
  request *r = begin(SL_MSG_LIST_DIR, dir);
  CHECK_OK(call(r, on_entry, &l), &E);
  CHECK_INT(l.count, ==, 3);
  CHECK_INT(field_i64(&F, SL_F_COUNT, 0), ==, 3);
  CHECK_STR(type_of(&l, "a-file"), "file");
  CHECK_STR(type_of(&l, "a-dir"), "dir");
  CHECK_STR(type_of(&l, "a-link"), "symlink");

  snprintf(path, sizeof path, "%s/a-file", dir);
  r = begin(SL_MSG_LIST_DIR, path);
  CHECK_INT(call(r, NULL, NULL), ==, -ENOTDIR);
  r = begin(SL_MSG_LIST_DIR, in_dir("no-such-dir"));
  CHECK_INT(call(r, NULL, NULL), ==, -ENOENT);
}

static int make_dir(const char *path, int parents) {
  request *r = begin(SL_MSG_MKDIR, path);
  if (parents) sl_frame_put_i64(&r->b, SL_F_FLAGS, SL_FILE_PARENTS);
  sl_frame_put_i64(&r->b, SL_F_MODE, 0750);
  return call(r, NULL, NULL);
}

static void mkdir_and_its_errors(void) {
  CHECK_OK(make_dir(in_dir("new"), 0), &E);
  struct stat st;
  CHECK_INT(stat(in_dir("new"), &st), ==, 0);
  CHECK_INT(st.st_mode & 0777, ==, 0750);
  CHECK_INT(make_dir(in_dir("new"), 0), ==, -EEXIST);
  CHECK_INT(make_dir(in_dir("deep/er/still"), 0), ==, -ENOENT);
  CHECK_OK(make_dir(in_dir("deep/er/still"), 1), &E);
  CHECK_OK(make_dir(in_dir("deep/er/still"), 1), &E);
  CHECK_OK(write_file(in_dir("plain"), "x", -1), &E);
  CHECK_INT(make_dir(in_dir("plain/sub"), 0), ==, -ENOTDIR);
  CHECK_INT(make_dir(in_dir("plain"), 1), ==, -ENOTDIR);
}

static int remove_path(const char *path, int recursive) {
  request *r = begin(SL_MSG_REMOVE, path);
  if (recursive) sl_frame_put_i64(&r->b, SL_F_FLAGS, SL_FILE_RECURSIVE);
  return call(r, NULL, NULL);
}

static void remove_files_and_trees(void) {
  CHECK_OK(write_file(in_dir("gone.txt"), "x", -1), &E);
  CHECK_OK(remove_path(in_dir("gone.txt"), 0), &E);
  CHECK_INT(access(in_dir("gone.txt"), F_OK), ==, -1);
  CHECK_INT(remove_path(in_dir("gone.txt"), 0), ==, -ENOENT);

  /* A tree with a symlink to a folder outside it: the link goes, the
   * folder it points at stays. */
  CHECK_OK(make_dir(in_dir("keep"), 0), &E);
  CHECK_OK(write_file(in_dir("keep/precious"), "x", -1), &E);
  CHECK_OK(write_file(in_dir("tree/a/b/file"), "x", SL_FILE_CREATE | SL_FILE_PARENTS), &E);
  CHECK_INT(symlink(in_dir("keep"), in_dir("tree/a/link")), ==, 0);
  CHECK_INT(remove_path(in_dir("tree"), 0), ==, -ENOTEMPTY);
  CHECK_OK(remove_path(in_dir("tree"), 1), &E);
  CHECK_INT(access(in_dir("tree"), F_OK), ==, -1);
  CHECK_INT(access(in_dir("keep/precious"), F_OK), ==, 0);

  CHECK_OK(make_dir(in_dir("empty"), 0), &E);
  CHECK_OK(remove_path(in_dir("empty"), 0), &E);
}

static int rename_path(const char *from, const char *to, int noreplace) {
  request *r = begin(SL_MSG_RENAME, from);
  sl_frame_put_str(&r->b, SL_F_NEW_PATH, to);
  if (noreplace) sl_frame_put_i64(&r->b, SL_F_FLAGS, SL_FILE_NOREPLACE);
  return call(r, NULL, NULL);
}

static void rename_and_its_errors(void) {
  CHECK_OK(write_file(in_dir("from.txt"), "moved", -1), &E);
  CHECK_OK(rename_path(in_dir("from.txt"), in_dir("to.txt"), 0), &E);
  CHECK_INT(access(in_dir("to.txt"), F_OK), ==, 0);
  CHECK_INT(rename_path(in_dir("from.txt"), in_dir("x.txt"), 0), ==, -ENOENT);
  CHECK_OK(write_file(in_dir("other.txt"), "o", -1), &E);
  CHECK_INT(rename_path(in_dir("other.txt"), in_dir("to.txt"), 1), ==, -EEXIST);
  char expected[200];
  snprintf(expected, sizeof expected, "already exists: %s", in_dir("to.txt"));
  CHECK_STR(E.msg, expected);
  CHECK_OK(rename_path(in_dir("other.txt"), in_dir("to.txt"), 0), &E);
  request *r = begin(SL_MSG_RENAME, in_dir("to.txt"));
  CHECK_INT(call(r, NULL, NULL), ==, -EINVAL);
}

static void rename_names_the_missing_folder(void) {
  CHECK_OK(write_file(in_dir("source.txt"), "s", -1), &E);
  CHECK_INT(rename_path(in_dir("source.txt"), in_dir("nodir/x"), 0), ==, -ENOENT);
  char expected[200];
  snprintf(expected, sizeof expected, "no such directory: %s", in_dir("nodir"));
  CHECK_STR(E.msg, expected);
  CHECK_INT(rename_path(in_dir("source.txt"), in_dir("source.txt/x"), 0), ==, -ENOTDIR);
  snprintf(expected, sizeof expected, "not a directory: %s", in_dir("source.txt"));
  CHECK_STR(E.msg, expected);
  CHECK_OK(make_dir(in_dir("outer"), 0), &E);
  CHECK_INT(rename_path(in_dir("outer"), in_dir("outer/inner"), 0), ==, -EINVAL);
  CHECK(strstr(E.msg, "cannot move a directory into itself") != NULL);
  CHECK_INT(access(in_dir("source.txt"), F_OK), ==, 0);
}

/* Mount a tmpfs at DIR/mnt for the mount checks; the test process and the
 * agent share a private mount namespace (see main). */
static int mount_scratch(void) {
  mkdir(in_dir("mounts"), 0755);
  mkdir(in_dir("mounts/mnt"), 0755);
  return mount("sandlot-test", in_dir("mounts/mnt"), "tmpfs", 0, "size=1m");
}

static void rename_across_mounts(void) {
  if (mount_scratch() < 0) {
    printf("SKIPPED: rename across mounts needs mount(2) (root): %s\n", strerror(errno));
    return;
  }
  /* rename(2) alone reports EXDEV for a missing source on another mount. */
  CHECK_INT(rename_path(in_dir("nosuch"), in_dir("mounts/mnt/x"), 0), ==, -ENOENT);
  char expected[300];
  snprintf(expected, sizeof expected, "no such file: %s", in_dir("nosuch"));
  CHECK_STR(E.msg, expected);
  CHECK_OK(write_file(in_dir("here.txt"), "h", -1), &E);
  CHECK_INT(rename_path(in_dir("here.txt"), in_dir("mounts/mnt/x"), 0), ==, -EXDEV);
  CHECK(strstr(E.msg, "cannot rename across mounts") != NULL);
  CHECK_INT(access(in_dir("here.txt"), F_OK), ==, 0);
  umount2(in_dir("mounts/mnt"), MNT_DETACH);
}

static void remove_rejects_mount_points(void) {
  if (mount_scratch() < 0) {
    printf("SKIPPED: removing mount points needs mount(2) (root): %s\n", strerror(errno));
    return;
  }
  CHECK_OK(write_file(in_dir("mounts/mnt/inside"), "i", -1), &E);
  CHECK_OK(write_file(in_dir("mounts/beside"), "b", -1), &E);
  CHECK_INT(remove_path(in_dir("mounts/mnt"), 1), ==, -EBUSY);
  char expected[300];
  snprintf(expected, sizeof expected, "is a mount point: %s", in_dir("mounts/mnt"));
  CHECK_STR(E.msg, expected);
  CHECK_INT(remove_path(in_dir("mounts"), 1), ==, -EBUSY);
  CHECK(strstr(E.msg, "directory contains the mount point") != NULL);
  /* Nothing was deleted, on either side of the mount. */
  CHECK_INT(access(in_dir("mounts/mnt/inside"), F_OK), ==, 0);
  CHECK_INT(access(in_dir("mounts/beside"), F_OK), ==, 0);
  umount2(in_dir("mounts/mnt"), MNT_DETACH);
  CHECK_OK(remove_path(in_dir("mounts"), 1), &E);
}


int main(void) {
  signal(SIGPIPE, SIG_IGN);
  /* A private mount namespace, shared with the agent started below, for
   * the tmpfs of the mount checks; without root the unshare fails and
   * those checks skip. */
  if (unshare(CLONE_NEWNS) == 0) mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  if (harness_start(&H) < 0) return 1;
  sl_error err = {0};
  if (sl_agent_conn_open(&C, H.sock, 10000, 0, &err) < 0) {
    fprintf(stderr, "connect: %s\n", err.msg);
    harness_stop(&H);
    return 1;
  }
  RUN(write_then_read_chunks);
  RUN(write_errors);
  RUN(read_errors);
  RUN(stat_describes_types);
  RUN(list_dir_shows_entries);
  RUN(mkdir_and_its_errors);
  RUN(remove_files_and_trees);
  RUN(rename_and_its_errors);
  RUN(rename_names_the_missing_folder);
  RUN(rename_across_mounts);
  RUN(remove_rejects_mount_points);
  sl_agent_conn_close(&C);
  sl_buf_free(&reply);
  sl_buf_free(&begin(0, NULL)->b);
  harness_stop(&H);
  TEST_EXIT();
}
