/* File requests under --root: `..` and symlinks (absolute or relative)
 * never reach a file outside the root. --root chroots, so this needs root
 * (CAP_SYS_CHROOT). */
#include "agent_harness.h"
#include "error.h"
#include "test.h"

static harness H;
static sl_agent_conn C;
static char root[128];
static char secret[160];

static sl_buf reply;
static sl_frame F;
static sl_error E;

static int file_request(uint8_t type, const char *path, const char *data, int64_t flags) {
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, type, 0);
  sl_frame_put_str(&b, SL_F_PATH, path);
  if (data != NULL) sl_frame_put_str(&b, SL_F_DATA, data);
  if (flags >= 0) sl_frame_put_i64(&b, SL_F_FLAGS, flags);
  sl_frame_end(&b, start, NULL);
  sl_error_clear(&E);
  int rc = sl_agent_conn_call(&C, &b, NULL, NULL, &reply, &F, &E);
  sl_buf_free(&b);
  return rc;
}

static int read_back(const char *path, char *out, size_t size) {
  int rc = file_request(SL_MSG_FILE_READ, path, NULL, -1);
  const uint8_t *data;
  size_t len = 0;
  if (rc == 0 && sl_frame_get_bytes(&F, SL_F_DATA, &data, &len))
    snprintf(out, size, "%.*s", (int)len, (const char *)data);
  return rc;
}

static int host_file_equals(const char *path, const char *text) {
  char buf[64] = "";
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strcmp(buf, text) == 0;
}

/* Every test that writes first checks that the agent resolves "/" to the root,
 * so a broken chroot cannot make it write to the host's own "/". */
#define REQUIRE_CHROOT()                                          \
  do {                                                            \
    char probe_[16] = "";                                         \
    CHECK_OK(read_back("/inside.txt", probe_, sizeof probe_), &E); \
  } while (0)

static void dotdot_stays_inside(void) {
  REQUIRE_CHROOT();
  char got[64] = "";
  CHECK_OK(read_back("/../../../inside.txt", got, sizeof got), &E);
  CHECK_STR(got, "inside");
  CHECK_INT(read_back("/../secret.txt", got, sizeof got), ==, -ENOENT);
  CHECK_INT(read_back("../../secret.txt", got, sizeof got), ==, -ENOENT);
  /* Writing through `..` creates the file inside the root. */
  CHECK_OK(file_request(SL_MSG_FILE_WRITE, "/../../escape.txt", "caught", -1), &E);
  char outside[200], inside[200];
  snprintf(outside, sizeof outside, "%s/escape.txt", H.dir);
  snprintf(inside, sizeof inside, "%s/escape.txt", root);
  CHECK_INT(access(outside, F_OK), ==, -1);
  CHECK(host_file_equals(inside, "caught"));
}

static void absolute_symlink_stays_inside(void) {
  REQUIRE_CHROOT();
  char link[200], got[64] = "";
  snprintf(link, sizeof link, "%s/abs-link", root);
  CHECK_INT(symlink(secret, link), ==, 0); /* a host path, meaningless inside */
  CHECK_INT(read_back("/abs-link", got, sizeof got), ==, -ENOENT);
  CHECK_INT(file_request(SL_MSG_FILE_WRITE, "/abs-link", "overwritten", -1), ==, -ENOENT);
  CHECK(host_file_equals(secret, "secret"));
}

static void relative_symlink_stays_inside(void) {
  REQUIRE_CHROOT();
  char link[200], got[64] = "";
  snprintf(link, sizeof link, "%s/rel-link", root);
  /* Outside a chroot this would name the host's secret. */
  CHECK_INT(symlink("../secret.txt", link), ==, 0);
  CHECK_INT(read_back("/rel-link", got, sizeof got), ==, -ENOENT);
  CHECK_OK(file_request(SL_MSG_FILE_WRITE, "/rel-link", "stays in", -1), &E);
  CHECK(host_file_equals(secret, "secret"));
  char landed[200];
  snprintf(landed, sizeof landed, "%s/secret.txt", root);
  CHECK(host_file_equals(landed, "stays in"));
}

static void symlinked_folder_stays_inside(void) {
  REQUIRE_CHROOT();
  char link[200];
  snprintf(link, sizeof link, "%s/dir-link", root);
  CHECK_INT(symlink(H.dir, link), ==, 0);
  CHECK_INT(file_request(SL_MSG_LIST_DIR, "/dir-link", NULL, -1), ==, -ENOENT);
  CHECK_INT(file_request(SL_MSG_FILE_WRITE, "/dir-link/new.txt", "x", -1), ==, -ENOENT);
  /* Removing the tree that contains the link leaves its target alone. */
  CHECK_OK(file_request(SL_MSG_MKDIR, "/tree", NULL, -1), &E);
  char inner[200];
  snprintf(inner, sizeof inner, "%s/tree/up", root);
  CHECK_INT(symlink("../..", inner), ==, 0);
  CHECK_OK(file_request(SL_MSG_REMOVE, "/tree", NULL, SL_FILE_RECURSIVE), &E);
  CHECK(host_file_equals(secret, "secret"));
  char inside[200];
  snprintf(inside, sizeof inside, "%s/inside.txt", root);
  CHECK(host_file_equals(inside, "inside"));
}

static void rename_cannot_leave_root(void) {
  REQUIRE_CHROOT();
  CHECK_OK(file_request(SL_MSG_FILE_WRITE, "/movable.txt", "m", -1), &E);
  sl_buf b = {0};
  size_t start = sl_frame_begin(&b, SL_MSG_RENAME, 0);
  sl_frame_put_str(&b, SL_F_PATH, "/movable.txt");
  sl_frame_put_str(&b, SL_F_NEW_PATH, "/../../moved.txt");
  sl_frame_end(&b, start, NULL);
  CHECK_OK(sl_agent_conn_call(&C, &b, NULL, NULL, &reply, &F, &E), &E);
  sl_buf_free(&b);
  char outside[200], inside[200];
  snprintf(outside, sizeof outside, "%s/moved.txt", H.dir);
  snprintf(inside, sizeof inside, "%s/moved.txt", root);
  CHECK_INT(access(outside, F_OK), ==, -1);
  CHECK_INT(access(inside, F_OK), ==, 0);
}

static int write_host_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs(text, f);
  return fclose(f);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (geteuid() != 0) SKIP("--root needs root (chroot); run as root");
  /* The harness folder contains the socket, the secret and the root. */
  if (harness_init(&H) < 0) return 1;
  snprintf(root, sizeof root, "%s/root", H.dir);
  snprintf(secret, sizeof secret, "%s/secret.txt", H.dir);
  char inside[200];
  snprintf(inside, sizeof inside, "%s/inside.txt", root);
  if (mkdir(root, 0755) < 0 || write_host_file(secret, "secret") < 0 ||
      write_host_file(inside, "inside") < 0)
    return 1;
  if (harness_launch(&H, (const char *[]){"--root", root, NULL}, -1) < 0) {
    harness_stop(&H);
    return 1;
  }
  sl_error err = {0};
  if (sl_agent_conn_open(&C, H.sock, 10000, 0, &err) < 0) {
    fprintf(stderr, "connect: %s\n", err.msg);
    harness_stop(&H);
    return 1;
  }
  RUN(dotdot_stays_inside);
  RUN(absolute_symlink_stays_inside);
  RUN(relative_symlink_stays_inside);
  RUN(symlinked_folder_stays_inside);
  RUN(rename_cannot_leave_root);
  sl_agent_conn_close(&C);
  sl_buf_free(&reply);
  harness_stop(&H);
  TEST_EXIT();
}
