/* The sandlot program: parses the command line and runs one command.
 * A command is one entry in `commands`; its function parses its own
 * arguments (argv[0] is the command name) and returns the exit status. */
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "host.h"
#include "repl.h"
#include "sandlot_config.h"

typedef struct {
  const char *name;
  const char *args;
  const char *summary;
  int (*run)(int argc, char **argv); /* NULL: a help line of the verb above */
} command;

static int cmd_run(int argc, char **argv);
static int cmd_repl(int argc, char **argv);
static int cmd_sandbox_verb(int argc, char **argv);

static const command commands[] = {
    {"run", "FILE [ARGS...]", "Run the Lua script FILE (- for stdin) as the main task.", cmd_run},
    {"repl", "", "Start the interactive REPL (also the default with no arguments).", cmd_repl},
    {"ls", "[-a]", "List sandboxes: id, state, template, age (-a: ended ones too).",
     cmd_sandbox_verb},
    {"kill", "ID...", "Kill sandboxes and release their mounts and cgroups.", cmd_sandbox_verb},
    {"rm", "[-f] ID...", "Delete the records of ended sandboxes (-f: kill live ones first).",
     cmd_sandbox_verb},
    {"gc", "[-a]", "Clean up after crashes; delete records ended over a day ago (-a: all).",
     cmd_sandbox_verb},
    {"snapshots", "[-s ID] [-n NAME]", "List snapshots, newest first, by sandbox or name.",
     cmd_sandbox_verb},
    {"snapshots rm", "REF...", "Delete snapshots by id, NAME:TAG or NAME; their forks keep running.",
     NULL},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out) {
  fprintf(out, "usage: sandlot COMMAND [ARGS...]\n"
               "       sandlot -e CHUNK [ARGS...]\n"
               "       sandlot [repl]\n\n"
               "Commands:\n");
  for (size_t i = 0; i < COMMAND_COUNT; i++) {
    char head[64];
    snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
    fprintf(out, "  %-28s %s\n", head, commands[i].summary);
  }
  fprintf(out,
          "\nOptions:\n"
          "  -e CHUNK               Run the Lua code CHUNK as the main task.\n"
          "  -h, --help             Print this help and exit.\n"
          "  -V, --version          Print the version and exit.\n"
          "\nScripts run as tasks on one event loop: `arg` holds the script name at\n"
          "arg[0] and ARGS from arg[1]; `...` holds ARGS too. The program exits when\n"
          "the main task and every task it spawned have ended.\n"
          "\nEnvironment:\n"
          "  SANDLOT_HOME           Store of sandboxes (default: /var/lib/sandlot for root,\n"
          "                         else $XDG_DATA_HOME/sandlot or ~/.local/share/sandlot).\n"
          "  SANDLOT_TEMPLATE_CACHE Machine-wide cache of built templates (default:\n"
          "                         /var/cache/sandlot).\n"
          "  SANDLOT_VM_CACHE       Guest kernel, initramfs and disk images of VM\n"
          "                         sandboxes (default: $SANDLOT_HOME/vm).\n"
          "  SANDLOT_VM_RAM_DIR     Directory of the live RAM files of VMs (default: /dev/shm).\n"
          "  SANDLOT_VM_ACCEL       VM accelerator, kvm or tcg (default: kvm when usable).\n"
          "  SANDLOT_LOG            Log level: debug, info, warn (default), error, off.\n"
          "  SANDLOT_HISTORY        REPL history file (default: ~/.sandlot_history; empty\n"
          "                         for none).\n"
          "  UV_THREADPOOL_SIZE     Threads for blocking work (default: %s).\n"
          "\nFailures print as \"ENAME: message: subject\" (ENOENT, EINVAL, ...).\n"
          "\nExit status: 0 on success, 1 when the main script raised, failed to load\n"
          "or returned nil and a message, or when a piped REPL chunk failed; 2 on a\n"
          "usage error; 130 when SIGINT cancelled the tasks.\n",
          SL_THREADPOOL_SIZE);
}

static int usage_error(const char *fmt, const char *detail) {
  fprintf(stderr, "sandlot: ");
  fprintf(stderr, fmt, detail);
  fprintf(stderr, "\nRun 'sandlot --help' for usage.\n");
  return SL_EXIT_USAGE;
}

/* Set the global `arg` like lua.c does: arg[0] is the script, arg[1..]
 * its arguments, negative indexes the words before the script. Pushes
 * the arguments for the main chunk's `...` and returns their count. */
