/* store.c — the store thread: group commit of submitted records.
 *
 * Producers append items to `pending` under the lock (one lock per batch of theirs) and
 * signal. The thread swaps `pending` for its empty `work` vector, writes all of it with one
 * kz_log_append (one write, one fdatasync in mode always), then calls every item's done
 * callback with the outcome. While it writes, new items gather for the next group; the
 * busier the node, the bigger the groups and the cheaper each record.
 *
 * Errors (disk full, I/O): the batch's callbacks get the error, nothing of it is
 * acknowledged; the state change is logged once, and the next batch tries again, so
 * writing resumes by itself when space returns. */
#include "store/store.h"
#include "base/kz_err.h"
#include "base/kz_log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct itemvec {
	struct kz_store_item *v;
	size_t n, cap;
};

struct kz_store {
	struct kz_log *log;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct itemvec pending, work;
	struct kz_bytes *bodies;
	size_t bodies_cap;
	bool stopping, failing;
	uint32_t interval_ms;
};

static void run_batch(struct kz_store *st)
{
	struct itemvec *w = &st->work;
	if (w->n > st->bodies_cap) {
		struct kz_bytes *nb = realloc(st->bodies, w->n * sizeof *nb);
		if (nb) {
			st->bodies = nb;
			st->bodies_cap = w->n;
		}
	}
	int rc = KZ_ENOMEM;
	uint64_t first = 0;
	char why[512] = "";
	if (st->bodies_cap >= w->n) {
		for (size_t i = 0; i < w->n; i++)
			st->bodies[i] = (struct kz_bytes){ w->v[i].data, w->v[i].len };
		rc = kz_log_append(st->log, st->bodies, w->n, &first, why, sizeof why);
	}
	if (rc && !st->failing) {
		kz_error("store: writes fail, publishes are refused until they succeed: %s",
			 why[0] ? why : kz_strerror(rc));
		st->failing = true;
	} else if (!rc && st->failing) {
		kz_warn("store: writes succeed again");
		st->failing = false;
	}
	for (size_t i = 0; i < w->n; i++) {
		if (w->v[i].done)
			w->v[i].done(w->v[i].ctx, rc, rc ? 0 : first + i);
		free(w->v[i].data);
	}
	w->n = 0;
}

static void *store_main(void *arg)
{
	struct kz_store *st = arg;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (st->pending.n == 0 && !st->stopping) {
			if (st->interval_ms) { /* interval mode: wake up to sync what is due */
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += (long)(st->interval_ms % 1000) * 1000000L;
				ts.tv_sec += st->interval_ms / 1000 + ts.tv_nsec / 1000000000L;
				ts.tv_nsec %= 1000000000L;
				pthread_cond_timedwait(&st->cond, &st->lock, &ts);
				pthread_mutex_unlock(&st->lock);
				char why[256];
				if (kz_log_sync_due(st->log, why, sizeof why))
					kz_error("store: %s", why);
				pthread_mutex_lock(&st->lock);
			} else {
				pthread_cond_wait(&st->cond, &st->lock);
			}
		}
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

int kz_store_open(const struct kz_log_config *cfg, struct kz_store **out, struct kz_log_recovery *rec,
		  char *why, size_t why_len)
{
	*out = NULL;
	struct kz_store *st = calloc(1, sizeof *st);
	if (!st)
		return KZ_ENOMEM;
	int rc = kz_log_open(cfg, &st->log, rec, why, why_len);
	if (rc) {
		free(st);
		return rc;
	}
	st->interval_ms = cfg->fsync == KZ_FSYNC_INTERVAL ? (cfg->fsync_interval_ms ? cfg->fsync_interval_ms : 1) : 0;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL);
	if (pthread_create(&st->thread, NULL, store_main, st)) {
		kz_log_close(st->log);
		free(st);
		return KZ_ENOMEM;
	}
	*out = st;
	return KZ_OK;
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
				if (items[i].done)
					items[i].done(items[i].ctx, KZ_ENOMEM, 0);
				free(items[i].data);
			}
			return;
		}
		p->v = nv;
		p->cap = ncap;
	}
	memcpy(p->v + p->n, items, n * sizeof *items);
	p->n += n;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

void kz_store_close(struct kz_store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->thread, NULL);
	kz_log_close(st->log);
	free(st->pending.v);
	free(st->work.v);
	free(st->bodies);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st);
}
