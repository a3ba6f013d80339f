#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

static void stderr_sink(sl_log_level level, const char *line, void *data);

static sl_log_sink current_sink = stderr_sink;
static void *current_data = NULL;
static int current_level = -1; /* -1: not yet read from SANDLOT_LOG */

static void stderr_sink(sl_log_level level, const char *line, void *data) {
  (void)level;
  (void)data;
  fprintf(stderr, "%s\n", line);
}

int sl_log_parse_level(const char *name) {
  if (name == NULL) return -1;
  for (int i = 0; i <= SL_LOG_OFF; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

sl_log_level sl_log_get_level(void) {
  if (current_level < 0) {
    int parsed = sl_log_parse_level(getenv("SANDLOT_LOG"));
    current_level = parsed < 0 ? SL_LOG_WARN : parsed;
  }
  return (sl_log_level)current_level;
}

void sl_log_set_level(sl_log_level level) { current_level = (int)level; }

void sl_log_set_sink(sl_log_sink sink, void *data) {
  current_sink = sink != NULL ? sink : stderr_sink;
  current_data = sink != NULL ? data : NULL;
}

void sl_log(sl_log_level level, const char *event, const char *fmt, ...) {
  if (level < sl_log_get_level() || level >= SL_LOG_OFF) return;

  struct timeval now;
  gettimeofday(&now, NULL);
  struct tm utc;
  gmtime_r(&now.tv_sec, &utc);

  char line[2048];
  int n = snprintf(line, sizeof line,
                   "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s ",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                   utc.tm_min, utc.tm_sec, (long)(now.tv_usec / 1000),
                   level_names[level], event);
  if (n > 0 && (size_t)n < sizeof line) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
  }
  current_sink(level, line, current_data);
}
