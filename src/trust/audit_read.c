/* audit_read.c — reading the audit log: `kizuna audit verify` (the chain across rotated
 * files, checkpoints, the head, gaps, pruning) and `kizuna audit show`. */
#include "trust/audit_internal.h"
#include "base/kz_err.h"
#include "base/kz_file.h"
#include "base/kz_hex.h"
#include "base/kz_log.h"
#include "base/kz_time.h"
#include "crypto/kz_crypto.h"
#include "crypto/kz_mldsa.h"

#include <openssl/rand.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- verify and show ---------- */

static const char *field(const char *line, const char *name, size_t *len)
{
	char key[64];
	snprintf(key, sizeof key, "\"%s\":\"", name);
	const char *p = strstr(line, key);
	if (!p)
		return NULL;
	p += strlen(key);
	const char *q = p;
	while (*q && *q != '"') {
		if (*q == '\\' && q[1])
			q++;
		q++;
	}
	*len = (size_t)(q - p);
	return p;
}

int kz_audit_verify(const char *dir, void (*report)(void *ctx, const char *line), void *ctx, char *why,
		    size_t why_len)
{
	char path[4200], msg[256], out[4800];
	uint8_t pub[32];
	snprintf(path, sizeof path, "%s/audit.pub", dir);
	FILE *f = fopen(path, "r");
	char pubhex[80] = "";
	if (!f || !fgets(pubhex, sizeof pubhex, f) || kz_unhex(pubhex, pub, 32)) {
		if (f)
			fclose(f);
		snprintf(why, why_len, "cannot read the public key %s", path);
		return -1;
	}
	fclose(f);
	pubhex[64] = 0;
	/* the ML-DSA-65 public key, when the log has one (issue 5) */
	uint8_t dpk[KZ_MLDSA65_PK_BYTES];
	uint8_t dsig[KZ_MLDSA65_SIG_BYTES];
	bool have_dpk = false;
	snprintf(path, sizeof path, "%s/audit.mldsa.pub", dir);
	if ((f = fopen(path, "r")) != NULL) {
		char dhex[2 * KZ_MLDSA65_PK_BYTES + 8];
		have_dpk = fgets(dhex, sizeof dhex, f) && strlen(dhex) >= 2 * KZ_MLDSA65_PK_BYTES &&
			   kz_unhex(dhex, dpk, sizeof dpk) == 0;
		fclose(f);
		if (!have_dpk) {
			snprintf(why, why_len, "cannot read the ML-DSA-65 public key %s", path);
			return -1;
		}
	}
	uint64_t mldsa_checkpoints = 0;
	/* the rotated files, oldest first, then audit.log: one chain */
	size_t nrot;
	uint64_t *rot = kz_audit_rotated_files(dir, &nrot);
	size_t file_i = 0;
	char fname[4300];
	snprintf(path, sizeof path, "%s/audit.log", dir);
	if (nrot)
		kz_audit_rotated_path(fname, sizeof fname, dir, rot[0]);
	else
		snprintf(fname, sizeof fname, "%s", path);
	if (!(f = fopen(fname, "r"))) {
		snprintf(why, why_len, "cannot open %s: %s", fname, strerror(errno));
		free(rot);
		return -1;
	}
	uint64_t start_n = 1, pruned_at = 0;
	char start_prev[65] = "";
	char *line = NULL, prev[65] = HEX_ZERO;
	size_t cap = 0;
	ssize_t len;
	uint64_t expect = 1, lineno = 0, checkpoints = 0, last_ck = 0, gaps = 0, lost = 0;
	int bad = 0;
	char gapinfo[600] = "", chaininfo[600] = "";
	/* the hash of every checkpoint entry, to check the head against */
	uint64_t head_n = 0;
	char head_hash[65] = "", head_seen[65] = "";
	FILE *hf;
	snprintf(msg, sizeof msg, "%s/head", dir);
	if ((hf = fopen(msg, "r")) != NULL) {
		char hs[200] = "";
		char ds[2 * KZ_MLDSA65_SIG_BYTES + 8];
		uint8_t sig[64];
		ds[0] = 0;
		int got = fscanf(hf, "%" SCNu64 " %64s %128s %6620s", &head_n, head_hash, hs, ds);
		snprintf(msg, sizeof msg, "kizuna-audit-head n=%" PRIu64 " hash=%s", head_n, head_hash);
		if (got < 3 || kz_unhex(hs, sig, 64) || kz_ed25519_verify(pub, msg, strlen(msg), sig)) {
			snprintf(out, sizeof out, "%s/head: its signature does not verify (forged or damaged)", dir);
			report(ctx, out);
			bad = 1;
		} else if (have_dpk && (got != 4 || strlen(ds) != 2 * KZ_MLDSA65_SIG_BYTES ||
					kz_unhex(ds, dsig, sizeof dsig) ||
					kz_mldsa65_verify(dpk, sizeof dpk, (const uint8_t *)msg, strlen(msg),
							  (const uint8_t *)MLDSA_CTX, strlen(MLDSA_CTX), dsig, sizeof dsig))) {
			snprintf(out, sizeof out, "%s/head: its ML-DSA-65 signature is missing or does not verify", dir);
			report(ctx, out);
			bad = 1;
		}
		fclose(hf);
	}
	for (;;) {
		if (bad)
			break;
		if ((len = getline(&line, &cap, f)) <= 0) {
			if (file_i >= nrot) /* audit.log was the last */
				break;
			fclose(f);
			file_i++;
			if (file_i < nrot)
				kz_audit_rotated_path(fname, sizeof fname, dir, rot[file_i]);
			else
				snprintf(fname, sizeof fname, "%s", path);
			if (!(f = fopen(fname, "r"))) {
				if (file_i == nrot && errno == ENOENT && (f = fopen("/dev/null", "r")))
					continue; /* a rotation's moment: audit.log not made yet */
				snprintf(out, sizeof out, "%s: cannot open: %s", fname, strerror(errno));
				report(ctx, out);
				bad = 1;
				f = fopen("/dev/null", "r");
				break;
			}
			lineno = 0;
			continue;
		}
		lineno++;
		if (line[len - 1] != '\n') {
			snprintf(out, sizeof out, "line %" PRIu64 ": incomplete entry (cut off)", lineno);
			report(ctx, out);
			bad = 1;
			break;
		}
		line[--len] = 0;
		const char *h = NULL;
		for (const char *p = line; (p = strstr(p, ",\"hash\":\"")) != NULL; p++)
			h = p;
		uint64_t n = 0;
		if (!h || strlen(h) != 9 + 64 + 2 || sscanf(line, "{\"n\":%" SCNu64, &n) != 1) {
			snprintf(out, sizeof out, "line %" PRIu64 ": not an audit entry", lineno);
			report(ctx, out);
			bad = 1;
			break;
		}
		uint8_t digest[32];
		char dx[65];
		kz_sha256(line, (size_t)(h - line), digest);
		kz_hex(digest, 32, dx);
		if (memcmp(dx, h + 9, 64) != 0) {
			snprintf(out, sizeof out, "%s line %" PRIu64 " (entry %" PRIu64 "): hash mismatch: the entry was modified",
				 fname, lineno, n);
			report(ctx, out);
			bad = 1;
			break;
		}
		size_t pl;
		const char *pv = NULL;
		for (const char *p = line; (p = strstr(p, ",\"prev\":\"")) != NULL && p < h; p++)
			pv = p;
		pl = pv ? 64 : 0;
		if (expect == 1 && n > 1 && pv && file_i == 0 && lineno == 1) {
			/* the oldest file starts later: what came before was pruned (audit.max_files), which
			 * a signed "pruned" entry further on must say; checked at the end */
			expect = start_n = n;
			memcpy(prev, pv + 9, 64);
			memcpy(start_prev, pv + 9, 64);
			start_prev[64] = 0;
		}
		if (n != expect || !pv || memcmp(pv + 9, prev, pl) != 0) {
			snprintf(out, sizeof out, "line %" PRIu64 " (entry %" PRIu64 "): %s", lineno, n,
				 n != expect ? "out of sequence: an entry before it was removed, or entries were "
					       "inserted or reordered" :
					       "does not chain to the entry before it: entries were removed, inserted or "
					       "reordered");
			report(ctx, out);
			bad = 1;
			break;
		}
		size_t kl, sl;
		const char *ck = strstr(line, ",\"checkpoint\":{");
		if (ck) {
			const char *key = field(ck, "key", &kl), *sg = field(ck, "sig", &sl);
			uint8_t sig[64];
			snprintf(msg, sizeof msg, "kizuna-audit-checkpoint n=%" PRIu64 " prev=%s", n, prev);
			if (!key || kl != 64 || memcmp(key, pubhex, 64) != 0 || !sg || sl != 128 || kz_unhex(sg, sig, 64) ||
			    kz_ed25519_verify(pub, msg, strlen(msg), sig)) {
				snprintf(out, sizeof out, "line %" PRIu64 " (entry %" PRIu64 "): checkpoint signature does "
					 "not verify with %s/audit.pub", lineno, n, dir);
				report(ctx, out);
				bad = 1;
				break;
			}
			size_t dl;
			const char *dsg = field(ck, "mldsa", &dl);
			if (dsg || mldsa_checkpoints) { /* once signed with ML-DSA-65, always */
				if (!have_dpk || !dsg || dl != 2 * KZ_MLDSA65_SIG_BYTES || kz_unhex(dsg, dsig, sizeof dsig) ||
				    kz_mldsa65_verify(dpk, sizeof dpk, (const uint8_t *)msg, strlen(msg), (const uint8_t *)MLDSA_CTX,
						      strlen(MLDSA_CTX), dsig, sizeof dsig)) {
					snprintf(out, sizeof out, "line %" PRIu64 " (entry %" PRIu64 "): checkpoint ML-DSA-65 "
						 "signature is missing or does not verify with %s/audit.mldsa.pub", lineno, n, dir);
					report(ctx, out);
					bad = 1;
					break;
				}
				mldsa_checkpoints++;
			}
			checkpoints++;
			last_ck = n;
		}
		const char *pr = strstr(line, ",\"pruned\":{");
		if (pr) {
			const char *th = strstr(pr, "\"through\":");
			size_t hl2;
			const char *ph = field(pr, "hash", &hl2);
			uint64_t through = th ? strtoull(th + 10, NULL, 10) : 0;
			if (start_n > 1 && through + 1 == start_n && ph && hl2 == 64 && memcmp(ph, start_prev, 64) == 0)
				pruned_at = n;
		}
		const char *gp = strstr(line, ",\"gap\":{\"lost\":");
		if (gp) { /* decisions the node could not write: intact, but not complete */
			uint64_t l = strtoull(gp + strlen(",\"gap\":{\"lost\":"), NULL, 10);
			size_t fl, tl;
			const char *fr = field(gp, "from", &fl), *to = field(gp, "to", &tl);
			if (!gaps)
				snprintf(gapinfo, sizeof gapinfo, "; the first at entry %" PRIu64 ": %" PRIu64 " decisions from %.*s "
					 "to %.*s", n, l, fr ? (int)fl : 0, fr ? fr : "", to ? (int)tl : 0, to ? to : "");
			gaps++;
			lost += l;
		}
		const char *cp = strstr(line, ",\"chain\":{\"after_n\":");
		if (cp) {
			if (n != 1) {
				snprintf(out, sizeof out, "line %" PRIu64 " (entry %" PRIu64 "): a chain start in the middle of "
					 "the log", lineno, n);
				report(ctx, out);
				bad = 1;
				break;
			}
			size_t ql, hl;
			const char *q = field(cp, "quarantine", &ql), *ah = field(cp, "after_hash", &hl);
			snprintf(chaininfo, sizeof chaininfo, "; it starts a new chain after a log that was moved aside (%.*s, "
				 "its head: entry %" PRIu64 ", hash %.*s)", q ? (int)ql : 0, q ? q : "",
				 (uint64_t)strtoull(cp + strlen(",\"chain\":{\"after_n\":"), NULL, 10), ah ? (int)hl : 0, ah ? ah : "");
		}
		memcpy(prev, h + 9, 64);
		if (n == head_n)
			memcpy(head_seen, prev, 65);
		expect++;
	}
	free(line);
	if (f)
		fclose(f);
	free(rot);
	if (!bad && start_n > 1 && !pruned_at) {
		snprintf(out, sizeof out, "the log starts at entry %" PRIu64 ": entries 1 to %" PRIu64 " are missing and no "
			 "signed entry records that they were pruned (audit.max_files)", start_n, start_n - 1);
		report(ctx, out);
		bad = 1;
	}
	if (!bad && head_n && (expect - 1 < head_n || strcmp(head_seen, head_hash) != 0)) {
		snprintf(out, sizeof out, "the log ends at entry %" PRIu64 " but its last checkpoint was entry %" PRIu64
			 "%s: entries were cut off or the log was rewritten", expect - 1, head_n,
			 expect - 1 < head_n ? "" : " with another hash");
		report(ctx, out);
		bad = 1;
	}
	if (!bad && (gaps || chaininfo[0])) {
		snprintf(out, sizeof out, "%s: INCOMPLETE: the chain verifies, but %" PRIu64 " recorded gaps say %" PRIu64
			 " decisions could not be written%s%s", path, gaps, lost, gapinfo, chaininfo);
		report(ctx, out);
		bad = 3;
	}
	if (bad != 1) {
		char rotinfo[300] = "";
		if (nrot || start_n > 1)
			snprintf(rotinfo, sizeof rotinfo, " in %zu files (rotated files first)%s", nrot + 1, "");
		if (start_n > 1)
			snprintf(rotinfo + strlen(rotinfo), sizeof rotinfo - strlen(rotinfo), "; entries before %" PRIu64
				 " were pruned under audit.max_files, as signed entry %" PRIu64 " records", start_n, pruned_at);
		snprintf(out, sizeof out, "%s: intact: %" PRIu64 " entries%s, %" PRIu64 " signed checkpoints (%" PRIu64
			 " also with ML-DSA-65), the last at entry %" PRIu64 "; %" PRIu64 " entries after it (signed at the "
			 "next checkpoint); key %s",
			 path, expect - start_n, rotinfo, checkpoints, mldsa_checkpoints, last_ck, expect - 1 - last_ck, pubhex);
		report(ctx, out);
	}
	return bad;
}

