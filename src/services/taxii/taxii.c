/* taxii.c — the TAXII 2.1 server (see taxii.h): routing of requests to the resources. Sections cited are TAXII 2.1's. */
#include "services/taxii/taxii_internal.h"

/* ---------- routing ---------- */

/* Splits path (after /taxii2/) into segments; returns the count. */
static int segments(const char *p, char seg[6][256])
{
	int n = 0;
	while (*p) {
		const char *s = strchr(p, '/');
		size_t l = s ? (size_t)(s - p) : strlen(p);
		if (l) {
			if (n == 6 || l >= 256)
				return -1;
			memcpy(seg[n], p, l);
			seg[n++][l] = 0;
		}
		p += l + (s ? 1 : 0);
	}
	return n;
}

/* The resources under one collection (§5). */
static void in_collection(struct taxii *t, struct kz_http_req *r, struct tx_coll *c, struct tx_subject *sub,
			  char seg[6][256], int n, bool get, bool post, bool del)
{
	bool rd = c && tx_can_read(c, sub), wr = c && tx_can_write(c, sub);
	if (!rd && !wr) {
		tx_err(r, 404, "Not Found", "no such collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 4) {
		if (post) {
			wr ? tx_post_objects(t, r, c, sub)
				  : tx_err(r, 403, "Forbidden", "this identity may not write to the collection");
			return;
		}
		if (!get) {
			tx_err(r, 405, "Method Not Allowed", "use GET or POST");
			return;
		}
		rd ? tx_list(t, r, c, sub, L_OBJECTS, NULL)
			  : tx_err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "manifest") == 0 && n == 4) {
		if (!get) {
			tx_err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		rd ? tx_list(t, r, c, sub, L_MANIFEST, NULL)
			  : tx_err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 5) {
		if (del) {
			rd && wr ? tx_delete_object(t, r, c, sub, seg[4])
					: tx_err(r, 403, "Forbidden", "deleting needs read and write access to the collection");
			return;
		}
		if (!get) {
			tx_err(r, 405, "Method Not Allowed", "use GET or DELETE");
			return;
		}
		rd ? tx_list(t, r, c, sub, L_OBJECTS, seg[4])
			  : tx_err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	if (strcmp(seg[3], "objects") == 0 && n == 6 && strcmp(seg[5], "versions") == 0) {
		if (!get) {
			tx_err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		rd ? tx_list(t, r, c, sub, L_VERSIONS, seg[4])
			  : tx_err(r, 403, "Forbidden", "this identity may not read the collection");
		return;
	}
	tx_err(r, 404, "Not Found", "no such TAXII resource");
}

static void handle(void *ctx, struct kz_http_req *r)
{
	struct taxii *t = ctx;
	const char *path = r->path + strlen("/taxii2");
	char seg[6][256];
	int n = segments(path, seg);
	bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
	bool post = strcmp(r->method, "POST") == 0, del = strcmp(r->method, "DELETE") == 0;
	kz_reclog_reader_forget(&t->rd[r->worker]); /* nothing read before this request is served */
	if (n < 0) {
		tx_err(r, 404, "Not Found", "no such TAXII resource");
		return;
	}
	/* TAXII URLs end in '/'; a missing one is forgiven */
	if (n == 0) {
		if (!get) {
			tx_err(r, 405, "Method Not Allowed", "use GET");
			return;
		}
		tx_discovery(t, r);
		return;
	}
	if (strcmp(seg[0], "api") != 0) {
		tx_err(r, 404, "Not Found", "no such API root: this server's is /taxii2/api/");
		return;
	}
	if (n == 1) {
		get ? tx_api_root(t, r) : tx_err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (strcmp(seg[1], "status") == 0 && n == 3) {
		get ? tx_status_get(t, r, seg[2], strlen(seg[2])) : tx_err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (strcmp(seg[1], "collections") != 0) {
		tx_err(r, 404, "Not Found", "no such TAXII resource");
		return;
	}
	if (n == 2) {
		get ? tx_collections(t, r, NULL, 0) : tx_err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (n == 3) {
		get ? tx_collections(t, r, seg[2], strlen(seg[2])) : tx_err(r, 405, "Method Not Allowed", "use GET");
		return;
	}
	struct tx_coll *c = tx_coll_of(t, seg[2], strlen(seg[2]));
	struct tx_subject sub;
	tx_subject_init(t, r, &sub);
	/* the policy's verdicts on labels, once per access entry for this request */
	struct lab_cache lc = { atomic_load(&t->nacc), NULL };
	lc.state = calloc(lc.n ? lc.n : 1, 1);
	if (!lc.state)
		lc.n = 0;
	sub.lc = &lc;
	in_collection(t, r, c, &sub, seg, n, get, post, del);
	free(lc.state);
}

int taxii_routes(struct taxii *t, struct kz_http *h) { return kz_http_route(h, "/taxii2", true, handle, t); }
