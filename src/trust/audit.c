/* audit.c — the hash-chained, checkpoint-signed audit log (format in docs/AUDIT.md).
 *
 * Writers serialise on one mutex; a line is built completely, then written with one
 * write() at the end of the file, so a crash leaves at most one incomplete last line, which
 * the next open cuts off. Checkpoints are fdatasync'd before DIR/audit/head names them.
 * Several processes may write one log (the node, and `kizuna query --as` beside it): each
 * write happens under flock(2) on the log, and a writer that finds the file longer than it
 * left it first re-reads the last entry to continue the chain from there. */
#include "trust/audit_internal.h"
#include "base/kz_array.h"
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

struct kz_audit *kz_audit_log;
static atomic_bool audit_failing;
static atomic_uint_fast64_t write_errors;

bool kz_audit_writable(void)
{
	return !atomic_load_explicit(&audit_failing, memory_order_relaxed);
}

uint64_t kz_audit_write_errors(void)
{
	return atomic_load(&write_errors);
}





/* Appends s as a JSON string (with quotes) to b at *len, within cap. */
static void jstr(char *b, size_t *len, size_t cap, const char *s)
{
	size_t n = *len;
	if (n + 2 >= cap)
		return;
	b[n++] = '"';
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && n + 8 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			b[n++] = '\\';
			b[n++] = (char)*p;
		} else if (*p < 0x20) {
			n += (size_t)snprintf(b + n, cap - n, "\\u%04x", *p);
		} else {
			b[n++] = (char)*p;
		}
	}
	b[n++] = '"';
	b[n] = 0;
	*len = n;
}

static void put(char *b, size_t *len, size_t cap, const char *s)
{
	size_t l = strlen(s);
	if (*len + l < cap) {
		memcpy(b + *len, s, l + 1);
		*len += l;
	}
}

/* Completes body (which ends with its "prev" field) with its hash and writes it. */
static int emit(struct kz_audit *a, char *b, size_t len)
{
	uint8_t h[32];
	kz_sha256(b, len, h);
	char hx[65];
	kz_hex(h, 32, hx);
	size_t n = len;
	put(b, &n, LINE_MAX_BYTES, ",\"hash\":\"");
	put(b, &n, LINE_MAX_BYTES, hx);
	put(b, &n, LINE_MAX_BYTES, "\"}\n");
	int rc = kz_write_all(a->fd, b, n);
	if (rc) {
		int err = errno ? errno : EIO;
		/* a partly written line would break the chain for good: cut it off again */
		if (ftruncate(a->fd, a->end))
			kz_error("audit: cannot cut a partial entry off %s/audit.log: %s", a->dir, strerror(errno));
		if (!a->failing)
			kz_error("audit: cannot write %s/audit.log: %s; new connections and decisions are refused "
				 "until it can (fail closed)", a->dir, strerror(err));
		snprintf(a->lost_error, sizeof a->lost_error, "%s", strerror(err));
		atomic_fetch_add(&write_errors, 1);
	} else if (a->failing) {
		kz_warn("audit: writing %s/audit.log works again", a->dir);
	}
	a->failing = rc != 0;
	atomic_store(&audit_failing, a->failing);
	if (!rc) {
		memcpy(a->prev, hx, 65);
		a->since_ck++;
		a->end += (off_t)n;
	}
	return rc;
}

static size_t begin(struct kz_audit *a, char *b)
{
	char t[32];
	kz_time_format(kz_now_wall_ns(), t);
	a->n++;
	return (size_t)snprintf(b, LINE_MAX_BYTES, "{\"n\":%" PRIu64 ",\"t\":\"%s\"", a->n, t);
}

static void write_entry(struct kz_audit *a, const struct kz_audit_entry *e, uint64_t count)
{
	char b[LINE_MAX_BYTES];
	size_t n = begin(a, b);
	static const char *const keys[] = { ",\"subject\":", ",\"serial\":", ",\"issuer\":", ",\"group\":",
					    ",\"tls\":", ",\"addr\":", ",\"action\":", ",\"resource\":", ",\"label\":" };
	const char *vals[] = { e->subject, e->serial, e->issuer, e->tls_group, e->tls, e->addr, e->action, e->resource,
			       e->label };
	for (size_t i = 0; i < 9; i++) {
		put(b, &n, sizeof b, keys[i]);
		jstr(b, &n, sizeof b, vals[i]);
	}
	put(b, &n, sizeof b, e->allow ? ",\"decision\":\"allow\",\"reason\":" : ",\"decision\":\"deny\",\"reason\":");
	jstr(b, &n, sizeof b, e->reason);
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"count\":%" PRIu64 ",\"policy\":", e->count > 1 ? e->count : count);
	jstr(b, &n, sizeof b, e->policy ? e->policy : "none");
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"prev\":\"%s\"", a->prev);
	if (emit(a, b, n)) {
		a->n--;
		char t[32];
		kz_time_format(kz_now_wall_ns(), t);
		if (!a->lost)
			memcpy(a->lost_from, t, sizeof t);
		memcpy(a->lost_to, t, sizeof t);
		a->lost += e->count > 1 ? e->count : count;
	}
}