static int push_script_args(lua_State *L, char **before, int nbefore, const char *script,
                            char **args, int nargs) {
  lua_createtable(L, nargs, nbefore + 1);
  for (int i = 0; i < nbefore; i++) {
    lua_pushstring(L, before[i]);
    lua_rawseti(L, -2, i - nbefore);
  }
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < nargs; i++) {
    lua_pushstring(L, args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  luaL_checkstack(L, nargs, "too many arguments");
  for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
  return nargs;
}

/* Run the chunk loaded on top of L as the main task. */
static int run_loaded(lua_State *L, int load_status, char **before, int nbefore,
                      const char *script, char **args, int nargs) {
  int status;
  if (load_status != LUA_OK) {
    fprintf(stderr, "sandlot: %s\n", lua_tostring(L, -1));
    status = SL_EXIT_FAILED;
  } else {
    int n = push_script_args(L, before, nbefore, script, args, nargs);
    status = sl_host_run_main(L, n);
  }
  lua_settop(L, 0);
  sl_host_close(L);
  return status;
}

static char *program_name = "sandlot";

/* Print why the script `file` cannot be read, in the error contract's
 * form ("ENOENT: cannot open script (no such file or directory): FILE"),
 * and return -1; return 0 when it can be opened. */
static int check_script(const char *file) {
  struct stat st;
  int code = 0;
  if (stat(file, &st) < 0) code = errno;
  else if (S_ISDIR(st.st_mode)) code = EISDIR;
  else {
    FILE *f = fopen(file, "r");
    if (f == NULL) code = errno;
    else fclose(f);
  }
  if (code == 0) return 0;
  char reason[128], quoted[SL_SUBJECT_MAX];
  snprintf(reason, sizeof reason, "%s", strerror(code));
  reason[0] = (char)tolower((unsigned char)reason[0]);
  fprintf(stderr, "sandlot: %s: cannot open script (%s): %s\n", sl_errname(code), reason,
          sl_subject(quoted, sizeof quoted, file));
  return -1;
}

static int cmd_run(int argc, char **argv) {
  if (argc < 2) return usage_error("%s: missing FILE", "run");
  const char *file = argv[1];
  if (strcmp(file, "-") != 0 && check_script(file) < 0) return SL_EXIT_FAILED;
  lua_State *L = sl_host_open(SL_HOST_SCRIPT);
  if (L == NULL) return SL_EXIT_FAILED;
  int rc = luaL_loadfile(L, strcmp(file, "-") == 0 ? NULL : file);
  char *before[] = {program_name, argv[0]};
  return run_loaded(L, rc, before, 2, file, argv + 2, argc - 2);
}

static int run_chunk(int argc, char **argv) {
  if (argc < 2) return usage_error("%s: missing CHUNK", "-e");
  lua_State *L = sl_host_open(SL_HOST_SCRIPT);
  if (L == NULL) return SL_EXIT_FAILED;
  int rc = luaL_loadbuffer(L, argv[1], strlen(argv[1]), "=(command line)");
  char *before[] = {program_name};
  return run_loaded(L, rc, before, 1, argv[0], argv + 2, argc - 2);
}

/* ls, kill, rm, gc and snapshots: argv[0] names a function of the sandlot.cli module,
 * which runs as the main task with the other words as arguments. */
static int cmd_sandbox_verb(int argc, char **argv) {
  lua_State *L = sl_host_open(SL_HOST_SCRIPT);
  if (L == NULL) return SL_EXIT_FAILED;
  char chunk[128];
  snprintf(chunk, sizeof chunk, "return require('sandlot.cli')['%s'](...)", argv[0]);
  int rc = luaL_loadbuffer(L, chunk, strlen(chunk), "=sandlot");
  char *before[] = {program_name};
  return run_loaded(L, rc, before, 1, argv[0], argv + 1, argc - 1);
}

static int cmd_repl(int argc, char **argv) {
  if (argc > 1) return usage_error("repl: unexpected argument '%s'", argv[1]);
  lua_State *L = sl_host_open(SL_HOST_REPL);
  if (L == NULL) return SL_EXIT_FAILED;
  int status = sl_repl_run(L);
  sl_host_close(L);
  return status;
}

static const command *find_command(const char *name) {
  for (size_t i = 0; i < COMMAND_COUNT; i++)
    if (commands[i].run != NULL && strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  sl_host_size_threadpool();
  if (argc < 2) return cmd_repl(1, (char *[]){"repl", NULL});

  const char *first = argv[1];
  int help = strcmp(first, "-h") == 0 || strcmp(first, "--help") == 0;
  int version = strcmp(first, "-V") == 0 || strcmp(first, "--version") == 0;
  if ((help || version) && argc > 2) {
    fprintf(stderr, "sandlot: %s: unexpected argument '%s'\n", first, argv[2]);
    fprintf(stderr, "Run 'sandlot --help' for usage.\n");
    return SL_EXIT_USAGE;
  }
  if (help) {
    print_usage(stdout);
    return SL_EXIT_OK;
  }
  if (version) {
    printf("sandlot %s\n", SANDLOT_VERSION);
    return SL_EXIT_OK;
  }
  if (strcmp(first, "-e") == 0) return run_chunk(argc - 1, argv + 1);
  if (first[0] == '-') return usage_error("unknown option '%s'", first);

  const command *cmd = find_command(first);
  if (cmd != NULL) return cmd->run(argc - 1, argv + 1);
  size_t length = strlen(first);
  if (length > 4 && strcmp(first + length - 4, ".lua") == 0)
    return usage_error("unknown command '%s'; to run a script, use 'sandlot run FILE'", first);
  return usage_error("unknown command '%s'", first);
}
