#!/bin/bash
# What fresh memory costs on this machine (BENCHMARKS.md "The first POST of a fresh node"):
# a throwaway C program maps N MiB, advises them MADV_HUGEPAGE (or MADV_NOHUGEPAGE), and
# times the first touch of each page, then a memset of the same bytes. Run back to back, and
# after a pause: a guest whose balloon reports free pages to its host (virtio-balloon
# VIRTIO_BALLOON_F_REPORTING, blocks of 2^page_reporting_order pages, after ~2 s) gets memory
# the host must back again. Usage: bench/fresh-memory.sh [MiB]
set -eu
MIB=${1:-64}
D=$(mktemp -d /tmp/kz-fresh.XXXXXX)
trap 'rm -rf "$D"' EXIT
cat > "$D/touch.c" <<'C'
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char **argv)
{
	size_t n = (size_t)atoi(argv[1]) << 20, huge = (size_t)2 << 20;
	int hg = atoi(argv[2]);
	char *m = mmap(NULL, n + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	char *p = (char *)(((unsigned long)m + huge - 1) & ~(huge - 1));
	madvise(p, n, hg ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	double t0 = ms();
	for (size_t i = 0; i < n; i += 4096)
		p[i] = 1;
	double t1 = ms();
	memset(p, 2, n);
	double t2 = ms();
	printf("%s pages, %zu MiB: first touch %.2f ms (%.2f GB/s), memset after it %.2f ms\n", hg ? "2 MiB" : "4 KiB",
	       n >> 20, t1 - t0, n / 1e6 / (t1 - t0), t2 - t1);
	return 0;
}
C
cc -O2 -o "$D/touch" "$D/touch.c"
echo "balloon free page reporting: $(for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device 2>/dev/null)" = 0x0005 ] && cut -c6 $d/features; done | sed 's/1/on/; s/0/off/')" \
	"order $(cat /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || echo '?')"
echo "-- back to back (each run gets the pages the last one freed)"
for _ in 1 2 3; do "$D/touch" "$MIB" 1; done
for _ in 1 2 3; do "$D/touch" "$MIB" 1 > /dev/null; "$D/touch" "$MIB" 0; done
echo "-- each after 3 s"
for _ in 1 2 3; do sleep 3; "$D/touch" "$MIB" 1; done