/* After a time when entries could not be written: one entry that says how many decisions
 * are missing and when, signed by the checkpoint that follows it at once. verify reports
 * it (exit 3: the chain is intact but the record is not complete). */
static void write_gap(struct kz_audit *a)
{
	if (!a->lost)
		return;
	char b[LINE_MAX_BYTES];
	size_t n = begin(a, b);
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"gap\":{\"lost\":%" PRIu64 ",\"from\":\"%s\",\"to\":\"%s\",\"error\":",
			      a->lost, a->lost_from, a->lost_to);
	jstr(b, &n, sizeof b, a->lost_error);
	n += (size_t)snprintf(b + n, sizeof b - n, "},\"prev\":\"%s\"", a->prev);
	if (emit(a, b, n)) {
		a->n--;
		return;
	}
	kz_warn("audit: %" PRIu64 " decisions between %s and %s could not be written (%s); a signed gap entry says so",
		a->lost, a->lost_from, a->lost_to, a->lost_error);
	a->lost = 0;
	a->since_ck = a->ck_entries; /* sign it now */
}

/* The ML-DSA-65 signature (hedged, context "kizuna-audit") of msg as hex; issue 5: beside
 * Ed25519, so that the checkpoints stay unforgeable after quantum computers. */
static int mldsa_sign(struct kz_audit *a, const char *msg, char out[2 * KZ_MLDSA65_SIG_BYTES + 1])
{
	uint8_t sig[KZ_MLDSA65_SIG_BYTES];
	uint8_t rnd[32];
	if (!a->mldsa_sk || RAND_priv_bytes(rnd, sizeof rnd) != 1 ||
	    kz_mldsa65_sign(a->mldsa_sk, (const uint8_t *)msg, strlen(msg), (const uint8_t *)MLDSA_CTX,
			    strlen(MLDSA_CTX), rnd, sig))
		return -1;
	kz_hex(sig, sizeof sig, out);
	return 0;
}

static void write_head(struct kz_audit *a, uint64_t n, const char *hash);

/* A checkpoint entry: the chain so far (entry a->n, its hash) signed with both keys, as an
 * entry of its own. Under a->lock and the file lock: the chain cannot advance meanwhile. */
static bool checkpoint_entry(struct kz_audit *a)
{
	char msg[160], b[LINE_MAX_BYTES];
	uint64_t n0 = a->n;
	size_t n = begin(a, b);
	snprintf(msg, sizeof msg, "kizuna-audit-checkpoint n=%" PRIu64 " prev=%s", a->n, a->prev);
	uint8_t sig[64];
	char sx[129];
	if (kz_ed25519_sign(a->priv, msg, strlen(msg), sig)) {
		a->n = n0;
		return false;
	}
	kz_hex(sig, 64, sx);
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"checkpoint\":{\"key\":\"%s\",\"sig\":\"%s\"", a->pub_hex, sx);
	char dx[2 * KZ_MLDSA65_SIG_BYTES + 1];
	if (mldsa_sign(a, msg, dx)) {
		a->n = n0;
		return false;
	}
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"mldsa\":\"%s\"},\"prev\":\"%s\"", dx, a->prev);
	if (emit(a, b, n)) {
		a->n = n0;
		return false;
	}
	a->since_ck = 0;
	a->last_ck_ms = kz_now_mono_ms();
	return true;
}

/* A checkpoint, synced, and the head naming it (cutting the log before it is detected): all
 * under the locks (closing, rotating, a new chain). */
static void checkpoint(struct kz_audit *a)
{
	if (checkpoint_entry(a) && !fdatasync(a->fd))
		write_head(a, a->n, a->prev);
}

/* The part of a checkpoint that can wait until the locks are let go: the sync of the file
 * (through a duplicate of its descriptor: a rotation may close a->fd meanwhile, and the
 * entry stays in the file it was written to) and the head, which costs a second ML-DSA-65
 * signature and a second sync. Under the locks these had stalled every thread that audits
 * for 3-4 ms per audit.checkpoint_entries entries: six times a second under 6,000 TAXII
 * pages a second (BENCHMARKS.md "TAXII ingest"). */
