/* The Lua modules of lua/sandlot/, compiled into the binary as text by
 * lua/embed.cmake at build time. */
#ifndef SANDLOT_EMBEDDED_H
#define SANDLOT_EMBEDDED_H

#include <stddef.h>

typedef struct {
  const char *name;          /* module name: "sandlot", "sandlot.task" */
  const char *path;          /* source path below lua/: "sandlot/task.lua" */
  const unsigned char *data; /* the source text */
  size_t size;
} sl_embedded_module;

/* Ends with an entry whose name is NULL. */
extern const sl_embedded_module sl_embedded_modules[];

#endif
