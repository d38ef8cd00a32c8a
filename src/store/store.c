/* store.c — the store thread: group commit of submitted records.
 *
 * Producers append items to `pending` under the lock (one lock per batch of theirs) and
 * signal. The thread swaps `pending` for its empty `work` vector, writes all of it with one
 * kz_reclog_append (one write, one fdatasync in mode always), then calls every item's done
 * callback with the outcome. While it writes, new items gather for the next group; the
 * busier the node, the bigger the groups and the cheaper each record.
 *
 * Errors (disk full, I/O): the batch's callbacks get the error, nothing of it is
 * acknowledged; the state change is logged once, and the next batch tries again, so
 * writing resumes by itself when space returns.
 *
 * The index thread owns the index's writing connection: woken after each batch, it
 * indexes what was written (in transactions of at most INDEX_BATCH records, so that it
 * never holds the database long) and runs retention every retention interval. It can fall
 * behind under load without slowing the store thread; it catches up from the log. */
#include "store/store.h"
#include "base/kz_err.h"
#include "base/kz_log.h"
#include "base/kz_mem.h"
#include "base/kz_time.h"

#include <inttypes.h>
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct itemvec {
	struct kz_store_item *v;
	size_t n, cap;
};

#define INDEX_BATCH 20000
#define TRIM_AFTER_BYTES (4u << 20)
#define INDEX_NICE 10
#define FLOOR_RING 4096

struct kz_store {
	struct kz_reclog *log;
	/* index thread */
	struct kz_index *index, *reader;
	pthread_t index_thread;
	bool index_started, index_kick, index_stopping;
	atomic_bool index_failing;            /* read by /healthz */
	_Atomic uint64_t indexed_through;     /* the index's high-water mark, for /healthz */
	pthread_mutex_t index_lock, reader_lock;
	pthread_cond_t index_cond;
	uint32_t retention_ms;
	bool no_qos0_rules;
	struct kz_retention_rule *rules;
	size_t n_rules;
	char *log_dir;
	uint32_t max_record_bytes;
	_Atomic uint64_t durable_next;
	_Atomic uint64_t pending_bytes;
	_Atomic uint64_t submitted, finished; /* items queued; items whose done ran (in order) */
	void (*batch_end)(void *arg);
	void (*durable)(void *arg);
	void *batch_arg;
	/* store thread */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct itemvec pending, work;
	struct kz_bytes *bodies;
	struct kz_reclog_pos *pos; /* where each body of the batch went */
	size_t bodies_cap;
	bool stopping;
	uint64_t advance_to;                  /* kz_store_advance: start the log there (under lock) */
	atomic_bool failing;                  /* read by /healthz */
	_Atomic uint64_t write_errors;        /* batches that could not be written */
	uint32_t interval_ms;
	/* The oldest accept time in each recent batch (kz_store_time_floor), a ring under
	 * floor_lock: written once per batch by the store thread. */
	pthread_mutex_t floor_lock;
	struct floor_entry { uint64_t first, end, min_time; } floors[FLOOR_RING];
	uint64_t n_floors; /* batches recorded; the ring holds the last FLOOR_RING */
};

