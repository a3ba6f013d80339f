/* Setup of a process sandbox from inside its new namespaces, ending in
 * the exec of the agent as PID 1. Runs in the child that the monitor
 * cloned with new PID, mount, IPC, UTS and network namespaces. */
#ifndef SANDLOT_PROC_INIT_H
#define SANDLOT_PROC_INIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Paths of the agent inside the sandbox, in its own read-only layer. */
#define SL_AGENT_DIR "/.sandlot"
#define SL_AGENT_PATH "/.sandlot/agent"
/* Socket the agent serves, inside the sandbox. */
#define SL_AGENT_SOCKET "/run/sandlot/agent.sock"

/* Name of the host's handle on that socket in sandboxes/<id>/: the
 * monitor bind-mounts the socket's inode there once the agent listens. */
#define SL_AGENT_SOCKET_HOST "agent.sock"

typedef struct sl_proc_init {
  const char *root;     /* host path of the mounted overlay */
  const char *hostname;
  const char *cwd;      /* inside the sandbox */
  char *const *argv;    /* agent command line; argv[0] is SL_AGENT_PATH */
  char *const *envp;    /* the agent's environment */
  int sync_fd;          /* read end: the monitor writes one byte once the
                           child is in its cgroups, or closes it to abort */
  int error_fd;         /* write end, close-on-exec: receives
                           "<errno> <message>" when a step fails */
} sl_proc_init;

/* Set the sandbox up and exec the agent. Returns only by _exit(127)
 * after reporting the failed step on error_fd. */
_Noreturn void sl_proc_init_run(const sl_proc_init *cfg);

/* Whether the capability `cap` stays in the bounding set of sandboxes. */
int sl_proc_cap_kept(int cap);

/* Device nodes created in the sandbox's /dev, NULL-name-terminated. */
typedef struct sl_proc_device {
  const char *name;
  unsigned major, minor;
} sl_proc_device;
extern const sl_proc_device sl_proc_devices[];

#endif
