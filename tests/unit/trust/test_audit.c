/* test_audit.c — the audit log: chain and checkpoints verify; every kind of tampering
 * (an edited byte, a deleted entry, two swapped, a cut-off end, a rewritten chain, a forged
 * head) is found and named; floods of identical denials are summarised, not dropped; two
 * writers on one log keep one chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/kz_crypto.h"
#include "trust/audit.h"

static char dir[256], logp[300];
static char out[8192];

static int setup(void **st)
{
	snprintf(dir, sizeof dir, "/tmp/kz-audit-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(logp, sizeof logp, "%s/audit.log", dir);
	return 0;
}

static int teardown(void **st)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void report(void *ctx, const char *line)
{
	strncat(out, line, sizeof out - strlen(out) - 2);
	strcat(out, "\n");
}

static int verify(void)
{
	char why[512];
	out[0] = 0;
	return kz_audit_verify(dir, report, NULL, why, sizeof why);
}

/* 12 decisions, a checkpoint every 4 entries, and one at close. Each denial has its own
 * reason, so that none is summarised with another. */
static void write_log(void)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 4, 3600000, &a, why, sizeof why), 0);
	for (int i = 0; i < 12; i++) {
		char res[32], reason[32];
		snprintf(res, sizeof res, "topic/%d", i);
		snprintf(reason, sizeof reason, i % 3 ? "r\"q" : "r\"q %d", i);
		kz_audit_record(a, &(struct kz_audit_entry){ .subject = "spiffe://kizuna.local/dev/user/a", .action = "subscribe",
							      .resource = res, .allow = i % 3 != 0, .reason = reason });
	}
	kz_audit_close(a);
}

static char **read_lines(size_t *n)
{
	FILE *f = fopen(logp, "r");
	char **v = NULL, *line = NULL;
	size_t cap = 0;
	*n = 0;
	while (getline(&line, &cap, f) > 0) {
		v = realloc(v, (*n + 1) * sizeof *v);
		v[(*n)++] = strdup(line);
	}
	free(line);
	fclose(f);
	return v;
}

static void write_lines(char **v, size_t n)
{
	FILE *f = fopen(logp, "w");
	for (size_t i = 0; i < n; i++)
		if (v[i])
			fputs(v[i], f);
	fclose(f);
}

static void free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_intact_and_reopened(void **st)
{
	write_log();
	assert_int_equal(verify(), 0);
	assert_non_null(strstr(out, "intact"));
	/* a reopened log continues the chain */
	write_log();
	assert_int_equal(verify(), 0);
	size_t n;
	char **v = read_lines(&n);
	assert_true(n >= 30);
	assert_non_null(strstr(v[0], "\"n\":1,"));
	assert_non_null(strstr(v[0], "\"reason\":\"r\\\"q 0\""));
	free_lines(v, n);
}

/* Two writers on one log (the node and `kizuna query --as` are separate processes; two
 * handles here have separate file descriptions, so flock(2) separates them the same way):
 * interleaved entries form one chain with consecutive numbers. */
static void test_two_writers_one_chain(void **st)
{
	(void)st;
	struct kz_audit *a, *b;
	char why[256];
	assert_int_equal(kz_audit_open(dir, 5, 100000, &a, why, sizeof why), 0);
	assert_int_equal(kz_audit_open(dir, 7, 100000, &b, why, sizeof why), 0);
	for (int i = 0; i < 40; i++) {
		char r[32];
		snprintf(r, sizeof r, "w%d", i);
		kz_audit_record(i % 3 ? a : b, &(struct kz_audit_entry){ .subject = "s", .action = "query",
									 .resource = r, .allow = true, .reason = r });
	}
	kz_audit_close(a);
	kz_audit_close(b);
	assert_int_equal(verify(), 0);
	size_t n;
	char **v = read_lines(&n);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof want, "{\"n\":%zu,", i + 1);
		assert_non_null(strstr(v[i], want));
	}
	free_lines(v, n);
}

/* Four threads audit at once, with a checkpoint every 20 entries and rotation: the sync and the
 * head of each checkpoint are finished after the locks are let go, in any order between the
 * threads; the chain verifies and the head never goes back. */
static struct kz_audit *conc;