static void run_batch(struct kz_store *st)
{
	struct itemvec *w = &st->work;
	if (w->n > st->bodies_cap) {
		struct kz_bytes *nb = realloc(st->bodies, w->n * sizeof *nb);
		struct kz_reclog_pos *np = nb ? realloc(st->pos, w->n * sizeof *np) : NULL;
		if (nb)
			st->bodies = nb;
		if (np) {
			st->pos = np;
			st->bodies_cap = w->n;
		}
	}
	int rc = KZ_ENOMEM;
	uint64_t first = 0;
	char why[512] = "";
	if (st->bodies_cap >= w->n) {
		for (size_t i = 0; i < w->n; i++)
			st->bodies[i] = (struct kz_bytes){ w->v[i].data, w->v[i].len };
		rc = kz_reclog_append_pos(st->log, st->bodies, w->n, &first, st->pos, why, sizeof why);
	}
	if (rc)
		atomic_fetch_add(&st->write_errors, 1);
	if (rc && !st->failing) {
		kz_error("store: writes fail, publishes are refused until they succeed: %s",
			 why[0] ? why : kz_strerror(rc));
		st->failing = true;
	} else if (!rc && st->failing) {
		kz_warn("store: writes succeed again");
		st->failing = false;
	}
	uint64_t bytes = 0, lo = UINT64_MAX;
	for (size_t i = 0; !rc && i < w->n; i++) {
		uint64_t t = kz_record_time_of(w->v[i].data, w->v[i].len);
		if (t && t < lo)
			lo = t;
	}
	for (size_t i = 0; i < w->n; i++) {
		if (w->v[i].pos && !rc)
			*w->v[i].pos = st->pos[i];
		if (w->v[i].done)
			w->v[i].done(w->v[i].ctx, rc, rc ? 0 : first + i);
		bytes += w->v[i].len;
		if (!w->v[i].borrowed)
			free(w->v[i].data);
	}
	atomic_fetch_sub_explicit(&st->pending_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->finished, w->n, memory_order_release);
	if (!rc && w->n) {
		pthread_mutex_lock(&st->floor_lock);
		st->floors[st->n_floors++ % FLOOR_RING] = (struct floor_entry){ first, first + w->n, lo };
		pthread_mutex_unlock(&st->floor_lock);
	}
	/* A large batch was allocated by the workers record by record and is freed here in
	 * order: the pages stay with their arenas (resident) unless handed back now, and a
	 * flood would hold its high-water mark (limits.max_store_backlog) several times over. */
	if (bytes >= TRIM_AFTER_BYTES)
		kz_mem_trim(); /* beyond what the process keeps for reuse (kz_mem.h) */
	if (st->batch_end)
		st->batch_end(st->batch_arg);
	/* Readers (replays) see a record only after its callback ran: by then its message
	 * knows its sequence number, which the replay seam relies on. */
	if (!rc)
		atomic_store_explicit(&st->durable_next, first + w->n, memory_order_release);
	if (!rc && st->durable)
		st->durable(st->batch_arg);
	w->n = 0;
	if (!rc && st->index_started) {
		pthread_mutex_lock(&st->index_lock);
		st->index_kick = true;
		pthread_cond_signal(&st->index_cond);
		pthread_mutex_unlock(&st->index_lock);
	}
}

static void index_error(struct kz_store *st, int rc, const char *why)
{
	if (rc && !st->index_failing)
		kz_error("index: %s; queries may miss recent records until it recovers", why);
	else if (!rc && st->index_failing)
		kz_warn("index: working again");
	st->index_failing = rc != 0;
}

static void *index_main(void *arg)
{
	struct kz_store *st = arg;
	uint64_t next_retention = kz_now_mono_ms() + st->retention_ms;
	char why[512];
	/* Background work: on a busy machine delivery gets the CPU first; the index falls
	 * behind and catches up when there is time (Linux: nice applies per thread). */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), INDEX_NICE))
		kz_debug("index: cannot lower the index thread's priority: %s", strerror(errno));
	pthread_mutex_lock(&st->index_lock);
	while (!st->index_stopping) {
		st->index_kick = false;
		pthread_mutex_unlock(&st->index_lock);
		uint64_t added = 0;
		why[0] = 0;
		int rc = kz_index_catch_up(st->index, INDEX_BATCH, &added, why, sizeof why);
		index_error(st, rc, why);
		atomic_store(&st->indexed_through, kz_index_through(st->index));
		if (st->n_rules && kz_now_mono_ms() >= next_retention) {
			struct kz_retention_report rep;
			rc = kz_index_retention(st->index, kz_now_wall_ns(), &rep, why, sizeof why);
			index_error(st, rc, why);
			if (rep.records_dropped)
				kz_info("retention: dropped %" PRIu64 " records (%" PRIu64 " bytes); %u segments "
					"rewritten, %u deleted", rep.records_dropped, rep.bytes_dropped,
					rep.segments_rewritten, rep.segments_deleted);
			next_retention = kz_now_mono_ms() + st->retention_ms;
		}
		pthread_mutex_lock(&st->index_lock);
		if (!rc && added == INDEX_BATCH)
			continue; /* more to index: go on without waiting */
		if (!st->index_kick && !st->index_stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1; /* retention checks and error retries */
			pthread_cond_timedwait(&st->index_cond, &st->index_lock, &ts);
		}
	}
	pthread_mutex_unlock(&st->index_lock);
	return NULL;
}

static _Thread_local bool on_store_thread;

bool kz_store_on_store_thread(void) { return on_store_thread; }

