/* fuzz_store_segment.c — the segment reader: arbitrary bytes after a valid segment header
 * go through a scan (every record it returns must decode or be reported), recovery (must
 * either refuse or leave a log that scans cleanly) and repair (must leave a log that opens). */
#include "store/store.h"

#include <assert.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], seg[128];

/* The directory goes at exit (a corpus replay by `make test` left one in /dev/shm per run). */
static void cleanup(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[400];
	while (d && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int scan_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n,
		   const struct kz_reclog_pos *pos)
{
	(void)pos;
	struct kz_record r;
	const char *why;
	(void)kz_record_decode(body, n, &r, &why);
	(*(uint64_t *)ctx)++;
	return 0;
}

static void report(void *ctx, const char *line) { (void)ctx, (void)line; }

static void put(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "%s/kz-fuzz-seg-XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
		assert(mkdtemp(dir));
		atexit(cleanup);
		snprintf(seg, sizeof seg, "%s/00000000000000000001.seg", dir);
	}
	uint8_t h[32] = { 'K', 'Z', 'L', 'O', 'G', 'S', 'E', 'G' };
	put(h + 8, 1, 4);
	put(h + 16, 1, 8);
	put(h + 28, kz_crc32c(0, h, 28), 4);
	FILE *f = fopen(seg, "wb");
	assert(f && fwrite(h, 1, 32, f) == 32 && fwrite(data, 1, size, f) == size && fclose(f) == 0);
	char why[8192];
	uint64_t n = 0;
	(void)kz_reclog_scan(dir, 1, NULL, 4096, scan_cb, &n, why, sizeof why);
	struct kz_reclog_config cfg = { .dir = dir, .segment_bytes = 1 << 20, .max_record_bytes = 4096,
				     .fsync = KZ_FSYNC_NEVER };
	struct kz_reclog *log;
	struct kz_reclog_recovery rec;
	if (kz_reclog_open(&cfg, &log, &rec, why, sizeof why) == 0) {
		kz_reclog_close(log);
		assert(kz_reclog_scan(dir, 1, NULL, 4096, scan_cb, &n, why, sizeof why) == 0);
	} else {
		assert(kz_reclog_repair(dir, 4096, report, NULL, why, sizeof why) == 0);
		assert(kz_reclog_open(&cfg, &log, &rec, why, sizeof why) == 0);
		kz_reclog_close(log);
	}
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
	assert(system(cmd) == 0);
	return 0;
}
