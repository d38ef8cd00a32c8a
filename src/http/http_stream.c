/* http_stream.c — streamed answers (http.h "streamed answers"): an h2o generator that sends
 * one chunk at a time, woken from any thread through the worker's message queue.
 *
 * Who holds a stream (refs, under the worker's qlock): its owner until
 * kz_http_stream_release, the request until h2o disposes of it, and each wake message in the
 * worker's queue. The last one frees it. Invariants: at most one chunk in h2o's hands
 * (sending); nothing is sent after the generator was stopped or the final chunk went; closed
 * runs once, on the worker, when the request goes. */
#include "http/http_internal.h"
#include "base/kz_buf.h"

#include <stdlib.h>
#include <string.h>

struct kz_http_stream {
	h2o_multithread_message_t msg; /* first, then kind: the worker's queue carries wakes */
	int kind;                      /* KZ_HTTP_MSG_WAKE */
	h2o_generator_t gen;
	struct hworker *w;
	h2o_req_t *req;                /* NULL once h2o disposed of the request */
	const struct kz_http_stream_ops *ops;
	void *ctx;
	struct kz_buf out;             /* the chunk h2o is sending */
	bool sending, final_sent, stopped, closed, in_writable, again;
	bool wake_posted;              /* under qlock */
	int refs;                      /* under qlock */
};

static void unref(struct kz_http_stream *s)
{
	pthread_mutex_t *l = &s->w->qlock;
	pthread_mutex_lock(l);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(l);
	if (last) {
		kz_buf_cleanup(&s->out);
		free(s);
	}
}

/* Lets the owner write while it can (a chunk that h2o took at once brings proceed inside the
 * callback: the loop asks again). */
static void writable(struct kz_http_stream *s)
{
	if (s->in_writable) {
		s->again = true;
		return;
	}
	do {
		s->again = false;
		if (s->closed || s->stopped || s->sending || s->final_sent || !s->req)
			return;
		s->in_writable = true;
		s->ops->writable(s->ctx, s);
		s->in_writable = false;
	} while (s->again);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
	(void)req;
	struct kz_http_stream *s = H2O_STRUCT_FROM_MEMBER(struct kz_http_stream, gen, g);
	s->sending = false;
	writable(s);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
	(void)req;
	struct kz_http_stream *s = H2O_STRUCT_FROM_MEMBER(struct kz_http_stream, gen, g);
	s->stopped = true;
}

/* The request's pool is going: the client went away, the node stops, or the final chunk
 * went. */
static void on_dispose(void *p)
{
	struct kz_http_stream *s = *(struct kz_http_stream **)p;
	s->req = NULL;
	pthread_mutex_lock(&s->w->qlock);
	bool was = s->closed;
	s->closed = true; /* no wake is posted from now on */
	pthread_mutex_unlock(&s->w->qlock);
	if (!was)
		s->ops->closed(s->ctx);
	unref(s);
}

struct kz_http_stream *kz_http_stream_start(struct kz_http_req *r, int status, const char *content_type,
					    const struct kz_http_stream_ops *ops, void *ctx)
{
	h2o_req_t *req = r->h2o;
	struct kz_http_stream *s = calloc(1, sizeof *s);
	if (!s) {
		kz_http_error(r, 503, NULL, "Service Unavailable", "out of memory");
		return NULL;
	}
	s->kind = KZ_HTTP_MSG_WAKE;
	s->w = &r->srv->w[r->worker];
	s->req = req;
	s->ops = ops;
	s->ctx = ctx;
	s->refs = 2; /* the owner and the request */
	kz_buf_init(&s->out, 0);
	struct kz_http_stream **guard = h2o_mem_alloc_shared(&req->pool, sizeof *guard, on_dispose);
	*guard = s;
	r->status = status;
	req->res.status = status;
	req->res.reason = status == 200 ? "OK" : "Stream";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
	kz_http_finish_req(r); /* audited as it starts: a stream may last for days */
	s->gen.proceed = on_proceed;
	s->gen.stop = on_stop;
	h2o_start_response(req, &s->gen);
	kz_http_stream_wake(s); /* the first writable, after the handler returned */
	return s;
}

int kz_http_stream_write(struct kz_http_stream *s, const void *p, size_t n, bool final)
{
	if (!s->in_writable || s->sending || s->stopped || s->closed || s->final_sent || !s->req)
		return -1;
	kz_buf_reset(&s->out);
	if (kz_buf_append(&s->out, p, n))
		return -1;
	h2o_iovec_t buf = h2o_iovec_init(kz_buf_head(&s->out), n);
	s->sending = true;
	s->final_sent = final;
	atomic_fetch_add(&s->w->h->bytes_out, n);
	h2o_send(s->req, &buf, 1, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
	return 0;
}

void kz_http_stream_wake(struct kz_http_stream *s)
{
	pthread_mutex_lock(&s->w->qlock);
	if (!s->wake_posted && !s->closed && s->w->started) {
		s->wake_posted = true;
		s->refs++;
		memset(&s->msg, 0, sizeof s->msg); /* h2o asserts the link is not in a list */
		h2o_multithread_send_message(&s->w->recv, &s->msg);
	}
	pthread_mutex_unlock(&s->w->qlock);
}

void kz_http_stream_message(h2o_multithread_message_t *m)
{
	struct kz_http_stream *s = (struct kz_http_stream *)m;
	pthread_mutex_lock(&s->w->qlock);
	s->wake_posted = false;
	pthread_mutex_unlock(&s->w->qlock);
	writable(s);
	unref(s);
}

void kz_http_stream_release(struct kz_http_stream *s)
{
	if (s)
		unref(s);
}
