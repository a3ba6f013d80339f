/* sandlot-criu-action: the --action-script that sandlot gives CRIU.
 * See core/criu_action.h for the actions and their variables. */
#include <stdio.h>
#include <stdlib.h>

#include "criu_action.h"
#include "error.h"

int main(void) {
  const char *action = getenv("CRTOOLS_SCRIPT_ACTION");
  sl_error err = {0};
  if (sl_criu_action_run(action, &err) < 0) {
    /* CRIU copies this into the operation's criu.out; "Error" marks it for
     * sl_criu_error_lines(). */
    fprintf(stderr, "Error (sandlot-criu-action): %s: %s\n", action ? action : "(none)", err.msg);
    return 1;
  }
  return 0;
}