static bool match(const char *line, const char *name, const char *want)
{
	if (!want)
		return true;
	size_t l;
	const char *v = field(line, name, &l);
	return v && l == strlen(want) && memcmp(v, want, l) == 0;
}

/* The filter's test of one entry (a NUL-terminated line). */
static bool passes(const char *line, const struct kz_audit_filter *flt)
{
	if (!match(line, "subject", flt->subject) || !match(line, "action", flt->action) ||
	    !match(line, "decision", flt->decision))
		return false;
	if (!flt->since_ns && !flt->until_ns)
		return true;
	size_t tl;
	const char *t = field(line, "t", &tl);
	char ts[40];
	uint64_t ns = 0;
	if (t && tl < sizeof ts) {
		memcpy(ts, t, tl);
		ts[tl] = 0;
		(void)kz_time_parse(ts, &ns);
	}
	return !((flt->since_ns && ns < flt->since_ns) || (flt->until_ns && ns > flt->until_ns));
}

#define NEWEST_CHUNK (64u << 10)
/* 64 x LINE_MAX_BYTES, the longest line audit.c writes: a longer one was not written by a node,
 * and is refused rather than read into memory without end */
#define NEWEST_MAX_LINE (64u * LINE_MAX_BYTES)

/* One file of kz_audit_newest, from its end: 1 when cb stopped, 0 at its start, -1. */
static int newest_file(int fd, const struct kz_audit_filter *flt, uint64_t before, kz_audit_line_fn cb, void *ctx,
		       char **w, size_t *cap, char **line, size_t *lcap, char *why, size_t why_len)
{
	struct stat sb;
	if (fstat(fd, &sb)) {
		snprintf(why, why_len, "cannot read the audit log: %s", strerror(errno));
		return -1;
	}
	uint64_t lo = (uint64_t)sb.st_size; /* (*w)[0, have) holds the file's bytes from lo */
	size_t have = 0;
	for (;;) {
		while (have) { /* the last line whose start is known */
			size_t e = have;
			while (e && ((*w)[e - 1] == '\n' || (*w)[e - 1] == '\r'))
				e--;
			size_t st = e;
			while (st && (*w)[st - 1] != '\n')
				st--;
			if (!st && lo)
				break; /* it begins before what was read */
			size_t n = e - st;
			have = st;
			if (!n)
				continue;
			if (n + 1 > *lcap) {
				char *nl = realloc(*line, n + 1);
				if (!nl)
					goto nomem;
				*line = nl;
				*lcap = n + 1;
			}
			memcpy(*line, *w + st, n);
			(*line)[n] = 0;
			if (before) { /* entries are numbered in order: n below before */
				const char *k = strstr(*line, "\"n\":");
				if (!k || strtoull(k + 4, NULL, 10) >= before)
					continue;
			}
			if (passes(*line, flt) && cb(ctx, *line, n))
				return 1;
		}
		if (!lo)
			return 0;
		size_t chunk = lo < NEWEST_CHUNK ? (size_t)lo : NEWEST_CHUNK;
		if (have + chunk > NEWEST_MAX_LINE + NEWEST_CHUNK) {
			snprintf(why, why_len, "an audit log line longer than %u bytes", NEWEST_MAX_LINE);
			return -1;
		}
		if (have + chunk > *cap) {
			char *nw = realloc(*w, have + chunk);
			if (!nw)
				goto nomem;
			*w = nw;
			*cap = have + chunk;
		}
		memmove(*w + chunk, *w, have);
		if (kz_pread_all(fd, *w, chunk, lo - chunk)) {
			snprintf(why, why_len, "cannot read the audit log: %s", strerror(errno));
			return -1;
		}
		lo -= chunk;
		have += chunk;
	}
nomem:
	snprintf(why, why_len, "out of memory");
	return -1;
}

