/* cli_stix.c — `kizuna stix import|export|sight` and `kizuna taxii pull|push`: TAXII 2.1
 * clients of a running node (the node owns its data directory) and of other TAXII servers. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "base/kz_time.h"
#include "cli/cli_https.h"
#include "base/kz_jscan.h"
#include "services/stix/stix.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAXII_MT "application/taxii+json;version=2.1"

struct sx {
	struct cli_opts o;       /* local TLS files */
	const char *data;
	const char *url;         /* the local node's HTTPS base */
	const char *collection;  /* local collection id */
	const char *audience;
	unsigned batch;
	bool verbose, quiet;
	struct cli_https local;
	/* counts */
	uint64_t sent, accepted, rejected;
	uint64_t start_ns;       /* of the transfer, for the rate */
};

static void uuid4(char out[37])
{
	uint8_t u[16];
	RAND_bytes(u, sizeof u);
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
		 u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void now_ts(char out[64])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec % 60, ts.tv_nsec / 1000000);
}

static int request(struct cli_https *c, const char *method, const char *url, const char *extra, const char *body,
		   size_t n, struct cli_resp *resp)
{
	struct cli_url u;
	char why[512];
	if (cli_url_parse(url, &u)) {
		fprintf(stderr, "kizuna: %s: not an https:// URL\n", url);
		return -1;
	}
	if (cli_https_request(c, method, &u, extra, body, n, resp, why, sizeof why)) {
		fprintf(stderr, "kizuna: %s %s: %s\n", method, url, why);
		return -1;
	}
	return 0;
}

/* The answer's TAXII error, for messages. */
static void print_error(const char *what, struct cli_resp *r)
{
	json_t *e = json_loadb((const char *)kz_buf_head(&r->body), r->body.len, 0, NULL);
	const char *d = e ? json_string_value(json_object_get(e, "description")) : NULL;
	fprintf(stderr, "kizuna: %s: HTTP %d%s%s\n", what, r->status, d ? ": " : "", d ? d : "");
	json_decref(e);
}

/* The first collection of the node this identity can (write ? write : read). */
static int pick_collection(struct sx *x, bool write, char *out, size_t n)
{
	if (x->collection) {
		snprintf(out, n, "%s", x->collection);
		return 0;
	}
	char url[2300];
	snprintf(url, sizeof url, "%s/taxii2/api/collections/", x->url);
	struct cli_resp r;
	if (request(&x->local, "GET", url, "Accept: " TAXII_MT "\r\n", NULL, 0, &r))
		return -1;
	json_t *j = r.status == 200 ? json_loadb((const char *)kz_buf_head(&r.body), r.body.len, 0, NULL) : NULL;
	if (r.status != 200)
		print_error("listing collections", &r);
	kz_buf_cleanup(&r.body);
	size_t i;
	json_t *c;
	int rc = -1;
	json_array_foreach(json_object_get(j, "collections"), i, c)
	{
		if (json_is_true(json_object_get(c, write ? "can_write" : "can_read"))) {
			snprintf(out, n, "%s", json_string_value(json_object_get(c, "id")));
			rc = 0;
			break;
		}
	}
	json_decref(j);
	if (rc)
		fprintf(stderr, "kizuna: this identity can %s no collection on %s (give --collection)\n",
			write ? "write" : "read", x->url);
	return rc;
}

/* POSTs objs (a JSON array) as one envelope to url; counts and reports the status. */
static int post_envelope(struct sx *x, struct cli_https *c, const char *url, json_t *objs)
{
	json_t *env = json_pack("{s:O}", "objects", objs);
	char *body = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	char hdr[1200];
	snprintf(hdr, sizeof hdr, "Accept: " TAXII_MT "\r\nContent-Type: " TAXII_MT "\r\n%s%s%s",
		 x->audience ? "Kizuna-Audience: " : "", x->audience ? x->audience : "", x->audience ? "\r\n" : "");
	struct cli_resp r;
	int rc = body ? request(c, "POST", url, hdr, body, strlen(body), &r) : -1;
	free(body);
	if (rc)
		return -1;
	x->sent += json_array_size(objs);
	if (r.status != 202 && r.status != 200) {
		print_error("POST objects", &r);
		kz_buf_cleanup(&r.body);
		return -1;
	}
	json_t *st = json_loadb((const char *)kz_buf_head(&r.body), r.body.len, 0, NULL);
	kz_buf_cleanup(&r.body);
	x->accepted += (uint64_t)json_integer_value(json_object_get(st, "success_count"));
	size_t fails = (size_t)json_integer_value(json_object_get(st, "failure_count"));
	x->rejected += fails;
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(st, "failures"), i, f)
	{
		if (!x->verbose && x->rejected - fails + i >= 20) {
			if (x->rejected - fails + i == 20)
				fprintf(stderr, "kizuna: more refusals not shown (--verbose shows all)\n");
			break;
		}
		fprintf(stderr, "kizuna: refused %s: %s\n", json_string_value(json_object_get(f, "id")),
			json_string_value(json_object_get(f, "message")));
	}
	json_decref(st);
	return 0;
}