struct head_job {
	int fd; /* -1: nothing to do */
	uint64_t n;
	char hash[65];
};

static void checkpoint_later(struct kz_audit *a, struct head_job *hj)
{
	if (!checkpoint_entry(a))
		return;
	hj->fd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
	if (hj->fd < 0) { /* out of descriptors: as before, under the locks */
		if (!fdatasync(a->fd))
			write_head(a, a->n, a->prev);
		return;
	}
	hj->n = a->n;
	memcpy(hj->hash, a->prev, sizeof hj->hash);
}

static void head_finish(struct kz_audit *a, struct head_job *hj)
{
	if (hj->fd < 0)
		return;
	if (!fdatasync(hj->fd))
		write_head(a, hj->n, hj->hash);
	close(hj->fd);
}

/* DIR/head names entry n (hash), signed with both keys; replaced atomically, and never by an
 * older one (threads finish their checkpoints in any order). */
static void write_head(struct kz_audit *a, uint64_t n, const char *hash)
{
	pthread_mutex_lock(&a->head_lock);
	if (a->head_known && n <= a->head_n) {
		pthread_mutex_unlock(&a->head_lock);
		return;
	}
	char msg[160], path[4200], tmp[4300], sx[129], dx[2 * KZ_MLDSA65_SIG_BYTES + 1];
	uint8_t sig[64];
	snprintf(msg, sizeof msg, "kizuna-audit-head n=%" PRIu64 " hash=%s", n, hash);
	if (kz_ed25519_sign(a->priv, msg, strlen(msg), sig) || mldsa_sign(a, msg, dx)) {
		pthread_mutex_unlock(&a->head_lock);
		return;
	}
	kz_hex(sig, 64, sx);
	char head2[2 * KZ_MLDSA65_SIG_BYTES + 400];
	int hl = snprintf(head2, sizeof head2, "%" PRIu64 " %s %s %s\n", n, hash, sx, dx);
	snprintf(path, sizeof path, "%s/head", a->dir);
	/* written outside the file lock: another process (a command that audits) may write its
	 * head at the same time, each through its own temporary file; the last rename wins, and
	 * either names a checkpoint of the chain */
	snprintf(tmp, sizeof tmp, "%s/head.tmp.%ld", a->dir, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || kz_write_all(fd, head2, (size_t)hl) || fdatasync(fd) || rename(tmp, path))
		kz_error("audit: cannot write %s: %s", path, strerror(errno));
	else
		a->head_n = n, a->head_known = true;
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&a->head_lock);
}

/* The source a denial is summarised under: its subject, else the client's address without
 * the port (a refused handshake names only its address, in addr or resource). */
static void agg_source(const struct kz_audit_entry *e, char *out, size_t cap)
{
	if (e->subject && e->subject[0]) {
		snprintf(out, cap, "%s", e->subject);
		return;
	}
	const char *ad = e->addr && e->addr[0] ? e->addr : e->resource ? e->resource : "";
	snprintf(out, cap, "%s", ad);
	char *colon = strrchr(out, ':');
	if (colon && (out[0] != '[' || (colon > out && colon[-1] == ']')))
		*colon = 0; /* "1.2.3.4:5678", "[::1]:5678" */
}

static void agg_free(struct agg *g)
{
	for (int i = 0; i < 11; i++)
		free(g->buf[i]);
	memset(g, 0, sizeof *g);
}

/* Writes g's summary (when it counted anything) and removes it. */
static void write_entry(struct kz_audit *a, const struct kz_audit_entry *e, uint64_t count);
static void agg_flush(struct kz_audit *a, uint32_t i, uint64_t now)
{
	struct agg *g = &a->agg[i];
	if (g->count) {
		char reason[1000], res[AGG_SAMPLES * (AGG_SAMPLE_BYTES + 3) + 40];
		size_t rl = 0;
		res[0] = 0;
		for (uint32_t k = 0; k < g->n_samples; k++)
			rl += (size_t)snprintf(res + rl, sizeof res - rl, "%s%s", k ? " | " : "", g->samples[k]);
		snprintf(reason, sizeof reason, "%s (%" PRIu64 " more denials like this from %s within %" PRIu64
			 " ms after the entry that named the first; summarised: samples of what they asked for in resource)",
			 g->e.reason ? g->e.reason : "", g->count, g->src, now - g->start_ms);
		struct kz_audit_entry e = g->e;
		e.reason = reason;
		e.resource = res;
		e.count = 0;
		write_entry(a, &e, g->count);
	}
	agg_free(g);
	if (i + 1 < a->n_agg)
		memcpy(g, &a->agg[a->n_agg - 1], sizeof *g), memset(&a->agg[a->n_agg - 1], 0, sizeof *g);
	a->n_agg--;
}

