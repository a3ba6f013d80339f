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
