/* NULL-terminated arrays of heap strings ("string vectors"), as built for
 * argv lists, mount lists and decoded protocol string lists. */
#ifndef SANDLOT_STRV_H
#define SANDLOT_STRV_H

/* Free every string of `v` and then `v`; NULL is allowed. */
void sl_strv_free(char **v);

#endif
