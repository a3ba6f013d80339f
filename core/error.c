#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int normalize(int code) { return code > 0 ? code : EIO; }

int sl_error_set(sl_error *err, int code, const char *fmt, ...) {
  code = normalize(code);
  if (err == NULL) return -code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  err->code = code;
  return -code;
}

int sl_error_errno(sl_error *err, int code, const char *fmt, ...) {
  code = normalize(code);
  if (err == NULL) return -code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof err->msg)
    snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(code));
  err->code = code;
  return -code;
}

int sl_error_wrap(sl_error *err, const char *fmt, ...) {
  if (err == NULL) return -EIO;
  if (err->code == 0) err->code = EIO;
  char prefix[SL_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
  va_end(ap);
  if (n < 0) return -err->code;
  size_t plen = strnlen(prefix, sizeof prefix - 2);
  memcpy(prefix + plen, ": ", 3);
  plen += 2;

  /* Shift the old message right and put the prefix in front; the end of an
   * over-long message is cut, never the context. */
  size_t cap = sizeof err->msg - 1;
  if (plen > cap) plen = cap;
  size_t mlen = strnlen(err->msg, cap);
  if (plen + mlen > cap) mlen = cap - plen;
  memmove(err->msg + plen, err->msg, mlen);
  memcpy(err->msg, prefix, plen);
  err->msg[plen + mlen] = '\0';
  return -err->code;
}

int sl_error_wrap_subject(sl_error *err, const char *operation, const char *subject) {
  if (err == NULL) return -EIO;
  int has_subject = subject == NULL || (subject[0] != '\0' && strstr(err->msg, subject) != NULL);
  size_t n = strlen(operation);
  int has_operation = strncmp(err->msg, operation, n) == 0 &&
                      (err->msg[n] == ' ' || err->msg[n] == ':');
  if (has_subject && has_operation) return -err->code;
  if (has_subject) return sl_error_wrap(err, "%s", operation);
  char quoted[SL_SUBJECT_MAX];
  return sl_error_wrap(err, "%s %s", operation, sl_subject(quoted, sizeof quoted, subject));
}

static int plain_byte(unsigned char c) {
  return c >= 0x80 || (c > ' ' && c < 0x7f && c != '"' && c != '\\');
}

/* The escape of byte `c` inside quotes. */
static void escape_byte(unsigned char c, char piece[8]) {
  if (c == ' ' || plain_byte(c)) snprintf(piece, 8, "%c", c);
  else if (c == '\0') snprintf(piece, 8, "\\0");
  else if (c == '\n') snprintf(piece, 8, "\\n");
  else if (c == '\t') snprintf(piece, 8, "\\t");
  else if (c == '\r') snprintf(piece, 8, "\\r");
  else if (c == '"' || c == '\\') snprintf(piece, 8, "\\%c", c);
  else snprintf(piece, 8, "\\x%02x", c);
}

const char *sl_subject_bytes(char *buf, size_t len, const char *s, size_t n) {
  if (len < 8) {
    if (len > 0) buf[0] = '\0';
    return buf;
  }
  int plain = n > 0;
  for (size_t i = 0; plain && i < n; i++) plain = plain_byte((unsigned char)s[i]);
  /* Room for "...", the closing quote and the NUL. */
  size_t limit = len - 5, used = 0;
  if (!plain) buf[used++] = '"';
  for (size_t i = 0; i < n; i++) {
    char piece[8];
    escape_byte((unsigned char)s[i], piece);
    size_t plen = strlen(piece);
    if (used + plen > limit) {
      memcpy(buf + used, "...", 3);
      used += 3;
      break;
    }
    memcpy(buf + used, piece, plen);
    used += plen;
  }
  if (!plain) buf[used++] = '"';
  buf[used] = '\0';
  return buf;
}

const char *sl_subject(char *buf, size_t len, const char *s) {
  return sl_subject_bytes(buf, len, s ? s : "", s ? strlen(s) : 0);
}

void sl_error_clear(sl_error *err) {
  if (err == NULL) return;
  err->code = 0;
  err->msg[0] = '\0';
}

/* The errno values the core and the agent produce, with their names. */
static const struct {
  int code;
  const char *name;
} names[] = {
    {EPERM, "EPERM"},         {ENOENT, "ENOENT"},       {ESRCH, "ESRCH"},
    {EINTR, "EINTR"},         {EIO, "EIO"},             {ENXIO, "ENXIO"},
    {E2BIG, "E2BIG"},         {ENOEXEC, "ENOEXEC"},     {EBADF, "EBADF"},
    {ECHILD, "ECHILD"},       {EAGAIN, "EAGAIN"},       {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},       {EFAULT, "EFAULT"},       {EBUSY, "EBUSY"},
    {EEXIST, "EEXIST"},       {EXDEV, "EXDEV"},         {ENODEV, "ENODEV"},
    {ENOTDIR, "ENOTDIR"},     {EISDIR, "EISDIR"},       {EINVAL, "EINVAL"},
    {ENFILE, "ENFILE"},       {EMFILE, "EMFILE"},       {EFBIG, "EFBIG"},
    {ENOSPC, "ENOSPC"},       {ESPIPE, "ESPIPE"},       {EROFS, "EROFS"},
    {EMLINK, "EMLINK"},       {EPIPE, "EPIPE"},         {ERANGE, "ERANGE"},
    {EDEADLK, "EDEADLK"},     {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOSYS, "ENOSYS"},       {ENOTEMPTY, "ENOTEMPTY"}, {ELOOP, "ELOOP"},
    {ENODATA, "ENODATA"},     {ETIME, "ETIME"},         {EPROTO, "EPROTO"},
    {EBADMSG, "EBADMSG"},     {EOVERFLOW, "EOVERFLOW"}, {EILSEQ, "EILSEQ"},
    {ENOTSOCK, "ENOTSOCK"},   {EMSGSIZE, "EMSGSIZE"},   {ENOTSUP, "ENOTSUP"},
    {EADDRINUSE, "EADDRINUSE"}, {ECONNABORTED, "ECONNABORTED"},
    {ECONNRESET, "ECONNRESET"}, {ENOTCONN, "ENOTCONN"}, {ESHUTDOWN, "ESHUTDOWN"},
    {ETIMEDOUT, "ETIMEDOUT"}, {ECONNREFUSED, "ECONNREFUSED"},
    {EALREADY, "EALREADY"},   {EINPROGRESS, "EINPROGRESS"},
    {ECANCELED, "ECANCELED"}, {EOWNERDEAD, "EOWNERDEAD"},
    {ENOTRECOVERABLE, "ENOTRECOVERABLE"}, {EDQUOT, "EDQUOT"},
};

const char *sl_errname(int code) {
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].code == code) return names[i].name;
  return "EIO";
}

int sl_errcode(const char *name) {
  if (name == NULL) return 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(names[i].name, name) == 0) return names[i].code;
  return 0;
}