static void *store_main(void *arg)
{
	struct kz_store *st = arg;
	on_store_thread = true;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		if (st->advance_to) { /* before any later batch: numbers below it were used */
			uint64_t to = st->advance_to;
			st->advance_to = 0;
			pthread_mutex_unlock(&st->lock);
			char why[512];
			if (kz_reclog_advance(st->log, to, why, sizeof why))
				kz_error("store: cannot move the log past used sequence numbers: %s", why);
			else
				atomic_store_explicit(&st->durable_next, kz_reclog_next_seq(st->log), memory_order_release);
			pthread_mutex_lock(&st->lock);
			continue;
		}
		while (st->pending.n == 0 && !st->stopping && !st->advance_to) {
			if (st->interval_ms) { /* interval mode: wake up to sync what is due */
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += (long)(st->interval_ms % 1000) * 1000000L;
				ts.tv_sec += st->interval_ms / 1000 + ts.tv_nsec / 1000000000L;
				ts.tv_nsec %= 1000000000L;
				pthread_cond_timedwait(&st->cond, &st->lock, &ts);
				pthread_mutex_unlock(&st->lock);
				char why[256];
				if (kz_reclog_sync_due(st->log, why, sizeof why))
					kz_error("store: %s", why);
				pthread_mutex_lock(&st->lock);
			} else {
				pthread_cond_wait(&st->cond, &st->lock);
			}
		}
		if (st->advance_to)
			continue; /* first, at the top */
		if (st->pending.n == 0 && st->stopping)
			break;
		struct itemvec t = st->work;
		st->work = st->pending;
		st->pending = t;
		pthread_mutex_unlock(&st->lock);
		run_batch(st);
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

static void store_free(struct kz_store *st)
{
	kz_index_close(st->index);
	kz_index_close(st->reader);
	kz_reclog_close(st->log);
	free(st->pending.v);
	free(st->work.v);
	free(st->bodies);
	free(st->pos);
	free(st->rules);
	free(st->log_dir);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->floor_lock);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->index_lock);
	pthread_mutex_destroy(&st->reader_lock);
	pthread_cond_destroy(&st->index_cond);
	free(st);
}

/* The index file and its WAL companions: derived data, removed to be rebuilt. */
static void index_remove(const char *path)
{
	char p[4200];
	(void)unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	(void)unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	(void)unlink(p);
}

/* Opens the index and checks it against the log before anything trusts it: a damaged file,
 * or rows for records the log does not hold (its tail was cut: a torn write with fsync
 * interval or never, a disk fault, `store repair`), and it is rebuilt from the log; the log
 * first moves past every sequence number the index saw, so that none is used twice. */
static int index_open_checked(struct kz_store *st, const struct kz_index_config *icfg, char *why, size_t why_len)
{
	int rc = kz_index_open(icfg, &st->index, why, why_len);
	if (rc == KZ_EMALFORMED) {
		kz_warn("%s; the index is damaged: rebuilding it from the log", why);
		index_remove(icfg->path);
		return kz_index_open(icfg, &st->index, why, why_len);
	}
	if (rc)
		return rc;
	uint64_t hw, next = kz_reclog_next_seq(st->log);
	char r[400];
	if (!kz_index_check(st->index, next, &hw, r, sizeof r))
		return KZ_OK;
	kz_warn("index %s does not match the record log: %s; rebuilding it from the log", icfg->path, r);
	if (hw >= next) {
		kz_warn("record log: numbers up to %" PRIu64 " were used before; new records start at %" PRIu64
			" so that none is reused", hw, hw + 1);
		if ((rc = kz_reclog_advance(st->log, hw + 1, why, why_len)))
			return rc;
	}
	kz_index_close(st->index);
	st->index = NULL;
	index_remove(icfg->path);
	return kz_index_open(icfg, &st->index, why, why_len);
}

