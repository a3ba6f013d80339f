/* The agent protocol: frames, fields and an incremental parser.
 *
 * Compiled into both the host core and the in-sandbox agent, so it uses
 * only libc. Wire format (all integers little endian):
 *
 *     frame: u32 length | u8 type | u32 request id | fields
 *     field: u8 key | u32 length | bytes          (i64 fields: 8 bytes)
 *
 * `length` counts the bytes after the length field, at least 5 and at most
 * SL_PROTO_MAX_FRAME. A key may repeat (string lists such as argv). The
 * message types, their fields and the sync marker used on byte streams
 * are described in docs/ARCHITECTURE.md, "Agent protocol". */
#ifndef SANDLOT_PROTO_H
#define SANDLOT_PROTO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "strv.h"

#define SL_PROTO_VERSION 1
/* Maximum value of a frame's length field. */
#define SL_PROTO_MAX_FRAME (4u << 20)
/* Maximum payload of one file read or write request; larger transfers are
 * split into chunks of at most this size. */
#define SL_PROTO_CHUNK (1u << 20)
/* The signal that ends an agent's quiesce: the host sends it to the
 * agent's pid once the dump is over, and to a tree restored from a dump,
 * whose agent is still quiesced. */
#define SL_QUIESCE_END_SIGNAL SIGUSR1
/* Bytes before the fields: length, type and request id. */
#define SL_PROTO_HEADER 9u
/* Sync marker: a zero length field followed by these 8 bytes and a 16-byte
 * nonce chosen by the host. A zero length is never a valid frame, so the
 * marker cannot be mistaken for one at a frame boundary. */
#define SL_PROTO_SYNC_MAGIC "SLSYNC\r\n"
#define SL_PROTO_SYNC_NONCE 16u
#define SL_PROTO_SYNC_SIZE (4u + 8u + SL_PROTO_SYNC_NONCE)

/* Message types. Requests are below 0x80. Types 0x80-0x8f end a request
 * (exactly one per request, except for ACK, which has no reply); types
 * 0x90-0x9f are events that precede the end. */
enum sl_msg_type {
  SL_MSG_SYNC = 0x00, /* pseudo type that sl_parser_next() reports for a marker */

  SL_MSG_HELLO = 0x01,
  SL_MSG_PING = 0x02,
  SL_MSG_QUIESCE = 0x03,

  SL_MSG_EXEC = 0x10,
  SL_MSG_ATTACH = 0x11,
  SL_MSG_ACK = 0x12,
  SL_MSG_READ = 0x13,
  SL_MSG_WRITE_STDIN = 0x14,
  SL_MSG_CLOSE_STDIN = 0x15,
  SL_MSG_SIGNAL = 0x16,
  SL_MSG_WAIT = 0x17,
  SL_MSG_LIST = 0x18,
  SL_MSG_RELEASE = 0x19,
  SL_MSG_DETACH = 0x1a,

  SL_MSG_FILE_READ = 0x20,
  SL_MSG_FILE_WRITE = 0x21,
  SL_MSG_LIST_DIR = 0x22,
  SL_MSG_STAT = 0x23,
  SL_MSG_MKDIR = 0x24,
  SL_MSG_REMOVE = 0x25,
  SL_MSG_RENAME = 0x26,

  SL_MSG_SET_HOSTNAME = 0x30,
  SL_MSG_ADD_ENTROPY = 0x31,

  SL_MSG_OK = 0x80,
  SL_MSG_ERROR = 0x81,
  SL_MSG_EXIT = 0x82,

  SL_MSG_STARTED = 0x90,
  SL_MSG_OUTPUT = 0x91,
  SL_MSG_ENTRY = 0x92,
  SL_MSG_PROCESS = 0x93,

  /* Messages about the connection, with request id 0. */
  SL_MSG_CLOSING = 0xa0, /* count: request frames read; no more are read */
};

/* Field keys. The type of each is fixed: i64, string (UTF-8 or any bytes
 * without NUL) or bytes. */
