"""The benchmark's workload: hold memory and log every pause it notices.

Run inside a sandbox as `python3 -c "<this file>" MB`. It holds MB MiB
of data on top of the interpreter's own pages (about 8 MiB with
Debian 12's python3), filled with pseudo-random bytes so that every page
is present and distinct, then wakes every 0.5 ms. When a wake-up comes more
than 2 ms after the previous one, it appends "START END" to
/tmp/gaps, in seconds of CLOCK_MONOTONIC (the host's clock, since
sandboxes have no time namespace). The harness takes the longest gap
that overlaps a snapshot as the pause the workload saw. Once the memory
is held it writes its resident bytes to /tmp/workload.ready.
"""
import os
import sys
import time

GAP_LOG = "/tmp/gaps"
READY = "/tmp/workload.ready"
TICK_S = 0.0005
MIN_GAP_S = 0.002
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def hold(mib):
    block = os.urandom(MIB)
    chunks = []
    while len(chunks) < mib:
        chunk = bytearray(block)
        # Make each MiB differ from the others, page by page.
        for offset in range(0, MIB, PAGE):
            chunk[offset:offset + 8] = (len(chunks) * MIB + offset).to_bytes(8, "little")
        chunks.append(chunk)
    return chunks


def tick_forever(log):
    last = time.monotonic()
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        if now - last > MIN_GAP_S:
            log.write("%.6f %.6f\n" % (last, now))
        last = now


def main():
    chunks = hold(int(sys.argv[1]))
    with open(READY + ".tmp", "w") as ready:
        ready.write("%d\n" % resident_bytes())
    os.rename(READY + ".tmp", READY)
    with open(GAP_LOG, "a", buffering=1) as log:
        tick_forever(log)
    return chunks


main()
