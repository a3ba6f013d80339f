/* Read-only layers the process backend stacks under a sandbox: the
 * template's root and the agent layer on top. */
#ifndef SANDLOT_PROC_LAYERS_H
#define SANDLOT_PROC_LAYERS_H

#include <stddef.h>

#include "error.h"
#include "template.h"

/* Create the layer <home>/layers/<id> with the agent binary `agent` at
 * .sandlot/agent unless it exists. The id is "ly-" and the first 12 hex
 * digits of the binary's SHA-256, so each agent build gets its own
 * layer. Writes the layer path. */
int sl_agent_layer_prepare(const char *home, const char *agent, char *path, size_t len,
                           sl_error *err);

#endif