int kz_store_open(const struct kz_store_config *cfg, struct kz_store **out, struct kz_reclog_recovery *rec,
		  char *why, size_t why_len)
{
	*out = NULL;
	struct kz_store *st = calloc(1, sizeof *st);
	if (!st)
		return KZ_ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->floor_lock, NULL);
	pthread_cond_init(&st->cond, NULL);
	pthread_mutex_init(&st->index_lock, NULL);
	pthread_mutex_init(&st->reader_lock, NULL);
	pthread_cond_init(&st->index_cond, NULL);
	st->log_dir = strdup(cfg->log.dir);
	st->max_record_bytes = cfg->log.max_record_bytes;
	int rc = st->log_dir ? kz_reclog_open(&cfg->log, &st->log, rec, why, why_len) : KZ_ENOMEM;
	if (!rc && cfg->n_rules) {
		st->rules = malloc(cfg->n_rules * sizeof *st->rules);
		if (!st->rules)
			rc = KZ_ENOMEM;
		else
			memcpy(st->rules, cfg->rules, cfg->n_rules * sizeof *st->rules);
		st->n_rules = cfg->n_rules;
		for (size_t i = 0; i < cfg->n_rules; i++)
			st->no_qos0_rules |= cfg->rules[i].no_qos0;
	}
	st->retention_ms = cfg->retention_interval_ms ? cfg->retention_interval_ms : 60000;
	st->batch_end = cfg->batch_end;
	st->durable = cfg->durable;
	st->batch_arg = cfg->batch_arg;
	if (!rc && cfg->index_path) {
		struct kz_index_config icfg = { cfg->index_path, cfg->log.dir, cfg->log.max_record_bytes,
						cfg->rules, cfg->n_rules, false };
		uint64_t t0 = kz_now_mono_ms(), total = 0, added, said = t0;
		if (!rc)
			rc = index_open_checked(st, &icfg, why, why_len);
		uint64_t end = st->log ? kz_reclog_next_seq(st->log) - 1 : 0;
		if (!rc && kz_index_through(st->index) < end)
			kz_info("index: bringing it up to date with the log (records %" PRIu64 " to %" PRIu64
				"); the listeners open when it is done", kz_index_through(st->index) + 1, end);
		do {
			if (!rc)
				rc = kz_index_catch_up(st->index, INDEX_BATCH, &added, why, why_len);
			total += rc ? 0 : added;
			uint64_t now = kz_now_mono_ms();
			if (!rc && added == INDEX_BATCH && now - said >= 2000) { /* progress on long rebuilds */
				said = now;
				uint64_t at = kz_index_through(st->index);
				kz_info("index: %" PRIu64 " records indexed (%" PRIu64 "/s), %" PRIu64 " to go", total,
					total * 1000 / (now - t0 ? now - t0 : 1), end > at ? end - at : 0);
			}
		} while (!rc && added == INDEX_BATCH);
		if (!rc && total)
			kz_info("index: %" PRIu64 " records indexed in %" PRIu64 " ms", total, kz_now_mono_ms() - t0);
		if (st->index)
			atomic_store(&st->indexed_through, kz_index_through(st->index));
		icfg.read_only = true;
		if (!rc)
			rc = kz_index_open(&icfg, &st->reader, why, why_len);
	}
	if (!rc)
		atomic_init(&st->durable_next, kz_reclog_next_seq(st->log));
	st->interval_ms = cfg->log.fsync == KZ_FSYNC_INTERVAL ?
			  (cfg->log.fsync_interval_ms ? cfg->log.fsync_interval_ms : 1) : 0;
	/* The store's threads take no process signals (SIGTERM is the node's main loop's, which
	 * blocks it only when it gets there): they start with every signal blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (!rc && st->index) {
		if (pthread_create(&st->index_thread, NULL, index_main, st))
			rc = KZ_ENOMEM;
		else
			st->index_started = true;
	}
	if (!rc && pthread_create(&st->thread, NULL, store_main, st))
		rc = KZ_ENOMEM;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		if (st->index_started) {
			pthread_mutex_lock(&st->index_lock);
			st->index_stopping = true;
			pthread_cond_signal(&st->index_cond);
			pthread_mutex_unlock(&st->index_lock);
			pthread_join(st->index_thread, NULL);
		}
		store_free(st);
		return rc;
	}
	*out = st;
	return KZ_OK;
}

bool kz_store_wants(const struct kz_store *st, const uint8_t *topic, size_t topic_len, uint8_t qos)
{
	if (qos > 0 || !st->no_qos0_rules)
		return true;
	int r = kz_retention_match(st->rules, st->n_rules, topic, topic_len);
	return r < 0 || !st->rules[r].no_qos0;
}

void kz_store_advance(struct kz_store *st, uint64_t next)
{
	pthread_mutex_lock(&st->lock);
	if (next > st->advance_to && next > atomic_load(&st->durable_next)) {
		st->advance_to = next;
		pthread_cond_signal(&st->cond);
	}
	pthread_mutex_unlock(&st->lock);
}

uint64_t kz_store_pending_bytes(const struct kz_store *st)
{
	return atomic_load_explicit(&st->pending_bytes, memory_order_relaxed);
}

uint64_t kz_store_time_floor(struct kz_store *st, uint64_t after)
{
	uint64_t lo = UINT64_MAX;
	bool covered = after + 1 >= atomic_load_explicit(&st->durable_next, memory_order_acquire);
	pthread_mutex_lock(&st->floor_lock);
	uint64_t n = st->n_floors < FLOOR_RING ? st->n_floors : FLOOR_RING;
	for (uint64_t i = 0; i < n; i++) {
		const struct floor_entry *e = &st->floors[(st->n_floors - 1 - i) % FLOOR_RING];
		if (e->end <= after + 1) { /* this batch and the older ones end at or before after */
			covered = true;
			break;
		}
		if (e->min_time < lo)
			lo = e->min_time;
		if (e->first <= after + 1) { /* it holds after + 1: every later record is counted */
			covered = true;
			break;
		}
	}
	pthread_mutex_unlock(&st->floor_lock);
	return covered ? lo : 0;
}

