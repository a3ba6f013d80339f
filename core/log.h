/* Logging for the core: level macros into one replaceable sink.
 *
 * Records are key=value text. The caller writes the fields after the
 * event name, always naming the sandbox and operation it concerns:
 *
 *     SL_INFO("snapshot.done", "sandbox=%s op=%s pause_ms=%.1f", id, op, ms);
 *
 * The sink adds ts= and level= and writes one line. The default sink
 * writes to stderr; its threshold comes from SANDLOT_LOG (debug, info,
 * warn, error, off; default warn). The host may install its own sink. */
#ifndef SANDLOT_LOG_H
#define SANDLOT_LOG_H

typedef enum {
  SL_LOG_DEBUG = 0,
  SL_LOG_INFO = 1,
  SL_LOG_WARN = 2,
  SL_LOG_ERROR = 3,
  SL_LOG_OFF = 4,
} sl_log_level;

/* A sink receives one finished record without a trailing newline. */
typedef void (*sl_log_sink)(sl_log_level level, const char *line, void *data);

void sl_log_set_sink(sl_log_sink sink, void *data);
void sl_log_set_level(sl_log_level level);
sl_log_level sl_log_get_level(void);

/* Parse "debug", "info", "warn", "error" or "off"; returns -1 otherwise. */
int sl_log_parse_level(const char *name);

void sl_log(sl_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SL_LOG_AT(level, event, ...)                                  \
  do {                                                                \
    if ((level) >= sl_log_get_level()) sl_log((level), (event), __VA_ARGS__); \
  } while (0)

#define SL_DEBUG(event, ...) SL_LOG_AT(SL_LOG_DEBUG, event, __VA_ARGS__)
#define SL_INFO(event, ...) SL_LOG_AT(SL_LOG_INFO, event, __VA_ARGS__)
#define SL_WARN(event, ...) SL_LOG_AT(SL_LOG_WARN, event, __VA_ARGS__)
#define SL_ERROR(event, ...) SL_LOG_AT(SL_LOG_ERROR, event, __VA_ARGS__)

#endif
