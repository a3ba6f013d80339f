/* Shared between the agent connection binding (lagent.c) and the process
 * handle binding (lprocess.c). Internal to lua/.
 *
 * An agent connection is one sl_agent client for one agent socket. Its C
 * part (lagent) is reference counted. The Lua userdata owns one reference,
 * and every process handle that follows a process through it owns one.
 * So the connection stays open while a process handle needs it, and it
 * closes when the last reference goes. */
#ifndef SANDLOT_LAGENT_H
#define SANDLOT_LAGENT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_client.h"

#define SL_AGENT_MT "sandlot.agent"
#define SL_PROCESS_MT "sandlot.process"

typedef struct lagent {
  sl_agent *client; /* NULL once closed */
  int refs;
  char *path;
  sl_error ended;   /* why agent:shutdown() closed the client; code 0 otherwise */
} lagent;

void lagent_retain(lagent *a);
/* Drop one reference; the last one closes the client and frees `a`. */
void lagent_release(lagent *a);

/* The agent of the userdata at `index`; raises when it is not one or
 * when it was closed. */
lagent *lagent_check(lua_State *L, int index);

/* How a process handle keeps output. */
typedef enum {
  SL_OUTPUT_CAPTURE, /* exec: keep output for the result (sl_capture) */
  SL_OUTPUT_STREAM,  /* spawn: readers consume it */
} sl_output_mode;

/* What an exec (SL_OUTPUT_CAPTURE) keeps, per stream: bit 1 << fd is
 * stdout (1) or stderr (2). */
typedef struct sl_capture {
  size_t limit;     /* bytes kept of each stream for the result; SIZE_MAX:
                       all. Output past it is dropped and the result says
                       so (stdout_truncated). */
  int keep_mask;    /* streams kept for the result */
  int chunk_mask;   /* streams passed to chunk readers (p:_next_chunk), with
                       flow control, so a slow reader holds back the process
                       instead of host memory growing */
  double deadline;  /* seconds after which the waits fail with ETIMEDOUT if
                       no exit arrived (the agent's kill timeout plus a
                       grace period); 0: none */
} sl_capture;

/* Start a process through the agent of the userdata at `agent_index`
 * and suspend until it runs (or failed to start). Returns the new
 * process handle, or the fail tuple. `name` shows in __tostring.
 * `capture` is required for SL_OUTPUT_CAPTURE and ignored otherwise. */
int sl_process_start(lua_State *L, int agent_index, const sl_exec_spec *spec,
                     sl_output_mode mode, const sl_capture *capture, const char *name);

/* Follow process `proc` from the given output offsets; returns its
 * handle at once (STREAM mode). */
int sl_process_attach(lua_State *L, int agent_index, int64_t proc, int64_t pid,
                      uint64_t stdout_offset, uint64_t stderr_offset, const char *name);

#endif
