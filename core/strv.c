#include "strv.h"

#include <stdlib.h>

void sl_strv_free(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}
