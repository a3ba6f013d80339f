/* Decoding of CRIU's stats-dump and stats-restore images.
 *
 * Layout (CRIU 4.2.1, images/stats.proto): u32 0x55105940 (service image
 * magic), u32 0x57093306 (stats magic), u32 length, then one protobuf
 * message `stats_entry { optional dump_stats_entry dump = 1; optional
 * restore_stats_entry restore = 2; }`. Integers are little endian. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "criu.h"

#define STATS_MAGIC_SERVICE 0x55105940u
#define STATS_MAGIC 0x57093306u

typedef struct {
  const unsigned char *p;
  const unsigned char *end;
} pb_reader;

static int read_varint(pb_reader *r, uint64_t *value) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return -1;
    unsigned char byte = *r->p++;
    v |= (uint64_t)(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = v;
      return 0;
    }
  }
  return -1;
}

/* Skip one field of wire type `type`; returns -1 on a malformed field. */
static int skip_field(pb_reader *r, unsigned type) {
  uint64_t v;
  switch (type) {
    case 0: return read_varint(r, &v);
    case 1:
      if (r->end - r->p < 8) return -1;
      r->p += 8;
      return 0;
    case 2:
      if (read_varint(r, &v) < 0 || v > (uint64_t)(r->end - r->p)) return -1;
      r->p += v;
      return 0;
    case 5:
      if (r->end - r->p < 4) return -1;
      r->p += 4;
      return 0;
  }
  return -1;
}

static void set_dump_field(sl_criu_stats *s, uint64_t field, uint64_t v) {
  switch (field) {
    case 1: s->freezing_time_us = (uint32_t)v; break;
    case 2: s->frozen_time_us = (uint32_t)v; break;
    case 3: s->memdump_time_us = (uint32_t)v; break;
    case 4: s->memwrite_time_us = (uint32_t)v; break;
    case 5: s->pages_scanned = v; break;
    case 7: s->pages_written = v; break;
    case 9: s->pages_lazy = v; break;
  }
}

static void set_restore_field(sl_criu_stats *s, uint64_t field, uint64_t v) {
  switch (field) {
    case 3: s->forking_time_us = (uint32_t)v; break;
    case 4: s->restore_time_us = (uint32_t)v; break;
    case 5: s->pages_restored = v; break;
  }
}

/* Decode a dump_stats_entry or restore_stats_entry, whose fields are all
 * varints. */
static int parse_entry(pb_reader r, sl_criu_stats *s, bool dump) {
  while (r.p < r.end) {
    uint64_t key, v;
    if (read_varint(&r, &key) < 0) return -1;
    if ((key & 7) != 0) {
      if (skip_field(&r, (unsigned)(key & 7)) < 0) return -1;
      continue;
    }
    if (read_varint(&r, &v) < 0) return -1;
    if (dump)
      set_dump_field(s, key >> 3, v);
    else
      set_restore_field(s, key >> 3, v);
  }
  return 0;
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int sl_criu_parse_stats(const unsigned char *data, size_t size, sl_criu_stats *stats,
                        sl_error *err) {
  memset(stats, 0, sizeof *stats);
  if (size < 12 || le32(data) != STATS_MAGIC_SERVICE || le32(data + 4) != STATS_MAGIC)
    return sl_error_set(err, EINVAL, "not a CRIU stats image (%zu bytes, bad magic)", size);
  uint32_t length = le32(data + 8);
  if (length > size - 12)
    return sl_error_set(err, EINVAL, "truncated CRIU stats image: entry of %u bytes, %zu left",
                        length, size - 12);

  pb_reader r = {data + 12, data + 12 + length};
  while (r.p < r.end) {
    uint64_t key, len;
    if (read_varint(&r, &key) < 0) break;
    unsigned field = (unsigned)(key >> 3);
    if ((key & 7) != 2 || (field != 1 && field != 2)) {
      if (skip_field(&r, (unsigned)(key & 7)) < 0) break;
      continue;
    }
    if (read_varint(&r, &len) < 0 || len > (uint64_t)(r.end - r.p)) break;
    pb_reader entry = {r.p, r.p + len};
    r.p += len;
    if (parse_entry(entry, stats, field == 1) < 0) break;
    if (field == 1) stats->has_dump = true;
    if (field == 2) stats->has_restore = true;
  }
  if (r.p != r.end) return sl_error_set(err, EINVAL, "malformed CRIU stats entry");
  return 0;
}

int sl_criu_read_stats(const char *path, sl_criu_stats *stats, sl_error *err) {
  unsigned char buf[512];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sl_error_errno(err, errno, "cannot open CRIU stats %s", path);
  ssize_t n = read(fd, buf, sizeof buf);
  int saved = errno;
  close(fd);
  if (n < 0) return sl_error_errno(err, saved, "cannot read CRIU stats %s", path);
  int rc = sl_criu_parse_stats(buf, (size_t)n, stats, err);
  if (rc < 0) return sl_error_wrap(err, "%s", path);
  return 0;
}
