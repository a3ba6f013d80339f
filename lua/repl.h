#ifndef SANDLOT_REPL_H
#define SANDLOT_REPL_H

#include <lua.h>

/* Run the REPL on stdin until Ctrl-D or the end of input; returns the
 * exit status. */
int sl_repl_run(lua_State *L);

#endif
