/* sandlot-monitor: one per live sandbox, of either backend. --backend vm
 * selects the VM mode (vm_mode.h); otherwise it owns a process sandbox
 * (monitor.h). */
#include <string.h>

#include "monitor.h"
#include "vm_mode.h"

static int wants_vm(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--backend") == 0 && strcmp(argv[i + 1], "vm") == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  return wants_vm(argc, argv) ? sl_vm_monitor_main(argc, argv) : sl_monitor_main(argc, argv);
}