static void progress(struct sx *x, bool final)
{
	if (x->quiet || (!final && !isatty(2)))
		return;
	uint64_t now = kz_now_mono_ns();
	double secs = (double)(now - x->start_ns) / 1e9;
	fprintf(stderr, "%s%llu objects: %llu accepted, %llu refused; %.1f s, %.0f objects/s%s", isatty(2) ? "\r" : "kizuna: ",
		(unsigned long long)x->sent, (unsigned long long)x->accepted, (unsigned long long)x->rejected, secs,
		secs > 0 ? (double)x->sent / secs : 0.0, final ? "\n" : "");
}

enum { O_URL = 2001, O_COLL, O_AUD, O_BATCH, O_TYPE, O_AFTER, O_OUT, O_COUNT, O_WHERE, O_FIRST, O_LAST, O_STATE,
       O_INTO, O_FROM, O_USER, O_RCA, O_RCERT, O_RKEY, O_VERSION, O_VERBOSE, O_QUIET, O_CREATED_BY, O_MARKING };

static const struct option long_opts[] = {
	{ "data", required_argument, NULL, 'd' }, { "cafile", required_argument, NULL, 1001 },
	{ "cert", required_argument, NULL, 1002 }, { "key", required_argument, NULL, 1003 },
	{ "url", required_argument, NULL, O_URL }, { "collection", required_argument, NULL, O_COLL },
	{ "audience", required_argument, NULL, O_AUD }, { "batch", required_argument, NULL, O_BATCH },
	{ "type", required_argument, NULL, O_TYPE }, { "added-after", required_argument, NULL, O_AFTER },
	{ "output", required_argument, NULL, O_OUT }, { "count", required_argument, NULL, O_COUNT },
	{ "where-sighted", required_argument, NULL, O_WHERE }, { "first-seen", required_argument, NULL, O_FIRST },
	{ "last-seen", required_argument, NULL, O_LAST }, { "state", required_argument, NULL, O_STATE },
	{ "into", required_argument, NULL, O_INTO }, { "from", required_argument, NULL, O_FROM },
	{ "user", required_argument, NULL, O_USER }, { "remote-cafile", required_argument, NULL, O_RCA },
	{ "remote-cert", required_argument, NULL, O_RCERT }, { "remote-key", required_argument, NULL, O_RKEY },
	{ "all-versions", no_argument, NULL, O_VERSION }, { "verbose", no_argument, NULL, O_VERBOSE },
	{ "quiet", no_argument, NULL, O_QUIET }, { "created-by", required_argument, NULL, O_CREATED_BY },
	{ "marking", required_argument, NULL, O_MARKING }, { NULL, 0, NULL, 0 }
};

struct args {
	const char *type, *after, *out, *where, *first, *last, *state, *into, *from, *user, *rca, *rcert, *rkey,
		*created_by, *marking;
	long count;
	bool all_versions;
	bool filter_refs; /* --created-by filters (export, pull) rather than authors (sight) */
};

/* What a command holds, released when it returns (every path: cli_stix_main/cli_taxii_main). */
static struct sx *g_cur;
static struct cli_https *g_remote;

static void cleanup(void)
{
	if (g_cur) {
		cli_https_close(&g_cur->local);
		SSL_CTX_free(g_cur->local.ctx);
		g_cur->local.ctx = NULL;
		g_cur = NULL;
	}
	if (g_remote) {
		cli_https_close(g_remote);
		SSL_CTX_free(g_remote->ctx);
		g_remote->ctx = NULL;
		g_remote = NULL;
	}
}