static void *conc_writer(void *arg)
{
	for (int i = 0; i < 200; i++) {
		char r[48];
		snprintf(r, sizeof r, "t%d/%d", (int)(intptr_t)arg, i);
		kz_audit_record(conc, &(struct kz_audit_entry){ .subject = "s", .action = "query", .resource = r,
								.allow = true, .reason = "allowed" });
	}
	return NULL;
}

static void test_concurrent_checkpoints(void **st)
{
	(void)st;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 20, 3600000, &conc, why, sizeof why), 0);
	kz_audit_set_limits(conc, 10000, 32768, 100);
	pthread_t th[4];
	for (intptr_t i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, conc_writer, (void *)i), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	kz_audit_close(conc);
	assert_int_equal(verify(), 0);
	char hp[300];
	snprintf(hp, sizeof hp, "%s/head", dir);
	FILE *f = fopen(hp, "r");
	assert_non_null(f);
	unsigned long long head = 0;
	assert_int_equal(fscanf(f, "%llu", &head), 1);
	fclose(f);
	assert_true(head > 800); /* the close's checkpoint: after all 800 entries and their checkpoints */
}

static void test_edited_byte(void **st)
{
	write_log();
	size_t n;
	char **v = read_lines(&n);
	char *p = strstr(v[6], "topic/");
	p[6] = p[6] == '9' ? '8' : '9';
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "line 7 (entry 7): hash mismatch: the entry was modified"));
}

static void test_deleted_entry(void **st)
{
	write_log();
	size_t n;
	char **v = read_lines(&n);
	free(v[3]);
	v[3] = NULL;
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "line 4 (entry 5): out of sequence"));
}

static void test_swapped_entries(void **st)
{
	write_log();
	size_t n;
	char **v = read_lines(&n);
	char *t = v[1];
	v[1] = v[2];
	v[2] = t;
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "line 2 (entry 3): out of sequence"));
}

static void test_cut_off_end(void **st)
{
	write_log();
	size_t n;
	char **v = read_lines(&n);
	for (size_t i = n - 3; i < n; i++) { /* the last checkpoint and two entries before it */
		free(v[i]);
		v[i] = NULL;
	}
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "entries were cut off or the log was rewritten"));
	/* half a line at the end (a new log: the cut one is refused, test_shorter_than_head) */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -f %s/*", dir);
	assert_int_equal(system(cmd), 0);
	write_log();
	FILE *f = fopen(logp, "a");
	fputs("{\"n\":99,\"t\"", f);
	fclose(f);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "incomplete entry"));
}

/* A log shorter than its signed head (emptied, deleted) is refused at open, not re-signed;
 * `audit reset` moves it aside and starts a chain that verify reports (issue 16). */
static void test_shorter_than_head(void **st)
{
	write_log();
	struct kz_audit *a;
	char why[1024];
	assert_int_equal(truncate(logp, 0), 0); /* emptied */
	assert_int_not_equal(kz_audit_open(dir, 4, 3600000, &a, why, sizeof why), 0);
	assert_non_null(strstr(why, "audit.log ends at entry 0 but its last signed head"));
	assert_non_null(strstr(why, "is entry 15")); /* 12 decisions, checkpoints at 5, 10, 15 */
	assert_int_equal(unlink(logp), 0); /* deleted */
	assert_int_not_equal(kz_audit_open(dir, 4, 3600000, &a, why, sizeof why), 0);
	assert_non_null(strstr(why, "the log was cut, emptied or replaced"));
	char head[300];
	snprintf(head, sizeof head, "%s/head", dir);
	assert_int_equal(unlink(head), 0); /* and its head: the key still says a log existed */
	assert_int_not_equal(kz_audit_open(dir, 4, 3600000, &a, why, sizeof why), 0);
	assert_non_null(strstr(why, "is missing or empty but its signing key exists"));
	char q[4400];
	assert_int_equal(kz_audit_new_chain(dir, "disk replaced", q, sizeof q, why, sizeof why), 0);
	assert_int_equal(kz_audit_open(dir, 4, 3600000, &a, why, sizeof why), 0);
	kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .resource = "x", .allow = true, .reason = "r" });
	kz_audit_close(a);
	assert_int_equal(verify(), 3);
	assert_non_null(strstr(out, "INCOMPLETE"));
	assert_non_null(strstr(out, "starts a new chain after a log that was moved aside (quarantine-"));
}