enum sl_field_key {
  SL_F_VERSION = 1,        /* i64: protocol version */
  SL_F_AGENT_VERSION = 2,  /* string */
  SL_F_PID = 3,            /* i64: kernel pid inside the sandbox */
  SL_F_UPTIME_MS = 4,      /* i64 */
  SL_F_CODE = 5,           /* string: errno name, "ENOENT" */
  SL_F_MESSAGE = 6,        /* string: "no such file: /work/x" */
  SL_F_PROC = 7,           /* i64: process id assigned by the agent */
  SL_F_ARGV = 8,           /* string, repeated */
  SL_F_COMMAND = 9,        /* string run by /bin/sh -c */
  SL_F_ENV = 10,           /* string "NAME=value", repeated */
  SL_F_CWD = 11,           /* string */
  SL_F_STDIN = 12,         /* bytes written to stdin at start */
  SL_F_STDIN_OPEN = 13,    /* i64 0/1: keep stdin open for WRITE_STDIN */
  SL_F_TIMEOUT_MS = 14,    /* i64 */
  SL_F_STREAM = 15,        /* i64 0/1 */
  SL_F_BUFFER_SIZE = 16,   /* i64: bytes per output stream */
  SL_F_FD = 17,            /* i64: 1 stdout, 2 stderr */
  SL_F_OFFSET = 18,        /* i64: absolute stream or file offset */
  SL_F_DATA = 19,          /* bytes */
  SL_F_LENGTH = 20,        /* i64 */
  SL_F_EOF = 21,           /* i64 0/1 */
  SL_F_EXIT_CODE = 22,     /* i64, present when the process exited */
  SL_F_SIGNAL = 23,        /* i64, signal number */
  SL_F_TIMED_OUT = 24,     /* i64 0/1 */
  SL_F_STATE = 25,         /* string: "running" or "exited" */
  SL_F_START_TIME_MS = 26, /* i64: Unix time in ms */
  SL_F_STDOUT_OFFSET = 27, /* i64 */
  SL_F_STDERR_OFFSET = 28, /* i64 */
  SL_F_PATH = 29,          /* string */
  SL_F_NEW_PATH = 30,      /* string: rename target */
  SL_F_MODE = 31,          /* i64: permission bits */
  SL_F_FLAGS = 32,         /* i64: SL_FILE_* bits */
  SL_F_NAME = 33,          /* string: entry name, hostname */
  SL_F_TYPE = 34,          /* string: "file", "dir", "symlink", "other" */
  SL_F_SIZE = 35,          /* i64 */
  SL_F_MTIME_MS = 36,      /* i64: Unix time in ms */
  SL_F_LINK_TARGET = 37,   /* string */
  SL_F_CREDITED = 38,      /* i64 0/1: entropy was credited */
  SL_F_COUNT = 39,         /* i64 */
  SL_F_MAX_FRAME = 40,     /* i64 */
  SL_F_STDOUT_START = 41,  /* i64: oldest stdout offset the agent still keeps */
  SL_F_STDERR_START = 42,  /* i64: oldest stderr offset the agent still keeps */
};

/* Bits of SL_F_FLAGS. */
enum {
  SL_FILE_CREATE = 1 << 0,    /* write: create the file when missing */
  SL_FILE_TRUNCATE = 1 << 1,  /* write: truncate before writing */
  SL_FILE_APPEND = 1 << 2,    /* write: append (ignores OFFSET) */
  SL_FILE_EXCL = 1 << 3,      /* write: fail with EEXIST when it exists */
  SL_FILE_PARENTS = 1 << 4,   /* write, mkdir: create missing parent folders */
  SL_FILE_RECURSIVE = 1 << 5, /* remove: folders with their contents */
  SL_FILE_NOFOLLOW = 1 << 6,  /* stat: describe a symlink itself */
  SL_FILE_NOREPLACE = 1 << 7, /* rename: fail with EEXIST when the target exists */
};

/* True for the message types that end a request. */
static inline int sl_msg_is_final(uint8_t type) { return type >= 0x80 && type <= 0x8f; }

/* Name of a message type ("exec"), or "unknown". */
const char *sl_msg_name(uint8_t type);

/* ---- Building frames ---------------------------------------------------- */

/* A growable byte buffer. Allocation failures are sticky: the buffer stops
 * growing, `failed` is set and sl_frame_end() reports ENOMEM. */
typedef struct sl_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int failed;
} sl_buf;

void sl_buf_free(sl_buf *b);
void sl_buf_append(sl_buf *b, const void *bytes, size_t len);
/* Drop the first n bytes. */
void sl_buf_consume(sl_buf *b, size_t n);

/* Start a frame at the end of `b` and return its start offset, to be passed
 * to sl_frame_end(). Several frames may be built into one buffer. */
