/* Internal to lua/: the template progress sink of lsandbox.c, which the
 * core calls from pool threads, for the test binding. */
#ifndef SANDLOT_LSANDBOX_H
#define SANDLOT_LSANDBOX_H

/* Queue one line of template build output for the loop thread, which
 * passes it to the Lua function set by core.on_template_progress() or
 * prints it to stderr. Safe from any thread. */
void sl_lua_progress_line(const char *line, void *data);

#endif