int kz_audit_newest(const char *dir, const struct kz_audit_filter *flt, uint64_t before, kz_audit_line_fn cb,
		    void *ctx, char *why, size_t why_len)
{
	char path[4300];
	size_t nrot;
	uint64_t *rot = kz_audit_rotated_files(dir, &nrot); /* oldest first, then audit.log */
	char *w = NULL, *line = NULL;
	size_t cap = 0, lcap = 0;
	int rc = 0;
	for (size_t k = 0; k <= nrot && rc == 0; k++) {
		size_t i = nrot - k; /* audit.log, then the rotated files newest first */
		if (i < nrot)
			kz_audit_rotated_path(path, sizeof path, dir, rot[i]);
		else
			snprintf(path, sizeof path, "%s/audit.log", dir);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (i < nrot || nrot)
				continue; /* pruned or rotated meanwhile */
			snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
			rc = -1;
			break;
		}
		rc = newest_file(fd, flt, before, cb, ctx, &w, &cap, &line, &lcap, why, why_len);
		close(fd);
	}
	free(w);
	free(line);
	free(rot);
	return rc < 0 ? -1 : 0;
}

int kz_audit_show(const char *dir, const struct kz_audit_filter *flt, FILE *out, char *why, size_t why_len)
{
	char path[4300];
	size_t nrot;
	uint64_t *rot = kz_audit_rotated_files(dir, &nrot); /* oldest first, then audit.log */
	char *line = NULL;
	size_t cap = 0;
	for (size_t i = 0; i <= nrot; i++) {
		if (i < nrot)
			kz_audit_rotated_path(path, sizeof path, dir, rot[i]);
		else
			snprintf(path, sizeof path, "%s/audit.log", dir);
		FILE *f = fopen(path, "r");
		if (!f) {
			if (i < nrot || nrot)
				continue; /* pruned or rotated meanwhile */
			snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
			free(rot);
			return -1;
		}
		while (getline(&line, &cap, f) > 0)
			if (passes(line, flt))
				fputs(line, out);
		fclose(f);
	}
	free(line);
	free(rot);
	return 0;
}