/* Writes that fail (here: the file size limit, as a full disk would) leave no partial line;
 * the node is told (fail closed); the first write that works again is preceded by a signed
 * gap entry, which verify reports (exit 3). */
static void test_write_failure_gap(void **st)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 1000, 3600000, &a, why, sizeof why), 0);
	for (int i = 0; i < 3; i++)
		kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .resource = "before", .allow = true,
							      .reason = "r" });
	struct stat sb;
	assert_int_equal(stat(logp, &sb), 0);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size + 10; /* the next line is written in part, then fails */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_true(kz_audit_writable());
	for (int i = 0; i < 5; i++) {
		char res[16];
		snprintf(res, sizeof res, "lost/%d", i);
		kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .resource = res, .allow = true,
							      .reason = "r" });
	}
	assert_false(kz_audit_writable());
	assert_int_equal(stat(logp, &sb), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	kz_audit_tick(a); /* writing works again: the gap entry, signed */
	assert_true(kz_audit_writable());
	kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .resource = "after", .allow = true,
						      .reason = "r" });
	kz_audit_close(a);
	assert_int_equal(verify(), 3);
	assert_non_null(strstr(out, "INCOMPLETE: the chain verifies, but 1 recorded gaps say 5 decisions could not be written"));
	assert_non_null(strstr(out, "the first at entry 4"));
	assert_null(strstr(out, "not an audit entry"));
}

/* Hex of SHA-256 of s. */
static void sha_hex(const char *s, size_t n, char out_hex[65])
{
	uint8_t h[32];
	kz_sha256(s, n, h);
	for (int i = 0; i < 32; i++)
		sprintf(out_hex + 2 * i, "%02x", h[i]);
}

/* Someone without the key edits an entry and recomputes every hash after it: the chain is
 * consistent again, but the next checkpoint's signature is not. */
static void test_rewritten_chain(void **st)
{
	write_log();
	size_t n;
	char **v = read_lines(&n);
	char prev[65] = "";
	for (size_t i = 0; i < n; i++) {
		char *line = v[i];
		if (i == 1) {
			char *p = strstr(line, "\"allow\"");
			if (p)
				memcpy(p, "\"ALLOW\"", 7);
			else
				memcpy(strstr(line, "\"deny\""), "\"DENY\"", 6);
		}
		if (i >= 1) { /* fix prev, then the hash */
			char *pv = strstr(line, ",\"prev\":\"") + 9;
			memcpy(pv, prev, 64);
		}
		char *h = strstr(line, ",\"hash\":\"");
		char hx[65];
		sha_hex(line, (size_t)(h - line), hx);
		memcpy(h + 9, hx, 64);
		memcpy(prev, hx, 65);
	}
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "(entry 5): checkpoint signature does not verify"));
}

/* A quantum attacker could forge Ed25519 but not ML-DSA-65: a checkpoint whose ML-DSA-65
 * signature was altered (with the chain rehashed and the Ed25519 signature intact) fails. */
static void test_mldsa_checkpoint(void **st)
{
	(void)st;
	write_log();
	assert_int_equal(verify(), 0);
	assert_non_null(strstr(out, "also with ML-DSA-65"));
	assert_null(strstr(out, "(0 also with ML-DSA-65)"));
	size_t n;
	char **v = read_lines(&n);
	char prev[65] = "";
	bool done = false;
	for (size_t i = 0; i < n; i++) {
		char *line = v[i];
		char *d = strstr(line, "\"mldsa\":\"");
		if (d && !done) {
			d[20] = d[20] == 'a' ? 'b' : 'a';
			done = true;
		}
		if (i >= 1) {
			char *pv = strstr(line, ",\"prev\":\"") + 9;
			memcpy(pv, prev, 64);
		}
		char *h = strstr(line, ",\"hash\":\"");
		char hx[65];
		sha_hex(line, (size_t)(h - line), hx);
		memcpy(h + 9, hx, 64);
		memcpy(prev, hx, 65);
	}
	assert_true(done);
	write_lines(v, n);
	free_lines(v, n);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "checkpoint ML-DSA-65 signature is missing or does not verify"));
}