static int parse(int argc, char **argv, struct sx *x, struct args *a)
{
	memset(x, 0, sizeof *x);
	x->start_ns = kz_now_mono_ns(); /* every command's transfer starts here: progress rates */
	g_cur = x;
	memset(a, 0, sizeof *a);
	cli_opts_default(&x->o);
	x->url = "https://localhost:8443";
	x->batch = 500;
	x->local.fd = -1;
	a->count = -1;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:o:v", long_opts, NULL)) != -1) {
		switch (c) {
		case 'd': x->data = optarg; break;
		case 1001: snprintf(x->o.ca, sizeof x->o.ca, "%s", optarg); break;
		case 1002: snprintf(x->o.cert, sizeof x->o.cert, "%s", optarg); break;
		case 1003: snprintf(x->o.key, sizeof x->o.key, "%s", optarg); break;
		case O_URL: x->url = optarg; break;
		case O_COLL: x->collection = optarg; break;
		case O_AUD: x->audience = optarg; break;
		case O_BATCH: x->batch = (unsigned)atoi(optarg); break;
		case O_TYPE: a->type = optarg; break;
		case O_AFTER: a->after = optarg; break;
		case 'o':
		case O_OUT: a->out = optarg; break;
		case O_COUNT: a->count = atol(optarg); break;
		case O_WHERE: a->where = optarg; break;
		case O_FIRST: a->first = optarg; break;
		case O_LAST: a->last = optarg; break;
		case O_STATE: a->state = optarg; break;
		case O_INTO: a->into = optarg; break;
		case O_FROM: a->from = optarg; break;
		case O_USER: a->user = optarg; break;
		case O_RCA: a->rca = optarg; break;
		case O_RCERT: a->rcert = optarg; break;
		case O_RKEY: a->rkey = optarg; break;
		case O_VERSION: a->all_versions = true; break;
		case 'v':
		case O_VERBOSE: x->verbose = true; break;
		case O_QUIET: x->quiet = true; break;
		case O_CREATED_BY: a->created_by = optarg; break;
		case O_MARKING: a->marking = optarg; break;
		default: return -1;
		}
	}
	if (x->batch < 1 || x->batch > 100000) {
		fprintf(stderr, "kizuna: --batch must be 1 to 100000\n");
		return -1;
	}
	if (a->after) {
		int64_t us;
		if (stix_timestamp(a->after, &us, NULL)) {
			fprintf(stderr, "kizuna: --added-after: not an RFC 3339 UTC timestamp\n");
			return -1;
		}
	}
	size_t ul = strlen(x->url);
	while (ul > 8 && x->url[ul - 1] == '/')
		ul--;
	static char urlbuf[2048];
	snprintf(urlbuf, sizeof urlbuf, "%.*s", (int)ul, x->url);
	x->url = urlbuf;
	int orc = cli_opts_finish(&x->o, x->data, "stix");
	if (orc)
		return orc == 2 ? -1 : -2;
	x->local.ctx = cli_tls_ctx(&x->o);
	x->local.max_body = 1u << 30;
	return x->local.ctx ? 0 : -2;
}

/* parse, and exactly one argument after the options (the file or the indicator). */
static int parse_one(int argc, char **argv, struct sx *x, struct args *a)
{
	if (parse(argc, argv, x, a))
		return -1;
	if (optind != argc - 1) {
		cli_help("stix");
		return -1;
	}
	return 0;
}

/* A STIX object at least names its type and id; anything else is not STIX at all. */
static bool looks_stix(json_t *o)
{
	return json_is_object(o) && json_is_string(json_object_get(o, "type")) &&
	       json_is_string(json_object_get(o, "id"));
}

/* Queues each object of one JSON value (a bundle or envelope, a list, or one object). */
static int take_value(struct sx *x, json_t *v, json_t *pending, const char *url)
{
	json_t *objs = json_is_object(v) ? json_object_get(v, "objects") : json_is_array(v) ? v : NULL;
	if ((json_is_object(v) && !objs && !looks_stix(v)) || (objs && !json_is_array(objs))) {
		fprintf(stderr, "kizuna: not STIX: a JSON value that is neither a bundle or envelope with \"objects\" "
				"nor an object with \"type\" and \"id\"\n");
		return -1;
	}
	size_t k;
	json_t *el;
	json_array_foreach(objs, k, el)
	{
		if (!looks_stix(el)) {
			fprintf(stderr, "kizuna: not STIX: element %zu of the list of objects has no \"type\" and \"id\"\n", k);
			return -1;
		}
	}
	if (json_is_object(v) && !objs) { /* one object (JSON lines, or a streamed bundle's) */
		json_array_append(pending, v);
		if (json_array_size(pending) < x->batch)
			return 0;
		int rc = post_envelope(x, &x->local, url, pending);
		json_array_clear(pending);
		progress(x, false);
		return rc;
	}
	/* marking definitions first: objects in later envelopes refer to them, and the node
	 * resolves a marking in the same request or the collection */
	for (int pass = 0; pass < 2; pass++) {
		size_t i;
		json_t *o;
		json_array_foreach(objs, i, o)
		{
			const char *t = json_string_value(json_object_get(o, "type"));
			if ((pass == 0) != (t && strcmp(t, "marking-definition") == 0))
				continue;
			json_array_append(pending, o);
			if (json_array_size(pending) >= x->batch) {
				if (post_envelope(x, &x->local, url, pending))
					return -1;
				json_array_clear(pending);
				progress(x, false);
			}
		}
	}
	return 0;
}

