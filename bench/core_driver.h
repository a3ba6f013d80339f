/* bench_core, the benchmark's helpers on the core C API: one command per
 * run, one JSON object on stdout (see bench/core_driver.c). */
#ifndef SANDLOT_BENCH_CORE_DRIVER_H
#define SANDLOT_BENCH_CORE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* CLOCK_MONOTONIC in milliseconds. */
double bench_now_ms(void);

/* Write `text` as a JSON string, quotes included. */
void bench_json_string(FILE *out, const char *text);

/* Write `"key": ` after a comma unless `first`. */
void bench_json_key(FILE *out, const char *key, bool first);

/* Write `"key": [v, v, ...]` with `count` numbers. */
void bench_json_numbers(FILE *out, const char *key, const double *values, size_t count,
                        bool first);

/* The catalog-* commands (bench/core_catalog.c) on the store at `home`;
 * -1 for an unknown command. */
int bench_catalog_command(const char *name, const char *home, int argc, char **argv);

#endif
