/* The error contract of the C core.
 *
 * Every fallible function takes a `sl_error *err` as its last argument,
 * returns a negative errno (`-code`) on failure and fills `err`. Callers
 * that pass the failure up add context with sl_error_wrap(), so a message
 * reads from the outermost operation inward:
 *
 *     "snapshot sb-1a2b: criu dump failed: exit status 1"
 *
 * Each layer adds only what the message lacks: its operation, and the
 * subject (an id, a path) only when no inner layer named it already
 * (sl_error_wrap_subject). A subject that may be empty or contain spaces
 * or control bytes is written with sl_subject().
 *
 * `err` may be NULL when the caller only needs the return value. */
#ifndef SANDLOT_ERROR_H
#define SANDLOT_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define SL_ERROR_MSG_MAX 1024

typedef struct sl_error {
  int code;                   /* positive errno value, 0 when no error */
  char msg[SL_ERROR_MSG_MAX]; /* "message: subject", without the errno name */
} sl_error;

/* Set `err` to (code, formatted message). Returns -code so that callers can
 * write `return sl_error_set(err, ENOENT, "sandbox not found: %s", id);`.
 * A code <= 0 is treated as EIO. */
int sl_error_set(sl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like sl_error_set() with the text of strerror(code) appended after ": ". */
int sl_error_errno(sl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend "context: " to the message in `err`, keeping its code. Returns
 * -err->code (or -EIO when `err` holds no error). */
int sl_error_wrap(sl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend "OPERATION: " when the message already contains `subject`, else
 * "OPERATION SUBJECT: " with the subject as sl_subject() writes it, so the subject
 * appears once. A message that contains the subject and starts with the
 * operation ("snapshot of sb-1: ...") stays as it is, so the operation
 * appears once too. Returns -err->code like sl_error_wrap(). */
int sl_error_wrap_subject(sl_error *err, const char *operation, const char *subject);

void sl_error_clear(sl_error *err);

/* A buffer size for sl_subject(); longer subjects are cut. */
#define SL_SUBJECT_MAX 512

/* Write `s` for a message: as it is when it is not empty and has only
 * printable ASCII other than space, '"' and '\\' (bytes >= 0x80 pass too,
 * for UTF-8); otherwise in double quotes with C escapes (\n, \t, \0,
 * \xHH). A result that does not fit in `len` bytes is cut and ends in
 * "...". Returns `buf`. */
const char *sl_subject(char *buf, size_t len, const char *s);

/* sl_subject() for `n` bytes that may contain NUL bytes. */
const char *sl_subject_bytes(char *buf, size_t len, const char *s, size_t n);

/* Symbolic name of an errno value ("ENOENT"), or "EIO" for unknown codes. */
const char *sl_errname(int code);

/* Inverse of sl_errname(): the errno for "ENOENT", or 0 when unknown. */
int sl_errcode(const char *name);

#endif