/* ---------- reading a stream of JSON values ---------- */

#define RD_WHOLE (16u << 20) /* values up to this are parsed whole */

struct rd {
	FILE *f;
	const char *name;
	char *b;
	size_t len, cap, off; /* unread bytes are b[off..len) */
	bool eof;
};

/* Reads more input, keeping b[off..len) (moved to the front). 0, or -1 at the end. */
static int rd_more(struct rd *r)
{
	if (r->eof)
		return -1;
	if (r->off) {
		memmove(r->b, r->b + r->off, r->len - r->off);
		r->len -= r->off;
		r->off = 0;
	}
	if (r->cap - r->len < (1u << 20)) {
		size_t nc = r->cap ? r->cap * 2 : 4u << 20;
		char *nb = realloc(r->b, nc);
		if (!nb)
			return -1;
		r->b = nb;
		r->cap = nc;
	}
	size_t n = fread(r->b + r->len, 1, r->cap - r->len, r->f);
	if (n == 0) {
		r->eof = true;
		return -1;
	}
	r->len += n;
	return 0;
}

/* The end of the value at b[off] (relative to b), reading more as needed; 0 at a malformed
 * or cut value. Values larger than limit are not completed (returns 0, *big set). */
static size_t rd_value(struct rd *r, size_t limit, bool *big)
{
	*big = false;
	for (;;) {
		size_t e = kz_json_value_end(r->b, r->len, r->off);
		if (e)
			return e;
		if (r->len - r->off > limit) {
			*big = true;
			return 0;
		}
		if (rd_more(r)) { /* the end: only a scalar may end with the input */
			char c0 = r->len > r->off ? r->b[r->off] : '{';
			return c0 != '{' && c0 != '[' && c0 != '"' ? r->len : 0;
		}
	}
}

static int rd_skip_ws(struct rd *r)
{
	for (;;) {
		r->off = kz_json_skip_ws(r->b, r->len, r->off);
		if (r->off < r->len)
			return 0;
		if (rd_more(r))
			return -1;
	}
}

static int rd_fail(struct rd *r, const char *what)
{
	fprintf(stderr, "kizuna: %s: %s\n", r->name, what);
	return 1;
}

/* One element (an object) of a streamed bundle: queued unless this pass skips its kind. */
static int take_element(struct sx *x, struct rd *r, size_t end, json_t *pending, const char *url, int pass)
{
	const char *p = r->b + r->off;
	size_t n = end - r->off;
	if (pass >= 0) { /* pass 0: marking definitions only; pass 1: everything else */
		bool md = memmem(p, n < 4096 ? n : 4096, "\"marking-definition\"", 20) != NULL;
		if (md != (pass == 0))
			return 0;
	}
	json_error_t je;
	json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		fprintf(stderr, "kizuna: %s: an object is not JSON: %s\n", r->name, je.text);
		return -1;
	}
	if (pass == 0) { /* the text test can be fooled by a description: check the type */
		const char *t = json_string_value(json_object_get(o, "type"));
		if (!t || strcmp(t, "marking-definition") != 0) {
			json_decref(o);
			return 0;
		}
	} else if (pass == 1) {
		const char *t = json_string_value(json_object_get(o, "type"));
		if (t && strcmp(t, "marking-definition") == 0 && memmem(p, n < 4096 ? n : 4096, "\"marking-definition\"", 20)) {
			json_decref(o);
			return 0; /* sent in pass 0 */
		}
	}
	int rc = take_value(x, o, pending, url);
	json_decref(o);
	return rc;
}