/* Summaries whose window has ended (all of them with all = true). */
static void agg_sweep(struct kz_audit *a, uint64_t now, bool all)
{
	for (uint32_t i = 0; i < a->n_agg;) {
		if (all || now - a->agg[i].start_ms >= a->window_ms)
			agg_flush(a, i, now); /* the last entry moved into slot i */
		else
			i++;
	}
}

static bool agg_due(const struct kz_audit *a, uint64_t now)
{
	for (uint32_t i = 0; i < a->n_agg; i++)
		if (now - a->agg[i].start_ms >= a->window_ms)
			return true;
	return false;
}

static bool same(const char *x, const char *y) { return strcmp(x ? x : "", y ? y : "") == 0; }

static struct agg *agg_find(struct kz_audit *a, const char *src, const struct kz_audit_entry *e)
{
	for (uint32_t i = 0; i < a->n_agg; i++) {
		struct agg *g = &a->agg[i];
		if (strcmp(g->src, src) == 0 && same(g->e.action, e->action) && same(g->e.reason, e->reason))
			return g;
	}
	return NULL;
}

/* A new window for e's kind (after its entry was written in full). */
static void agg_start(struct kz_audit *a, const char *src, const struct kz_audit_entry *e, uint64_t now)
{
	if (!a->agg)
		return;
	if (a->n_agg == AGG_MAX) { /* full: the oldest window ends early */
		uint32_t old = 0;
		for (uint32_t i = 1; i < a->n_agg; i++)
			if (a->agg[i].start_ms < a->agg[old].start_ms)
				old = i;
		agg_flush(a, old, now);
	}
	struct agg *g = &a->agg[a->n_agg++];
	memset(g, 0, sizeof *g);
	snprintf(g->src, sizeof g->src, "%s", src);
	const char *v[11] = { e->subject, e->action, e->resource, e->reason, e->serial, e->label, e->policy,
			      e->issuer, e->tls, e->addr, e->tls_group };
	for (int i = 0; i < 11; i++)
		g->buf[i] = v[i] ? strdup(v[i]) : NULL;
	g->e = (struct kz_audit_entry){ .subject = g->buf[0], .action = g->buf[1], .resource = g->buf[2],
					.reason = g->buf[3], .serial = g->buf[4], .label = g->buf[5], .policy = g->buf[6],
					.issuer = g->buf[7], .tls = g->buf[8], .addr = g->buf[9], .tls_group = g->buf[10],
					.allow = false };
	g->start_ms = now;
}

static void agg_count(struct agg *g, const struct kz_audit_entry *e)
{
	g->count += e->count > 1 ? e->count : 1;
	const char *r = e->resource ? e->resource : "";
	if (g->n_samples == AGG_SAMPLES || same(r, g->e.resource))
		return;
	for (uint32_t k = 0; k < g->n_samples; k++)
		if (strncmp(g->samples[k], r, AGG_SAMPLE_BYTES - 1) == 0)
			return;
	snprintf(g->samples[g->n_samples++], AGG_SAMPLE_BYTES, "%s", r);
}

static int load_tail(struct kz_audit *a, const char *path, char *why, size_t why_len);

/* Takes the log for writing across processes; continues the chain after entries another
 * process appended since our last write. */
static int tail_of_rotated(struct kz_audit *a);
static void find_first(struct kz_audit *a);

static void xlock(struct kz_audit *a)
{
	while (flock(a->fd, LOCK_EX) && errno == EINTR)
		;
	char path[4200], why[300];
	snprintf(path, sizeof path, "%s/audit.log", a->dir);
	struct stat st, ps;
	/* another process rotated the log: our descriptor is the renamed file; follow it */
	if (fstat(a->fd, &st) == 0 && stat(path, &ps) == 0 && st.st_ino != ps.st_ino) {
		int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			while (flock(fd, LOCK_EX) && errno == EINTR)
				;
			close(a->fd); /* and its lock */
			a->fd = fd;
			a->end = -1; /* read its tail below */
			if (fstat(a->fd, &st))
				return;
		}
	}
	if (st.st_size != a->end) {
		if (load_tail(a, path, why, sizeof why))
			kz_error("audit: %s", why);
		else if (a->n == 0)
			(void)tail_of_rotated(a);
		find_first(a);
	}
}

static void xunlock(struct kz_audit *a) { (void)flock(a->fd, LOCK_UN); }

static atomic_uint_fast64_t n_allowed, n_denied;

void kz_audit_decisions(uint64_t *allowed, uint64_t *denied)
{
	*allowed = atomic_load(&n_allowed);
	*denied = atomic_load(&n_denied);
}

