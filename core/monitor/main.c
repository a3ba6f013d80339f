#include "monitor.h"

int main(int argc, char **argv) { return sl_monitor_main(argc, argv); }