/* Streams the large value at b[off] ('{' with an "objects" list, or a '[' list). */
static int stream_big(struct sx *x, struct rd *r, json_t *pending, const char *url, int pass)
{
	bool big;
	if (r->b[r->off] == '{') {
		r->off++;
		for (;;) {
			if (rd_skip_ws(r))
				return rd_fail(r, "the input ends inside an object");
			if (r->b[r->off] == '}') {
				r->off++;
				return 0;
			}
			if (r->b[r->off] == ',') {
				r->off++;
				continue;
			}
			size_t ke = rd_value(r, RD_WHOLE, &big);
			if (!ke || r->b[r->off] != '"')
				return rd_fail(r, "expected a property name");
			bool objects = ke - r->off == 9 && memcmp(r->b + r->off, "\"objects\"", 9) == 0;
			r->off = ke;
			if (rd_skip_ws(r) || r->b[r->off] != ':')
				return rd_fail(r, "expected ':'");
			r->off++;
			if (rd_skip_ws(r))
				return rd_fail(r, "the input ends inside an object");
			if (objects && r->b[r->off] == '[')
				break;
			size_t ve = rd_value(r, RD_WHOLE, &big);
			if (!ve)
				return rd_fail(r, "a property value is malformed or over 16 MiB");
			r->off = ve;
		}
	}
	if (r->b[r->off] != '[')
		return rd_fail(r, "expected a list of objects");
	r->off++;
	for (;;) {
		if (rd_skip_ws(r))
			return rd_fail(r, "the input ends inside the list of objects");
		char ch = r->b[r->off];
		if (ch == ']') {
			r->off++;
			break;
		}
		if (ch == ',') {
			r->off++;
			continue;
		}
		size_t e = rd_value(r, RD_WHOLE, &big);
		if (!e)
			return rd_fail(r, big ? "an object is over 16 MiB" : "an object is malformed or cut off");
		if (take_element(x, r, e, pending, url, pass))
			return 1;
		r->off = e;
	}
	/* the rest of the enclosing object (properties after "objects") */
	for (;;) {
		if (rd_skip_ws(r))
			return 0;
		char ch = r->b[r->off];
		if (ch == '}') {
			r->off++;
			return 0;
		}
		if (ch == ',' || ch == ':') {
			r->off++;
			continue;
		}
		size_t e = rd_value(r, RD_WHOLE, &big);
		if (!e)
			return rd_fail(r, "malformed after the list of objects");
		r->off = e;
	}
}