size_t sl_frame_begin(sl_buf *b, uint8_t type, uint32_t id);
void sl_frame_put_bytes(sl_buf *b, uint8_t key, const void *bytes, size_t len);
void sl_frame_put_str(sl_buf *b, uint8_t key, const char *s);
void sl_frame_put_i64(sl_buf *b, uint8_t key, int64_t v);
/* One field per element of a NULL-terminated list. */
void sl_frame_put_strv(sl_buf *b, uint8_t key, const char *const *v);
/* Write the length of the frame started at `start`. Fails with ENOMEM or,
 * when the frame exceeds SL_PROTO_MAX_FRAME, with EMSGSIZE; on failure the
 * frame is removed from `b`. */
int sl_frame_end(sl_buf *b, size_t start, sl_error *err);
/* Overwrite the request id of the frame that starts at `frame`. */
void sl_frame_set_id(uint8_t *frame, uint32_t id);

/* Append a sync marker with the given nonce. */
void sl_proto_put_sync(sl_buf *b, const uint8_t nonce[SL_PROTO_SYNC_NONCE]);

/* ---- Reading frames ----------------------------------------------------- */

/* A parsed frame. `body` points at the fields inside the parser's buffer
 * (or the caller's bytes) and stays valid until the next call that feeds
 * or advances the parser. For SL_MSG_SYNC, `body` is the nonce. */
typedef struct sl_frame {
  uint8_t type;
  uint32_t id;
  const uint8_t *body;
  size_t body_len;
} sl_frame;

typedef struct sl_field {
  uint8_t key;
  uint32_t len;
  const uint8_t *data;
} sl_field;

/* Parse one complete frame in `bytes` (length field included). Returns the
 * number of bytes it took, 0 when `bytes` contains less than a frame, or
 * -EPROTO for malformed input. Sync markers are reported as SL_MSG_SYNC. */
long sl_frame_parse(const uint8_t *bytes, size_t len, size_t max_frame, sl_frame *out,
                    sl_error *err);

/* Iterate over fields: start with *pos = 0. Returns 1 and fills `out`, or 0
 * at the end. The layout was checked when the frame was parsed. */
int sl_frame_next_field(const sl_frame *f, size_t *pos, sl_field *out);

/* Accessors return 1 when the field is present, 0 when it is absent and
 * -EPROTO when it has the wrong size or contains a NUL (strings). The last
 * occurrence of a repeated key wins. */
int sl_frame_get_i64(const sl_frame *f, uint8_t key, int64_t *out, sl_error *err);
int sl_frame_get_bytes(const sl_frame *f, uint8_t key, const uint8_t **data, size_t *len);
/* `*out` is a malloc'd NUL-terminated copy that the caller frees. */
int sl_frame_get_str(const sl_frame *f, uint8_t key, char **out, sl_error *err);
/* Every occurrence of `key` as a malloc'd NULL-terminated array of malloc'd
 * strings (free with sl_strv_free); `*count` may be NULL. Returns the number
 * of strings (0 with an empty array when absent) or -EPROTO / -ENOMEM. */
int sl_frame_get_strv(const sl_frame *f, uint8_t key, char ***out, size_t *count,
                      sl_error *err);

/* Incremental parser for a byte stream. Bytes go in through sl_parser_feed()
 * or, without a copy, through sl_parser_space() + sl_parser_commit(). */
typedef struct sl_parser {
  uint8_t *buf;
  size_t start; /* first unparsed byte */
  size_t end;   /* end of received bytes */
  size_t cap;
  size_t max_frame;
  int scanning; /* discarding bytes until a sync marker */
  int failed;   /* malformed input seen; cleared by reset or resync */
} sl_parser;

void sl_parser_init(sl_parser *p, size_t max_frame);
void sl_parser_free(sl_parser *p);
/* Drop all buffered bytes (a new session starts). */
void sl_parser_reset(sl_parser *p);
/* Discard bytes until the next sync marker; used on byte streams after
 * malformed input, where the connection cannot be dropped. */
void sl_parser_resync(sl_parser *p);
int sl_parser_feed(sl_parser *p, const void *bytes, size_t len, sl_error *err);
/* Return a pointer to at least `want` writable bytes at the end of the
 * buffer, or NULL on ENOMEM; then sl_parser_commit() what was written. */
uint8_t *sl_parser_space(sl_parser *p, size_t want);
void sl_parser_commit(sl_parser *p, size_t n);
/* Returns 1 with the next frame, 0 when more bytes are needed, -EPROTO on
 * malformed input (the parser then stays failed until reset or resync). */
int sl_parser_next(sl_parser *p, sl_frame *out, sl_error *err);

#endif