uint64_t kz_store_seq_since(struct kz_store *st, uint64_t time_ns)
{
	if (!st->reader)
		return 0;
	pthread_mutex_lock(&st->reader_lock);
	uint64_t seq = kz_index_first_at(st->reader, time_ns);
	if (seq == 0)
		seq = kz_index_through(st->reader) + 1;
	pthread_mutex_unlock(&st->reader_lock);
	return seq;
}

uint64_t kz_store_ticket(const struct kz_store *st)
{
	/* the caller's own submits came before this load in its thread, so they are counted
	 * (an atomic's coherence order); another thread's are counted when they happened before */
	return atomic_load_explicit(&st->submitted, memory_order_acquire);
}

bool kz_store_ticket_done(const struct kz_store *st, uint64_t ticket)
{
	return atomic_load_explicit(&st->finished, memory_order_acquire) >= ticket;
}

uint64_t kz_store_durable_next(const struct kz_store *st)
{
	return atomic_load_explicit(&st->durable_next, memory_order_acquire);
}

struct bounded_scan {
	kz_reclog_scan_fn cb;
	void *ctx;
	uint64_t end;
};

static int bounded_cb(void *ctx, uint64_t seq, const uint8_t *body, size_t n, const struct kz_reclog_pos *pos)
{
	struct bounded_scan *b = ctx;
	if (seq >= b->end)
		return INT32_MIN; /* written, not yet durable: the end for readers */
	return b->cb(b->ctx, seq, body, n, pos);
}

int kz_store_scan(struct kz_store *st, uint64_t from_seq, const struct kz_reclog_pos *hint, kz_reclog_scan_fn cb,
		  void *ctx, uint64_t *end, char *why, size_t why_len)
{
	struct bounded_scan b = { cb, ctx, kz_store_durable_next(st) };
	*end = b.end;
	if (from_seq >= b.end)
		return KZ_OK;
	int rc = kz_reclog_scan(st->log_dir, from_seq, hint, st->max_record_bytes, bounded_cb, &b, why, why_len);
	return rc == INT32_MIN ? KZ_OK : rc;
}

int kz_store_replay_start(struct kz_store *st, const char *spec, uint64_t *seq, char *why, size_t why_len)
{
	uint64_t t;
	uint8_t id[16];
	bool is_time = kz_time_parse(spec, &t) == 0;
	if (!is_time && kz_uuid_parse(spec, id) != KZ_OK) {
		snprintf(why, why_len, "not an RFC 3339 time or a record id");
		return KZ_EINVAL;
	}
	if (!st->reader) {
		snprintf(why, why_len, "no index");
		return KZ_ENOTFOUND;
	}
	pthread_mutex_lock(&st->reader_lock);
	int rc = KZ_OK;
	if (is_time) {
		*seq = kz_index_first_since(st->reader, t);
		if (*seq == 0) /* nothing indexed since then: whatever the index has not seen yet */
			*seq = kz_index_through(st->reader) + 1;
	} else {
		*seq = kz_index_find_id(st->reader, id);
		if (*seq == 0) {
			snprintf(why, why_len, "no record with id %s (never stored, or dropped by retention)", spec);
			rc = KZ_ENOTFOUND;
		} else {
			(*seq)++;
		}
	}
	pthread_mutex_unlock(&st->reader_lock);
	return rc;
}