static void maybe_rotate(struct kz_audit *a);

void kz_audit_record(struct kz_audit *a, const struct kz_audit_entry *e)
{
	atomic_fetch_add_explicit(e->allow ? &n_allowed : &n_denied, e->count ? e->count : 1, memory_order_relaxed);
	pthread_mutex_lock(&a->lock);
	uint64_t now = kz_now_mono_ms();
	char src[300] = "";
	struct agg *g = NULL;
	if (!e->allow) {
		agg_source(e, src, sizeof src);
		g = agg_find(a, src, e);
		if (g && now - g->start_ms < a->window_ms && !a->lost) {
			agg_count(g, e); /* counted: its kind's summary entry says it */
			pthread_mutex_unlock(&a->lock);
			return;
		}
	}
	xlock(a);
	write_gap(a);
	agg_sweep(a, now, false); /* g's window (if any) ended: its summary goes first */
	write_entry(a, e, 1);
	if (!e->allow)
		agg_start(a, src, e, now);
	struct head_job hj = { .fd = -1 };
	if (a->since_ck >= a->ck_entries || now - a->last_ck_ms >= a->ck_ms)
		checkpoint_later(a, &hj);
	maybe_rotate(a);
	xunlock(a);
	pthread_mutex_unlock(&a->lock);
	head_finish(a, &hj);
}

/* ---------- open ---------- */


/* The last complete entry of the file fd (size bytes): its number and hash (*n 0, hash all
 * zeros when there is none) and the offset where complete lines end (*good). 0, KZ_EIO when
 * it cannot be read, KZ_EMALFORMED when the last line is not an audit entry. */
static int last_entry(int fd, off_t size, uint64_t *n, char hash[65], off_t *good)
{
	memcpy(hash, HEX_ZERO, 65);
	*n = 0;
	size_t win = size > 2 * LINE_MAX_BYTES ? 2 * LINE_MAX_BYTES : (size_t)size;
	char *b = malloc(win + 1);
	if (!b)
		return KZ_ENOMEM;
	if (win && kz_pread_all(fd, b, win, (uint64_t)(size - (off_t)win))) {
		free(b);
		return KZ_EIO;
	}
	b[win] = 0;
	/* the last newline ends the last complete line */
	size_t end = win;
	while (end > 0 && b[end - 1] != '\n')
		end--;
	*good = size - (off_t)(win - end);
	int rc = KZ_OK;
	if (end > 0) {
		size_t start = end - 1;
		while (start > 0 && b[start - 1] != '\n')
			start--;
		const char *line = b + start, *h = NULL;
		for (const char *p = line; (p = strstr(p, ",\"hash\":\"")) != NULL && p < b + end; p++)
			h = p;
		if (!h || (size_t)(b + end - h) < 9 + 64 || sscanf(line, "{\"n\":%" SCNu64, n) != 1) {
			*n = 0;
			rc = KZ_EMALFORMED;
		} else {
			memcpy(hash, h + 9, 64);
			hash[64] = 0;
		}
	}
	free(b);
	return rc;
}

/* Finds the last complete entry: its number and hash; cuts an incomplete last line. */
static int load_tail(struct kz_audit *a, const char *path, char *why, size_t why_len)
{
	struct stat st;
	off_t good;
	if (fstat(a->fd, &st))
		return KZ_EIO;
	int rc = last_entry(a->fd, st.st_size, &a->n, a->prev, &good);
	if (rc == KZ_EIO)
		snprintf(why, why_len, "cannot read %s", path);
	else if (rc == KZ_EMALFORMED)
		snprintf(why, why_len, "%s: the last entry is not an audit entry (run `kizuna audit verify`)", path);
	if (rc)
		return rc == KZ_ENOMEM ? rc : KZ_EIO;
	if (good < st.st_size) {
		kz_warn("audit: cut %lld bytes of an incomplete last entry from %s", (long long)(st.st_size - good), path);
		if (ftruncate(a->fd, good))
			return KZ_EIO;
	}
	a->end = good;
	return KZ_OK;
}

#define NO_HEAD (UINT64_MAX - 1)
/* The entry number DIR/audit/head names, NO_HEAD when there is none, UINT64_MAX when it is
 * unreadable. */
static uint64_t head_number(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/head", dir);
	FILE *f = fopen(path, "r");
	uint64_t n = NO_HEAD;
	if (f) {
		if (fscanf(f, "%" SCNu64, &n) != 1)
			n = UINT64_MAX; /* unreadable: as if ahead of any log */
		fclose(f);
	}
	return n;
}