/* Every value of the input: whole when small, streamed when large. */
static int stream_values(struct sx *x, struct rd *r, json_t *pending, const char *url, bool seekable)
{
	for (int pass = seekable ? 0 : -1; pass <= 1; pass++) {
		if (pass == 1 && seekable) {
			if (fseek(r->f, 0, SEEK_SET))
				return rd_fail(r, "cannot read the input a second time");
			r->len = r->off = 0;
			r->eof = false;
		}
		for (;;) {
			if (rd_skip_ws(r))
				break;
			bool big;
			size_t e = rd_value(r, RD_WHOLE, &big);
			if (big) {
				if (stream_big(x, r, pending, url, pass))
					return 1;
				continue;
			}
			if (r->b[r->off] != '{' && r->b[r->off] != '[')
				return rd_fail(r, "not STIX: expected JSON (a STIX 2.1 bundle, a TAXII envelope, a list of "
						  "objects, or one object per line)");
			if (!e || e <= r->off)
				return rd_fail(r, "not JSON (or cut off)");
			if (pass == 0) { /* small values are handled whole in the last pass */
				r->off = e;
				continue;
			}
			json_error_t je;
			json_t *v = json_loadb(r->b + r->off, e - r->off, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
			if (!v) {
				fprintf(stderr, "kizuna: %s: line %d: %s\n", r->name, je.line, je.text);
				return 1;
			}
			int t = take_value(x, v, pending, url);
			json_decref(v);
			if (t)
				return 1;
			r->off = e;
		}
		if (pass == -1)
			break;
	}
	return 0;
}

static int stix_import(int argc, char **argv)
{
	static struct sx x;
	struct args a;
	if (parse_one(argc, argv, &x, &a))
		return 2;
	const char *file = argv[optind];
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (!f) {
		fprintf(stderr, "kizuna: %s: %s\n", file, strerror(errno));
		return 1;
	}
	char coll[64], url[2300];
	if (pick_collection(&x, true, coll, sizeof coll)) {
		if (f != stdin)
			fclose(f);
		return 1;
	}
	snprintf(url, sizeof url, "%s/taxii2/api/collections/%s/objects/", x.url, coll);
	json_t *pending = json_array();
	int rc = 0;
	/* Values up to 16 MiB are parsed whole (markings first within each); a larger bundle,
	 * envelope or list is streamed element by element, with a first pass for its marking
	 * definitions when the input can be read twice. */
	struct rd rdr = { .f = f, .name = file };
	bool seekable = f != stdin && fseek(f, 0, SEEK_SET) == 0;
	rc = stream_values(&x, &rdr, pending, url, seekable);
	free(rdr.b);
	if (!rc && json_array_size(pending) && post_envelope(&x, &x.local, url, pending))
		rc = 1;
	json_decref(pending);
	if (f != stdin)
		fclose(f);
	progress(&x, true);
	return rc ? rc : x.rejected ? 3 : 0;
}

/* Pages through url (objects), calling fn with each page's objects; *last receives the
 * last page's X-TAXII-Date-Added-Last. */
static int each_page(struct sx *x, struct cli_https *c, const char *base, const struct args *a, const char *after,
		     int (*fn)(void *ctx, json_t *objs, const char *added_last), void *ctx)
{
	char next[128] = "";
	for (;;) {
		char url[4096];
		int n = snprintf(url, sizeof url, "%s?limit=1000", base);
		if (after)
			n += snprintf(url + n, sizeof url - (size_t)n, "&added_after=%s", after);
		if (a->type)
			n += snprintf(url + n, sizeof url - (size_t)n, "&match%%5Btype%%5D=%s", a->type);
		if (a->all_versions)
			n += snprintf(url + n, sizeof url - (size_t)n, "&match%%5Bversion%%5D=all");
		if (a->created_by && a->filter_refs)
			n += snprintf(url + n, sizeof url - (size_t)n, "&match%%5Bcreated_by_ref%%5D=%s", a->created_by);
		if (a->marking)
			n += snprintf(url + n, sizeof url - (size_t)n, "&match%%5Bobject_marking_refs%%5D=%s", a->marking);
		if (next[0])
			snprintf(url + n, sizeof url - (size_t)n, "&next=%s", next);
		struct cli_resp r;
		if (request(c, "GET", url, "Accept: " TAXII_MT "\r\n", NULL, 0, &r))
			return -1;
		if (r.status != 200) {
			print_error("GET objects", &r);
			kz_buf_cleanup(&r.body);
			return -1;
		}
		json_error_t je;
		json_t *env = json_loadb((const char *)kz_buf_head(&r.body), r.body.len, 0, &je);
		kz_buf_cleanup(&r.body);
		if (!env) {
			fprintf(stderr, "kizuna: %s: the answer is not JSON: %s\n", url, je.text);
			return -1;
		}
		json_t *objs = json_object_get(env, "objects");
		int frc = objs && json_array_size(objs) ? fn(ctx, objs, r.date_added_last) : 0;
		bool more = json_is_true(json_object_get(env, "more"));
		const char *nx = json_string_value(json_object_get(env, "next"));
		snprintf(next, sizeof next, "%s", nx ? nx : "");
		json_decref(env);
		if (frc)
			return -1;
		if (!more)
			return 0;
		if (!next[0]) { /* more without next (TAXII 2.1 allows it): continue after the last */
			if (!r.date_added_last[0])
				return 0;
			static char keep[64];
			snprintf(keep, sizeof keep, "%s", r.date_added_last);
			after = keep;
		}
	}
}

struct export_ctx {
	FILE *out;
	uint64_t n;
};

static int export_page(void *ctx, json_t *objs, const char *added_last)
{
	struct export_ctx *e = ctx;
	size_t i;
	json_t *o;
	json_array_foreach(objs, i, o)
	{
		fputs(e->n++ ? ",\n" : "\n", e->out);
		json_dumpf(o, e->out, JSON_COMPACT);
	}
	return ferror(e->out) ? -1 : 0;
}

static int stix_export(int argc, char **argv)
{
	static struct sx x;
	struct args a;
	if (parse(argc, argv, &x, &a))
		return 2;
	a.filter_refs = true;
	char coll[64], url[2300], bid[37];
	if (pick_collection(&x, false, coll, sizeof coll))
		return 1;
	snprintf(url, sizeof url, "%s/taxii2/api/collections/%s/objects/", x.url, coll);
	struct export_ctx e = { a.out ? fopen(a.out, "w") : stdout, 0 };
	if (!e.out) {
		fprintf(stderr, "kizuna: %s: %s\n", a.out, strerror(errno));
		return 1;
	}
	uuid4(bid);
	fprintf(e.out, "{\"type\":\"bundle\",\"id\":\"bundle--%s\",\"objects\":[", bid);
	int rc = each_page(&x, &x.local, url, &a, a.after, export_page, &e);
	fputs("\n]}\n", e.out);
	if (e.out != stdout && fclose(e.out))
		rc = -1;
	if (!x.quiet)
		fprintf(stderr, "kizuna: exported %llu objects\n", (unsigned long long)e.n);
	return rc ? 1 : 0;
}

static int stix_sight(int argc, char **argv)
{
	static struct sx x;
	struct args a;
	if (parse_one(argc, argv, &x, &a))
		return 2;
	char id[37], now[64], coll[64], url[2300];
	uuid4(id);
	now_ts(now);
	json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "sighting", "spec_version", "2.1", "id", "", "created",
			      now, "modified", now, "sighting_of_ref", argv[optind]);
	char full[64];
	snprintf(full, sizeof full, "sighting--%s", id);
	json_object_set_new(s, "id", json_string(full));
	if (a.count >= 0)
		json_object_set_new(s, "count", json_integer(a.count));
	if (a.first)
		json_object_set_new(s, "first_seen", json_string(a.first));
	if (a.last)
		json_object_set_new(s, "last_seen", json_string(a.last));
	if (a.where)
		json_object_set_new(s, "where_sighted_refs", json_pack("[s]", a.where));
	if (a.created_by)
		json_object_set_new(s, "created_by_ref", json_string(a.created_by));
	/* check it here first: a typo is better caught before the network */
	struct stix_opts so = { .now_us = (int64_t)time(NULL) * 1000000 };
	struct stix_info info;
	char err[300];
	char *text = json_dumps(s, JSON_COMPACT);
	struct kz_json_doc d = { 0 };
	int vrc = !text || kz_json_parse(&d, text, strlen(text)) ? -1 : stix_validate(kz_json_root(&d), &so, &info, err, sizeof err);
	if (vrc && (!text || !d.n))
		snprintf(err, sizeof err, "out of memory");
	kz_json_free(&d);
	free(text);
	if (vrc) {
		fprintf(stderr, "kizuna: the sighting would be refused: %s\n", err);
		json_decref(s);
		return 2;
	}
	if (pick_collection(&x, true, coll, sizeof coll)) {
		json_decref(s);
		return 1;
	}
	snprintf(url, sizeof url, "%s/taxii2/api/collections/%s/objects/", x.url, coll);
	/* a sighting of something the collection does not hold (or the caller may not see) is
	 * a mistake to report, not to store */
	char get[2600];
	snprintf(get, sizeof get, "%s%s/", url, argv[optind]);
	struct cli_resp gr;
	if (request(&x.local, "GET", get, "Accept: " TAXII_MT "\r\n", NULL, 0, &gr)) {
		json_decref(s);
		return 1;
	}
	kz_buf_cleanup(&gr.body);
	if (gr.status != 200) {
		fprintf(stderr, "kizuna: %s: collection %s holds no such object that this identity may read (HTTP %d); "
				"a sighting must refer to one\n", argv[optind], coll, gr.status);
		json_decref(s);
		return 1;
	}
	json_t *objs = json_pack("[o]", s);
	x.quiet = true;
	int rc = post_envelope(&x, &x.local, url, objs);
	json_decref(objs);
	if (rc || x.rejected)
		return 1;
	printf("%s\n", full);
	return 0;
}