int kz_store_retained(struct kz_store *st, kz_index_row_fn cb, void *ctx, char *why, size_t why_len)
{
	if (!st->reader)
		return KZ_OK;
	pthread_mutex_lock(&st->reader_lock);
	int rc = kz_index_retained(st->reader, cb, ctx, why, why_len);
	pthread_mutex_unlock(&st->reader_lock);
	return rc;
}

void kz_store_health(struct kz_store *st, struct kz_store_health *h)
{
	h->write_failing = atomic_load(&st->failing);
	h->index_failing = atomic_load(&st->index_failing);
	h->write_errors = atomic_load(&st->write_errors);
	h->durable_next = kz_store_durable_next(st);
	h->indexed_through = atomic_load(&st->indexed_through);
	struct statvfs vs;
	h->free_bytes = statvfs(st->log_dir, &vs) == 0 ? (uint64_t)vs.f_bavail * vs.f_frsize : 0;
}

void kz_store_submit(struct kz_store *st, struct kz_store_item *items, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&st->lock);
	struct itemvec *p = &st->pending;
	if (p->n + n > p->cap) {
		size_t ncap = p->cap ? p->cap : 64;
		while (ncap < p->n + n)
			ncap *= 2;
		struct kz_store_item *nv = realloc(p->v, ncap * sizeof *nv);
		if (!nv) {
			pthread_mutex_unlock(&st->lock);
			for (size_t i = 0; i < n; i++) {
				bool borrowed = items[i].borrowed; /* done may free the block */
				if (items[i].done)
					items[i].done(items[i].ctx, KZ_ENOMEM, 0);
				if (!borrowed)
					free(items[i].data);
			}
			return;
		}
		p->v = nv;
		p->cap = ncap;
	}
	memcpy(p->v + p->n, items, n * sizeof *items);
	p->n += n;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += items[i].len;
	atomic_fetch_add_explicit(&st->pending_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->submitted, n, memory_order_relaxed); /* under lock: in queue order */
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

uint64_t kz_store_close(struct kz_store *st)
{
	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->thread, NULL);
	if (st->index_started) {
		pthread_mutex_lock(&st->index_lock);
		st->index_stopping = true;
		pthread_cond_signal(&st->index_cond);
		pthread_mutex_unlock(&st->index_lock);
		pthread_join(st->index_thread, NULL);
		/* index what the last batches wrote, so that the next start has nothing to do */
		uint64_t added;
		char why[512];
		do {
			if (kz_index_catch_up(st->index, INDEX_BATCH, &added, why, sizeof why)) {
				kz_error("index: %s", why);
				break;
			}
		} while (added == INDEX_BATCH);
	}
	uint64_t end = kz_store_durable_next(st);
	store_free(st);
	return end;
}

int kz_data_dir_check(const char *dir, char *why, size_t why_len)
{
	struct stat st;
	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(why, why_len, "%s: no such directory (a node's data directory is made by `kizuna serve "
			 "--data DIR` or `kizuna ca init --data DIR`)", dir);
		return KZ_ENOTFOUND;
	}
	static const char *const sub[] = { "pki", "log", "audit" };
	for (size_t i = 0; i < 3; i++) {
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
			return KZ_OK;
	}
	snprintf(why, why_len, "%s is not a kizuna data directory (it has no pki/, log/ or audit/)", dir);
	return KZ_ENOTFOUND;
}

int kz_data_lock(const char *data_dir, char *why, size_t why_len)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/lock", data_dir);
	(void)mkdir(data_dir, 0700);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
		return KZ_EIO;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;
		close(fd);
		snprintf(why, why_len, "%s is in use by another kizuna process (%s is locked)", data_dir, path);
		return e == EWOULDBLOCK ? KZ_EDENIED : KZ_EIO;
	}
	/* The holder's pid, for `kizuna policy reload`. */
	char pid[32];
	int pn = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)pn, 0) != pn)
		kz_warn("cannot write the pid into %s: %s", path, strerror(errno));
	return fd;
}