/* A log shorter than its last signed head was cut, emptied or replaced: a start must not
 * sign it afresh (that would launder the loss). */
static int check_length(struct kz_audit *a, char *why, size_t why_len)
{
	uint64_t head = head_number(a->dir);
	if (head == NO_HEAD && !a->new_keys && a->n == 0) {
		snprintf(why, why_len, "%s/audit.log is missing or empty but its signing key exists: the log was deleted "
			 "or emptied. `kizuna audit reset --data DIR --reason TEXT` starts a new chain that says so", a->dir);
		return KZ_EIO;
	}
	if (head != NO_HEAD)
		a->head_n = head, a->head_known = true;
	if (head == NO_HEAD && a->new_keys)
		write_head(a, a->n, a->prev); /* a new log: its (empty) head exists from the start */
	if (head != NO_HEAD && head > a->n) {
		snprintf(why, why_len, "%s/audit.log ends at entry %" PRIu64 " but its last signed head (%s/head) is entry "
			 "%" PRIu64 ": the log was cut, emptied or replaced. Keep it for investigation; `kizuna audit reset "
			 "--data DIR --reason TEXT` moves it aside and starts a new chain that names it",
			 a->dir, a->n, a->dir, head == UINT64_MAX ? 0 : head);
		return KZ_EIO;
	}
	return KZ_OK;
}

static int audit_open(const char *dir, uint32_t ck_entries, uint32_t ck_ms, bool new_chain, struct kz_audit **out,
		      char *why, size_t why_len);

int kz_audit_open(const char *dir, uint32_t ck_entries, uint32_t ck_ms, struct kz_audit **out, char *why,
		  size_t why_len)
{
	return audit_open(dir, ck_entries, ck_ms, false, out, why, why_len);
}

static int audit_open(const char *dir, uint32_t ck_entries, uint32_t ck_ms, bool new_chain, struct kz_audit **out,
		      char *why, size_t why_len)
{
	*out = NULL;
	struct kz_audit *a = calloc(1, sizeof *a);
	if (!a)
		return KZ_ENOMEM;
	snprintf(a->dir, sizeof a->dir, "%s", dir);
	a->ck_entries = ck_entries ? ck_entries : 1000;
	a->ck_ms = ck_ms ? ck_ms : 10000;
	a->last_ck_ms = kz_now_mono_ms();
	char path[4200];
	snprintf(path, sizeof path, "%s/audit.log", dir);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
		free(a);
		return KZ_EIO;
	}
	int rc = kz_audit_load_key(a, why, why_len);
	if (!rc) {
		a->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (a->fd < 0) {
			snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
			rc = KZ_EIO;
		}
	}
	if (!rc) {
		/* under the writers' lock: never cut another process's line while it is written */
		while (flock(a->fd, LOCK_EX) && errno == EINTR)
			;
		rc = load_tail(a, path, why, why_len);
		if (!rc && a->n == 0)
			(void)tail_of_rotated(a); /* the chain continues from the rotated files */
		if (!rc)
			find_first(a);
		if (!rc && !new_chain)
			rc = check_length(a, why, why_len);
		(void)flock(a->fd, LOCK_UN);
	}
	if (rc) {
		if (a->fd > 0)
			close(a->fd);
		free(a->mldsa_sk);
		free(a);
		return rc;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->head_lock, NULL);
	a->agg = calloc(AGG_MAX, sizeof *a->agg);
	a->window_ms = 10000;
	*out = a;
	return KZ_OK;
}

void kz_audit_set_limits(struct kz_audit *a, uint32_t window_ms, uint64_t max_file_bytes, uint32_t max_files)
{
	pthread_mutex_lock(&a->lock);
	a->window_ms = window_ms ? window_ms : 1;
	a->max_file_bytes = max_file_bytes;
	a->max_files = max_files;
	pthread_mutex_unlock(&a->lock);
}

/* ---------- rotation ----------
 *
 * When audit.log reaches audit.max_file_bytes it ends with a checkpoint and is renamed
 * audit-<its first entry number, 20 digits>.log; the new audit.log continues the chain (its
 * first entry's prev is the last hash of the old file). Beyond audit.max_files rotated
 * files the oldest is deleted, after a "pruned" entry in the chain names it, its last entry
 * and that entry's hash: verify accepts a log that starts after entry 1 only with that
 * signed record of why. */

#define ROT_PREFIX "audit-"
#define ROT_SUFFIX ".log"

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return p < q ? -1 : p > q;
}