/* ---------- taxii pull / push ---------- */

struct sync_ctx {
	struct sx *x;
	struct cli_https *to;
	const char *to_url;
	const char *state;
};

static int sync_page(void *ctx, json_t *objs, const char *added_last)
{
	struct sync_ctx *s = ctx;
	if (post_envelope(s->x, s->to, s->to_url, objs))
		return -1;
	progress(s->x, false);
	if (s->state && added_last[0]) { /* resumable: where the next run starts */
		char tmp[1100];
		snprintf(tmp, sizeof tmp, "%s.tmp", s->state);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%s\n", added_last) < 0 || fclose(f) || rename(tmp, s->state)) {
			fprintf(stderr, "kizuna: cannot write the state file %s\n", s->state);
			return -1;
		}
	}
	return 0;
}

static int taxii_sync(int argc, char **argv, bool pull)
{
	static struct sx x;
	struct args a;
	if (parse(argc, argv, &x, &a))
		return 2;
	a.filter_refs = true;
	if (optind != argc - 1 || !x.collection) {
		fprintf(stderr, "kizuna: taxii %s needs the remote API root URL and --collection\n", pull ? "pull" : "push");
		return 2;
	}
	char root[2100];
	snprintf(root, sizeof root, "%s%s", argv[optind], argv[optind][strlen(argv[optind]) - 1] == '/' ? "" : "/");
	struct cli_url ru;
	if (cli_url_parse(root, &ru)) {
		fprintf(stderr, "kizuna: %s: not an https:// URL\n", root);
		return 2;
	}
	struct cli_opts ro = x.o;
	if (a.rca)
		snprintf(ro.ca, sizeof ro.ca, "%s", a.rca);
	if (a.rcert)
		snprintf(ro.cert, sizeof ro.cert, "%s", a.rcert);
	if (a.rkey)
		snprintf(ro.key, sizeof ro.key, "%s", a.rkey);
	static struct cli_https remote;
	remote = (struct cli_https){ .ctx = cli_tls_ctx(&ro), .fd = -1, .max_body = 1u << 30 };
	if (!remote.ctx)
		return 1;
	g_remote = &remote;
	char authbuf[1100];
	if (a.user) {
		if (strlen(a.user) > 500) {
			fprintf(stderr, "kizuna: --user is too long\n");
			return 2;
		}
		unsigned char enc[800];
		EVP_EncodeBlock(enc, (const unsigned char *)a.user, (int)strlen(a.user));
		snprintf(authbuf, sizeof authbuf, "Basic %s", enc);
		remote.auth = authbuf;
	}
	const char *local_coll = pull ? a.into : a.from;
	char lc[64], local_url[2300], remote_url[4300];
	if (local_coll)
		snprintf(lc, sizeof lc, "%s", local_coll);
	else {
		const char *keep = x.collection;
		x.collection = NULL;
		int prc = pick_collection(&x, pull, lc, sizeof lc);
		x.collection = keep;
		if (prc)
			return 1;
	}
	snprintf(local_url, sizeof local_url, "%s/taxii2/api/collections/%s/objects/", x.url, lc);
	snprintf(remote_url, sizeof remote_url, "%scollections/%s/objects/", root, x.collection);
	char after[64] = "";
	if (a.after)
		snprintf(after, sizeof after, "%s", a.after);
	if (a.state) {
		FILE *f = fopen(a.state, "r");
		if (f) {
			if (fgets(after, sizeof after, f))
				after[strcspn(after, "\r\n")] = 0;
			fclose(f);
		}
	}
	/* marking definitions first (all of them: few, and a re-sent one is a duplicate the
	 * receiver skips), so that objects in any page resolve theirs on the receiving side */
	struct sync_ctx mc = { &x, pull ? &x.local : &remote, pull ? local_url : remote_url, NULL };
	struct args ma = a;
	ma.type = "marking-definition";
	ma.all_versions = true;
	ma.created_by = ma.marking = NULL;
	uint64_t before = x.sent;
	if (each_page(&x, pull ? &remote : &x.local, pull ? remote_url : local_url, &ma, NULL, sync_page, &mc)) {
		progress(&x, true);
		return 1;
	}
	x.sent = before; /* the summary counts the objects asked for */
	x.accepted = x.rejected = 0;
	struct sync_ctx sc = { &x, pull ? &x.local : &remote, pull ? local_url : remote_url, a.state };
	int rc = each_page(&x, pull ? &remote : &x.local, pull ? remote_url : local_url, &a, after[0] ? after : NULL,
			   sync_page, &sc);
	progress(&x, true);
	return rc ? 1 : x.rejected ? 3 : 0;
}

int cli_stix_main(int argc, char **argv)
{
	if (argc < 2) {
		cli_help("stix");
		return 2;
	}
	int rc = 2;
	if (strcmp(argv[1], "import") == 0)
		rc = stix_import(argc, argv);
	else if (strcmp(argv[1], "export") == 0)
		rc = stix_export(argc, argv);
	else if (strcmp(argv[1], "sight") == 0)
		rc = stix_sight(argc, argv);
	else
		cli_help("stix");
	cleanup();
	return rc;
}

int cli_taxii_main(int argc, char **argv)
{
	int rc = 2;
	if (argc >= 2 && strcmp(argv[1], "pull") == 0)
		rc = taxii_sync(argc, argv, true);
	else if (argc >= 2 && strcmp(argv[1], "push") == 0)
		rc = taxii_sync(argc, argv, false);
	else
		cli_help("taxii");
	cleanup();
	return rc;
}
