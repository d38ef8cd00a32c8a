/* fuzz_audit.c — the audit log reader: arbitrary bytes as DIR/audit/audit.log (after a
 * NUL, as DIR/audit/head; after a second NUL, as the rotated file audit-<20 digits>.log that
 * comes before audit.log) through verify and show. Must not crash, must not call a
 * tampered log intact unless it really chains (it cannot: no input carries a valid
 * signature, so any checkpoint line must fail). */
#include "trust/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void quiet(void *ctx, const char *line) { (void)ctx, (void)line; }

static void put(const char *name, const uint8_t *p, size_t n)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f) {
		fwrite(p, 1, n, f);
		fclose(f);
	}
}

/* At exit: the directory and what the runs left in it (make test replays the corpus on
 * every run; each run's directory stayed in /tmp before). Files only: none is a directory. */
static void cleanup(void)
{
	static const char *const names[] = { "audit.log", "audit.pub", "head", "audit-00000000000000000001.log" };
	char path[128];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* kz_audit_newest's callback: counts, and stops after 5 (a page) */
static int count_line(void *ctx, const char *line, size_t len)
{
	(void)line;
	(void)len;
	return ++*(unsigned *)ctx == 5;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/kz-fuzz-audit-%d", (int)getpid());
		mkdir(dir, 0700);
		atexit(cleanup);
		static const char pub[] = "c8f17f6439d48880d930a66a2ce7404281ddfc65cf4def14c62ee5701aaad2ad\n";
		put("audit.pub", (const uint8_t *)pub, sizeof pub - 1);
	}
	const uint8_t *nul = memchr(data, 0, size);
	size_t ln = nul ? (size_t)(nul - data) : size;
	put("audit.log", data, ln);
	char hp[128], rp[128];
	snprintf(hp, sizeof hp, "%s/head", dir);
	snprintf(rp, sizeof rp, "%s/audit-00000000000000000001.log", dir);
	const uint8_t *nul2 = nul ? memchr(nul + 1, 0, size - ln - 1) : NULL;
	if (nul)
		put("head", nul + 1, nul2 ? (size_t)(nul2 - nul - 1) : size - ln - 1);
	else
		unlink(hp);
	if (nul2)
		put("audit-00000000000000000001.log", nul2 + 1, size - (size_t)(nul2 + 1 - data));
	else
		unlink(rp);
	char why[256];
	(void)kz_audit_verify(dir, quiet, NULL, why, sizeof why);
	FILE *devnull = fopen("/dev/null", "w");
	struct kz_audit_filter f = { .action = "tls", .decision = "deny", .since_ns = 1 };
	(void)kz_audit_show(dir, &f, devnull, why, sizeof why);
	fclose(devnull);
	/* the same files read backwards (/api/v1/audit): every entry, then a page below entry 3 */
	struct kz_audit_filter all = { 0 };
	unsigned n = 0;
	(void)kz_audit_newest(dir, &all, 0, count_line, &n, why, sizeof why);
	n = 0;
	(void)kz_audit_newest(dir, &f, 3, count_line, &n, why, sizeof why);
	return 0;
}