static void test_forged_head(void **st)
{
	write_log();
	char hp[300];
	snprintf(hp, sizeof hp, "%s/head", dir);
	FILE *f = fopen(hp, "r+");
	fputs("3", f); /* claims another entry */
	fclose(f);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "head: its signature does not verify"));
}

static void test_denial_flood_summarised(void **st)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 100000, 3600000, &a, why, sizeof why), 0);
	struct kz_audit_entry e = { .subject = "spiffe://kizuna.local/dev/user/x", .action = "publish",
				    .resource = "$SYS/x", .allow = false, .reason = "$SYS topics are the server's" };
	for (int i = 0; i < 1000; i++)
		kz_audit_record(a, &e);
	kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .allow = true, .reason = "ok" });
	kz_audit_close(a);
	assert_int_equal(verify(), 0);
	size_t n;
	char **v = read_lines(&n);
	assert_int_equal(n, 4); /* the first denial, the allow, the summary (at close), the checkpoint */
	assert_non_null(strstr(v[2], "\"count\":999"));
	assert_non_null(strstr(v[2], "999 more denials like this from spiffe://kizuna.local/dev/user/x"));
	free_lines(v, n);
}

/* One client refused 5,000 times over many resources (a subscription quota): one entry in
 * full, then one summary per window with samples; handshake refusals from one address but
 * many ports are one kind too (issue 17). */
static void test_denials_by_kind(void **st)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 100000, 3600000, &a, why, sizeof why), 0);
	kz_audit_set_limits(a, 200, 0, 0);
	for (int i = 0; i < 5000; i++) {
		char res[32], addr[32];
		snprintf(res, sizeof res, "filter/%d", i);
		kz_audit_record(a, &(struct kz_audit_entry){ .subject = "spiffe://kizuna.local/dev/user/q", .action = "subscribe",
							      .resource = res, .allow = false, .reason = "Quota exceeded" });
		snprintf(addr, sizeof addr, "10.1.2.3:%d", 1024 + i);
		kz_audit_record(a, &(struct kz_audit_entry){ .action = "tls", .resource = addr, .allow = false,
							      .reason = "unable to get local issuer certificate" });
	}
	usleep(250000);
	kz_audit_tick(a); /* the window ended: the summaries are written */
	struct stat sb;
	assert_int_equal(stat(logp, &sb), 0);
	kz_audit_close(a);
	assert_int_equal(verify(), 0);
	size_t n;
	char **v = read_lines(&n);
	assert_true(n <= 6); /* two in full, two summaries, at most two checkpoints */
	int summaries = 0;
	for (size_t i = 0; i < n; i++)
		if (strstr(v[i], "\"count\":4999")) {
			summaries++;
			assert_non_null(strstr(v[i], "samples of what they asked for"));
		}
	assert_int_equal(summaries, 2);
	assert_true(sb.st_size < 16384); /* 10,000 denials */
	free_lines(v, n);
}

/* Rotation: the chain continues across files, verify follows it; beyond max_files the oldest
 * file goes after a signed record of it, and verify accepts the later start only because of
 * that record. */
static void test_rotation(void **st)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 50, 3600000, &a, why, sizeof why), 0);
	kz_audit_set_limits(a, 10000, 8192, 3);
	for (int i = 0; i < 400; i++) {
		char res[32];
		snprintf(res, sizeof res, "topic/%d", i);
		kz_audit_record(a, &(struct kz_audit_entry){ .subject = "spiffe://kizuna.local/dev/user/r", .action = "publish",
							      .resource = res, .allow = true, .reason = "allowed" });
	}
	kz_audit_close(a);
	assert_int_equal(verify(), 0);
	assert_non_null(strstr(out, "were pruned under audit.max_files"));
	char cmd[600];
	snprintf(cmd, sizeof cmd, "test $(ls %s/audit-*.log | wc -l) -eq 3", dir);
	assert_int_equal(system(cmd), 0);
	/* reopened, it continues the chain from the files as they are */
	assert_int_equal(kz_audit_open(dir, 50, 3600000, &a, why, sizeof why), 0);
	kz_audit_set_limits(a, 10000, 8192, 3);
	kz_audit_record(a, &(struct kz_audit_entry){ .action = "connect", .allow = true, .reason = "ok" });
	kz_audit_close(a);
	assert_int_equal(verify(), 0);
	/* deleting the oldest file without a record of it is detected */
	snprintf(cmd, sizeof cmd, "rm $(ls %s/audit-*.log | head -1)", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(verify(), 1);
	assert_non_null(strstr(out, "no signed entry records that they were pruned"));
}