/* The first entry numbers of the rotated files, ascending (malloc'd; *n of them). */
uint64_t *kz_audit_rotated_files(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	uint64_t *v = NULL;
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l != strlen(ROT_PREFIX) + 20 + strlen(ROT_SUFFIX) || strncmp(de->d_name, ROT_PREFIX, strlen(ROT_PREFIX)) ||
		    strcmp(de->d_name + l - strlen(ROT_SUFFIX), ROT_SUFFIX))
			continue;
		char *e;
		uint64_t first = strtoull(de->d_name + strlen(ROT_PREFIX), &e, 10);
		if (e != de->d_name + strlen(ROT_PREFIX) + 20)
			continue;
		if (*n == cap) {
			uint64_t *nv = kz_array_grow(v, sizeof *nv, cap, *n + 1, 16, SIZE_MAX, &cap);
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = first;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof *v, cmp_u64);
	return v;
}

void kz_audit_rotated_path(char *out, size_t cap, const char *dir, uint64_t first)
{
	snprintf(out, cap, "%s/" ROT_PREFIX "%020" PRIu64 ROT_SUFFIX, dir, first);
}

/* The number and hash of the last entry of a file; 0 when none. */
static int file_tail(const char *path, uint64_t *n, char hash[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	off_t good;
	int rc = fstat(fd, &st) || last_entry(fd, st.st_size, n, hash, &good) || *n == 0 ? -1 : 0;
	close(fd);
	return rc;
}

/* audit.log is empty (a rotation just happened): the chain continues from the newest rotated file. */
static int tail_of_rotated(struct kz_audit *a)
{
	size_t nr;
	uint64_t *r = kz_audit_rotated_files(a->dir, &nr);
	int rc = -1;
	if (nr) {
		char path[4300];
		kz_audit_rotated_path(path, sizeof path, a->dir, r[nr - 1]);
		rc = file_tail(path, &a->n, a->prev);
	}
	free(r);
	a->first_n = a->n + 1;
	return rc;
}

/* The first entry number of audit.log (a->n + 1 when empty). */
static void find_first(struct kz_audit *a)
{
	char b[64] = "";
	ssize_t r = pread(a->fd, b, sizeof b - 1, 0);
	uint64_t n;
	a->first_n = r > 0 && sscanf(b, "{\"n\":%" SCNu64, &n) == 1 ? n : a->n + 1;
}

/* Deletes the oldest rotated files beyond audit.max_files, each after a signed record of it. */
static void prune(struct kz_audit *a)
{
	size_t nr;
	uint64_t *r = kz_audit_rotated_files(a->dir, &nr);
	for (size_t i = 0; a->max_files && i + a->max_files < nr; i++) {
		char path[4300], hash[65], b[LINE_MAX_BYTES];
		uint64_t last;
		kz_audit_rotated_path(path, sizeof path, a->dir, r[i]);
		if (file_tail(path, &last, hash))
			break;
		size_t n = begin(a, b);
		n += (size_t)snprintf(b + n, sizeof b - n, ",\"pruned\":{\"file\":\"" ROT_PREFIX "%020" PRIu64 ROT_SUFFIX
				      "\",\"first\":%" PRIu64 ",\"through\":%" PRIu64 ",\"hash\":\"%s\",\"reason\":\"audit.max_files = %u\"}"
				      ",\"prev\":\"%s\"", r[i], r[i], last, hash, a->max_files, a->prev);
		if (emit(a, b, n)) {
			a->n--;
			break;
		}
		checkpoint(a); /* signed before the file goes */
		if (unlink(path))
			kz_error("audit: cannot delete %s: %s", path, strerror(errno));
		else
			kz_info("audit: deleted %s (entries %" PRIu64 " to %" PRIu64 "; audit.max_files = %u)", path, r[i], last,
				a->max_files);
	}
	free(r);
}

static void maybe_rotate(struct kz_audit *a)
{
	if (!a->max_file_bytes || a->end < (off_t)a->max_file_bytes || a->failing)
		return;
	if (a->since_ck)
		checkpoint(a); /* the file ends signed */
	char path[4200], to[4300];
	snprintf(path, sizeof path, "%s/audit.log", a->dir);
	kz_audit_rotated_path(to, sizeof to, a->dir, a->first_n);
	int fd = -1;
	if (access(to, F_OK) == 0 || rename(path, to) ||
	    (fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
		kz_error("audit: cannot rotate %s to %s: %s", path, to, strerror(errno));
		return;
	}
	while (flock(fd, LOCK_EX) && errno == EINTR)
		;
	close(a->fd); /* the old file's lock goes with it; the new one is held */
	a->fd = fd;
	a->end = 0;
	a->first_n = a->n + 1;
	int dfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	kz_info("audit: rotated %s to %s (audit.max_file_bytes = %llu)", path, to, (unsigned long long)a->max_file_bytes);
	prune(a);
}

bool kz_audit_is_new(const struct kz_audit *a)
{
	return a && a->new_keys;
}

void kz_audit_tick(struct kz_audit *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	uint64_t now = kz_now_mono_ms();
	struct head_job hj = { .fd = -1 };
	if (a->failing || a->lost || agg_due(a, now)) {
		xlock(a);
		write_gap(a);
		agg_sweep(a, now, false);
		if (!a->lost && a->since_ck && (a->failing || now - a->last_ck_ms >= a->ck_ms))
			checkpoint_later(a, &hj);
		maybe_rotate(a);
		xunlock(a);
	}
	pthread_mutex_unlock(&a->lock);
	head_finish(a, &hj);
}

int kz_audit_new_chain(const char *dir, const char *reason, char *qdir_out, size_t qdir_len, char *why, size_t why_len)
{
	char head[4200], logp[4200], qdir[4200], to[4400], hash[65] = "";
	uint64_t head_n = 0;
	snprintf(head, sizeof head, "%s/head", dir);
	snprintf(logp, sizeof logp, "%s/audit.log", dir);
	FILE *f = fopen(head, "r");
	if (f) {
		if (fscanf(f, "%" SCNu64 " %64s", &head_n, hash) != 2)
			head_n = 0, hash[0] = 0;
		fclose(f);
	}
	char t[32];
	kz_time_format(kz_now_wall_ns(), t);
	snprintf(qdir, sizeof qdir, "%s/quarantine-%s", dir, t);
	if (mkdir(qdir, 0700)) {
		snprintf(why, why_len, "cannot create %s: %s", qdir, strerror(errno));
		return KZ_EIO;
	}
	snprintf(to, sizeof to, "%s/audit.log", qdir);
	if (rename(logp, to) && errno != ENOENT) {
		snprintf(why, why_len, "cannot move %s to %s: %s", logp, to, strerror(errno));
		return KZ_EIO;
	}
	size_t nrot;
	uint64_t *rot = kz_audit_rotated_files(dir, &nrot);
	for (size_t i = 0; i < nrot; i++) {
		char from[4300];
		kz_audit_rotated_path(from, sizeof from, dir, rot[i]);
		kz_audit_rotated_path(to, sizeof to, qdir, rot[i]);
		if (rename(from, to)) {
			snprintf(why, why_len, "cannot move %s to %s: %s", from, to, strerror(errno));
			free(rot);
			return KZ_EIO;
		}
	}
	free(rot);
	snprintf(to, sizeof to, "%s/head", qdir);
	if (rename(head, to) && errno != ENOENT) {
		snprintf(why, why_len, "cannot move %s to %s: %s", head, to, strerror(errno));
		return KZ_EIO;
	}
	struct kz_audit *a;
	int rc = audit_open(dir, 0, 0, true, &a, why, why_len);
	if (rc)
		return rc;
	/* entry 1 names what it follows: verify reports the chain as a continuation */
	char b[LINE_MAX_BYTES];
	pthread_mutex_lock(&a->lock);
	xlock(a);
	size_t n = begin(a, b);
	n += (size_t)snprintf(b + n, sizeof b - n, ",\"chain\":{\"after_n\":%" PRIu64 ",\"after_hash\":\"%s\",\"quarantine\":",
			      head_n, hash);
	jstr(b, &n, sizeof b, strrchr(qdir, '/') + 1);
	put(b, &n, sizeof b, ",\"reason\":");
	jstr(b, &n, sizeof b, reason);
	n += (size_t)snprintf(b + n, sizeof b - n, "},\"prev\":\"%s\"", a->prev);
	rc = emit(a, b, n) ? KZ_EIO : KZ_OK;
	if (rc)
		snprintf(why, why_len, "cannot write %s: %s", logp, a->lost_error);
	else
		checkpoint(a);
	xunlock(a);
	pthread_mutex_unlock(&a->lock);
	kz_audit_close(a);
	snprintf(qdir_out, qdir_len, "%s", qdir);
	return rc;
}

void kz_audit_close(struct kz_audit *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	xlock(a);
	write_gap(a);
	agg_sweep(a, kz_now_mono_ms(), true);
	if (a->since_ck || a->n == 0) /* an empty log gets a signed head too */
		checkpoint(a);
	xunlock(a);
	pthread_mutex_unlock(&a->lock);
	close(a->fd);
	free(a->agg);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->head_lock);
	memset(a->priv, 0, sizeof a->priv);
	if (a->mldsa_sk)
		OPENSSL_cleanse(a->mldsa_sk, KZ_MLDSA65_SK_BYTES);
	free(a->mldsa_sk);
	free(a);
}