/* kz_audit_newest: the same entries as kz_audit_show, newest first, across rotated files and
 * 64 KiB chunks; `before` starts below an entry number; a callback that stops is obeyed. */
struct collected {
	char *text;
	size_t len, cap, n, stop_at;
	uint64_t first_n;
};

static int collect_line(void *ctx, const char *line, size_t len)
{
	struct collected *c = ctx;
	assert_int_equal(strlen(line), len);
	if (c->len + len + 2 > c->cap) {
		c->cap = (c->len + len + 2) * 2;
		c->text = realloc(c->text, c->cap);
		assert_non_null(c->text);
	}
	memcpy(c->text + c->len, line, len);
	c->len += len;
	c->text[c->len++] = '\n';
	c->text[c->len] = 0;
	if (!c->n++)
		c->first_n = strtoull(strstr(line, "\"n\":") + 4, NULL, 10);
	return c->stop_at && c->n == c->stop_at;
}

/* show's output, its lines in reverse order */
static char *shown_reversed(const struct kz_audit_filter *f)
{
	char *buf = NULL, why[512];
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	assert_int_equal(kz_audit_show(dir, f, m, why, sizeof why), 0);
	fclose(m);
	char *rev = calloc(1, len + 1);
	size_t o = 0, end = len;
	while (end) {
		size_t st = end - 1;
		while (st && buf[st - 1] != '\n')
			st--;
		memcpy(rev + o, buf + st, end - st);
		o += end - st;
		end = st;
	}
	free(buf);
	return rev;
}

static void test_newest(void **st)
{
	struct kz_audit *a;
	char why[512];
	assert_int_equal(kz_audit_open(dir, 1000, 3600000, &a, why, sizeof why), 0);
	kz_audit_set_limits(a, 10000, 256 << 10, 0); /* several files, all kept */
	char reason[300];
	memset(reason, 'r', sizeof reason - 1);
	reason[sizeof reason - 1] = 0;
	for (int i = 0; i < 3000; i++) {
		char res[32];
		snprintf(res, sizeof res, "topic/%d", i);
		kz_audit_record(a, &(struct kz_audit_entry){ .subject = "spiffe://kizuna.local/dev/user/r",
							      .action = i % 3 ? "publish" : "subscribe", .resource = res,
							      .allow = true, .reason = i % 7 ? "allowed" : reason });
	}
	kz_audit_close(a);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "test $(ls %s/audit-*.log | wc -l) -ge 5", dir);
	assert_int_equal(system(cmd), 0);
	struct kz_audit_filter all = { 0 }, subs = { .action = "subscribe" };
	for (int k = 0; k < 2; k++) {
		const struct kz_audit_filter *f = k ? &subs : &all;
		struct collected c = { 0 };
		assert_int_equal(kz_audit_newest(dir, f, 0, collect_line, &c, why, sizeof why), 0);
		char *want = shown_reversed(f);
		assert_true(c.n >= (k ? 1000u : 3000u));
		assert_string_equal(c.text, want);
		free(want);
		free(c.text);
	}
	/* the newest 10 below entry 1500, then stopped */
	struct collected c = { .stop_at = 10 };
	assert_int_equal(kz_audit_newest(dir, &all, 1500, collect_line, &c, why, sizeof why), 0);
	assert_int_equal(c.n, 10);
	assert_int_equal(c.first_n, 1499);
	free(c.text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_intact_and_reopened, setup, teardown),
		cmocka_unit_test_setup_teardown(test_denials_by_kind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_writers_one_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_checkpoints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edited_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swapped_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cut_off_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewritten_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mldsa_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_denial_flood_summarised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shorter_than_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_gap, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
