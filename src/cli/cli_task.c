/* cli_task.c — `kizuna task create|list|show|cancel|watch`: a tasker's side of tasks
 * (docs/TASKS.md) over the node's HTTPS API, with the identity of --data DIR/pki or
 * --cert/--key. */
#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_https.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"
#include "base/kz_time.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tk {
	struct cli_opts o;
	struct cli_https h;
	const char *url, *data;
	const char *assignee, *kind, *params, *precedence, *deadline, *id, *label, *reason, *state;
	const char *entities[16];
	int n_entities;
	bool open_only, json;
	unsigned interval_ms, timeout_s;
};

enum { O_URL = 3001, O_ASSIGNEE, O_KIND, O_PARAMS, O_ENTITY, O_PREC, O_DEADLINE, O_ID, O_LABEL, O_REASON, O_STATE,
       O_OPEN, O_JSON, O_INTERVAL, O_TIMEOUT };

static int call(struct tk *t, const char *method, const char *path, const char *extra, const char *body,
		struct cli_resp *r)
{
	char url[2400], why[512];
	snprintf(url, sizeof url, "%s%s", t->url, path);
	struct cli_url u;
	if (cli_url_parse(url, &u)) {
		fprintf(stderr, "kizuna task: %s: not an https:// URL\n", url);
		return -1;
	}
	kz_buf_init(&r->body, 0);
	if (cli_https_request(&t->h, method, &u, extra, body, body ? strlen(body) : 0, r, why, sizeof why)) {
		fprintf(stderr, "kizuna task: %s %s: %s\n", method, url, why);
		return -1;
	}
	return 0;
}

/* The node's refusal: its status and description. Exit 1. */
static int refused(const char *what, struct cli_resp *r)
{
	struct kz_json_doc d = { 0 };
	const char *desc = NULL;
	if (!kz_json_parse(&d, (const char *)kz_buf_head(&r->body), r->body.len))
		desc = kz_json_get_str(kz_json_root(&d), "description");
	fprintf(stderr, "kizuna task: %s: HTTP %d%s%s\n", what, r->status, desc ? ": " : "", desc ? desc : "");
	kz_json_free(&d);
	return 1;
}

static void line_of(const struct kz_json *o)
{
	long long v = 0;
	kz_json_int(kz_json_get(o, "version"), &v);
	printf("%-38s %-16s v%-3lld %-10s %-9s %s\n", kz_json_get_str(o, "id") ? kz_json_get_str(o, "id") : "?",
	       kz_json_get_str(o, "state") ? kz_json_get_str(o, "state") : "?", v,
	       kz_json_get_str(o, "kind") ? kz_json_get_str(o, "kind") : "?",
	       kz_json_get_str(o, "precedence") ? kz_json_get_str(o, "precedence") : "?",
	       kz_json_get_str(o, "assignee") ? kz_json_get_str(o, "assignee") : "?");
}

static int create(struct tk *t)
{
	if (!t->assignee || !t->kind) {
		fprintf(stderr, "kizuna task create: --assignee SPIFFE-ID and --kind KIND are required\n");
		return 2;
	}
	struct kz_buf b;
	kz_buf_init(&b, 0);
	int rc = kz_buf_append(&b, "{\"assignee\":", 12) || kz_json_put_str(&b, t->assignee) ||
		 kz_buf_append(&b, ",\"kind\":", 8) || kz_json_put_str(&b, t->kind);
	if (t->id)
		rc = rc || kz_buf_append(&b, ",\"id\":", 6) || kz_json_put_str(&b, t->id);
	if (t->params)
		rc = rc || kz_buf_append(&b, ",\"parameters\":", 14) || kz_buf_append(&b, t->params, strlen(t->params));
	if (t->precedence)
		rc = rc || kz_buf_append(&b, ",\"precedence\":", 14) || kz_json_put_str(&b, t->precedence);
	if (t->deadline) {
		char tm[32];
		const char *d = t->deadline;
		if (d[0] == '+') { /* +SECONDS from now */
			char *end;
			unsigned long s = strtoul(d + 1, &end, 10);
			if (*end || !s) {
				fprintf(stderr, "kizuna task create: --deadline TIME (RFC 3339) or +SECONDS\n");
				kz_buf_cleanup(&b);
				return 2;
			}
			kz_time_format(kz_now_wall_ns() + s * 1000000000ull, tm);
			d = tm;
		}
		rc = rc || kz_buf_append(&b, ",\"deadline\":", 12) || kz_json_put_str(&b, d);
	}
	if (t->n_entities) {
		rc = rc || kz_buf_append(&b, ",\"entities\":[", 13);
		for (int i = 0; i < t->n_entities; i++)
			rc = rc || (i && kz_buf_append(&b, ",", 1)) || kz_json_put_str(&b, t->entities[i]);
		rc = rc || kz_buf_append(&b, "]", 1);
	}
	rc = rc || kz_buf_append(&b, "}", 1) || kz_buf_append(&b, "", 1);
	char hdr[1200] = "Content-Type: application/json\r\n";
	if (t->label)
		snprintf(hdr + strlen(hdr), sizeof hdr - strlen(hdr), "kz-label: %.1000s\r\n", t->label);
	struct cli_resp r;
	int st = rc ? 1 : call(t, "POST", "/api/v1/tasks", hdr, (const char *)kz_buf_head(&b), &r) ? 1 : 0;
	kz_buf_cleanup(&b);
	if (st)
		return st;
	if (r.status != 201)
		st = refused("create", &r);
	else
		printf("%.*s\n", (int)r.body.len, (const char *)kz_buf_head(&r.body));
	kz_buf_cleanup(&r.body);
	return st;
}

static int list(struct tk *t)
{
	char path[1400] = "/api/v1/tasks?limit=1000";
	if (t->state)
		snprintf(path + strlen(path), sizeof path - strlen(path), "&state=%.100s", t->state);
	if (t->open_only)
		strncat(path, "&open=1", sizeof path - strlen(path) - 1);
	if (t->assignee)
		snprintf(path + strlen(path), sizeof path - strlen(path), "&assignee=%.600s", t->assignee);
	struct cli_resp r;
	if (call(t, "GET", path, NULL, NULL, &r))
		return 1;
	int st = 0;
	struct kz_json_doc d = { 0 };
	if (r.status != 200)
		st = refused("list", &r);
	else if (t->json)
		printf("%.*s\n", (int)r.body.len, (const char *)kz_buf_head(&r.body));
	else if (kz_json_parse(&d, (const char *)kz_buf_head(&r.body), r.body.len)) {
		fprintf(stderr, "kizuna task: list: the node's answer is not JSON\n");
		st = 1;
	} else {
		const struct kz_json *a = kz_json_get(kz_json_root(&d), "tasks");
		printf("%-38s %-16s %-4s %-10s %-9s %s\n", "ID", "STATE", "VER", "KIND", "PREC", "ASSIGNEE");
		KZ_JSON_FOR(o, a)
			line_of(o);
	}
	kz_json_free(&d);
	kz_buf_cleanup(&r.body);
	return st;
}

/* The task's JSON into r (200), or a message: 1. */
static int fetch(struct tk *t, const char *id, struct cli_resp *r)
{
	char path[400];
	snprintf(path, sizeof path, "/api/v1/tasks/%.300s", id);
	if (call(t, "GET", path, NULL, NULL, r))
		return 1;
	if (r->status != 200) {
		refused(id, r);
		kz_buf_cleanup(&r->body);
		return 1;
	}
	return 0;
}

static int show(struct tk *t, const char *id)
{
	struct cli_resp r;
	if (fetch(t, id, &r))
		return 1;
	printf("%.*s\n", (int)r.body.len, (const char *)kz_buf_head(&r.body));
	kz_buf_cleanup(&r.body);
	return 0;
}

static bool final_state(const char *s)
{
	return !strcmp(s, "DONE_OK") || !strcmp(s, "DONE_FAILED") || !strcmp(s, "REJECTED") || !strcmp(s, "CANCELLED") ||
	       !strcmp(s, "EXPIRED");
}

enum { CANCEL_DONE, CANCEL_FAILED, CANCEL_MOVED };

/* One try: the task's state and version now, then the move that cancels from there (CREATED
 * and SENT: cancelled at once; later: a cancel request, for the agent to confirm).
 * CANCEL_MOVED when the node refused because the task moved on between the two (its agent
 * took it, or a version went by): the caller tries again from the new state. */
static int cancel_once(struct tk *t, const char *id, bool last)
{
	struct cli_resp r;
	if (fetch(t, id, &r))
		return CANCEL_FAILED;
	struct kz_json_doc d = { 0 };
	long long v = 0;
	const char *state = NULL;
	if (!kz_json_parse(&d, (const char *)kz_buf_head(&r.body), r.body.len)) {
		state = kz_json_get_str(kz_json_root(&d), "state");
		kz_json_int(kz_json_get(kz_json_root(&d), "version"), &v);
	}
	int st = CANCEL_FAILED;
	if (!state) {
		fprintf(stderr, "kizuna task: cancel: the node's answer is not a task\n");
	} else if (final_state(state)) {
		fprintf(stderr, "kizuna task: cancel: %s has already ended (%s)\n", id, state);
	} else if (!strcmp(state, "CANCEL_REQUESTED")) {
		printf("%.*s\n", (int)r.body.len, (const char *)kz_buf_head(&r.body));
		st = CANCEL_DONE; /* asked already: the agent confirms */
	} else {
		struct kz_buf b;
		kz_buf_init(&b, 0);
		char head[96];
		snprintf(head, sizeof head, "{\"state\":\"%s\",\"version\":%lld",
			 !strcmp(state, "CREATED") || !strcmp(state, "SENT") ? "CANCELLED" : "CANCEL_REQUESTED", v);
		int rc = kz_buf_append(&b, head, strlen(head));
		if (t->reason)
			rc = rc || kz_buf_append(&b, ",\"reason\":", 10) || kz_json_put_str(&b, t->reason);
		rc = rc || kz_buf_append(&b, "}", 2);
		char path[400];
		snprintf(path, sizeof path, "/api/v1/tasks/%.300s/state", id);
		struct cli_resp m;
		if (!rc && !call(t, "POST", path, "Content-Type: application/json\r\n", (const char *)kz_buf_head(&b), &m)) {
			if (m.status == 200) {
				printf("%.*s\n", (int)m.body.len, (const char *)kz_buf_head(&m.body));
				st = CANCEL_DONE;
			} else if ((m.status == 409 || m.status == 403) && !last) {
				st = CANCEL_MOVED; /* 409: another version; 403: a state where this move is not ours */
			} else {
				refused("cancel", &m);
			}
			kz_buf_cleanup(&m.body);
		}
		kz_buf_cleanup(&b);
	}
	kz_json_free(&d);
	kz_buf_cleanup(&r.body);
	return st;
}

/* The task may move between reading it and the move (an agent at work does): a refusal then
 * is read again from the task's new state, a few times. */
static int cancel(struct tk *t, const char *id)
{
	enum { TRIES = 5 };
	for (int i = 0; i < TRIES; i++) {
		int st = cancel_once(t, id, i == TRIES - 1);
		if (st != CANCEL_MOVED)
			return st == CANCEL_DONE ? 0 : 1;
	}
	return 1;
}

/* Prints each new version of the task as a line until it ends: exit 0 for DONE_OK, 3 for
 * another end, 4 when --timeout passed first. */
static int watch(struct tk *t, const char *id)
{
	long long seen = 0;
	uint64_t until = t->timeout_s ? kz_now_mono_ms() + t->timeout_s * 1000ull : 0;
	for (;;) {
		struct cli_resp r;
		if (fetch(t, id, &r))
			return 1;
		struct kz_json_doc d = { 0 };
		int done = -1;
		if (!kz_json_parse(&d, (const char *)kz_buf_head(&r.body), r.body.len)) {
			const struct kz_json *o = kz_json_root(&d);
			long long v = 0;
			kz_json_int(kz_json_get(o, "version"), &v);
			const char *s = kz_json_get_str(o, "state");
			if (v > seen) {
				seen = v;
				if (t->json)
					printf("%.*s\n", (int)r.body.len, (const char *)kz_buf_head(&r.body));
				else
					line_of(o);
				fflush(stdout);
			}
			if (s && (!strcmp(s, "DONE_OK")))
				done = 0;
			else if (s && (!strcmp(s, "DONE_FAILED") || !strcmp(s, "REJECTED") || !strcmp(s, "CANCELLED") ||
				       !strcmp(s, "EXPIRED")))
				done = 3;
		}
		kz_json_free(&d);
		kz_buf_cleanup(&r.body);
		if (done >= 0)
			return done;
		if (until && kz_now_mono_ms() >= until) {
			fprintf(stderr, "kizuna task watch: %s has not ended within %u s\n", id, t->timeout_s);
			return 4;
		}
		usleep(t->interval_ms * 1000);
	}
}

int cli_task_main(int argc, char **argv)
{
	static struct tk t;
	memset(&t, 0, sizeof t);
	cli_opts_default(&t.o);
	t.url = "https://localhost:8443";
	t.interval_ms = 500;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-H")) {
		cli_help("task");
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1];
	static const struct option longs[] = {
		{ "url", required_argument, NULL, O_URL }, { "data", required_argument, NULL, 'd' },
		{ "cafile", required_argument, NULL, 1001 }, { "cert", required_argument, NULL, 1002 },
		{ "key", required_argument, NULL, 1003 }, { "assignee", required_argument, NULL, O_ASSIGNEE },
		{ "kind", required_argument, NULL, O_KIND }, { "params", required_argument, NULL, O_PARAMS },
		{ "entity", required_argument, NULL, O_ENTITY }, { "precedence", required_argument, NULL, O_PREC },
		{ "deadline", required_argument, NULL, O_DEADLINE }, { "id", required_argument, NULL, O_ID },
		{ "label", required_argument, NULL, O_LABEL }, { "reason", required_argument, NULL, O_REASON },
		{ "state", required_argument, NULL, O_STATE }, { "open", no_argument, NULL, O_OPEN },
		{ "json", no_argument, NULL, O_JSON }, { "interval-ms", required_argument, NULL, O_INTERVAL },
		{ "timeout", required_argument, NULL, O_TIMEOUT }, { 0 }
	};
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "d:", longs, NULL)) != -1) {
		if (cli_opts_parse(&t.o, c, optarg) == 1)
			continue;
		switch (c) {
		case 'd': t.data = optarg; break;
		case O_URL: t.url = optarg; break;
		case O_ASSIGNEE: t.assignee = optarg; break;
		case O_KIND: t.kind = optarg; break;
		case O_PARAMS: t.params = optarg; break;
		case O_ENTITY:
			if (t.n_entities == 16) {
				fprintf(stderr, "kizuna task: at most 16 --entity\n");
				return 2;
			}
			t.entities[t.n_entities++] = optarg;
			break;
		case O_PREC: t.precedence = optarg; break;
		case O_DEADLINE: t.deadline = optarg; break;
		case O_ID: t.id = optarg; break;
		case O_LABEL: t.label = optarg; break;
		case O_REASON: t.reason = optarg; break;
		case O_STATE: t.state = optarg; break;
		case O_OPEN: t.open_only = true; break;
		case O_JSON: t.json = true; break;
		case O_INTERVAL: t.interval_ms = (unsigned)atoi(optarg); break;
		case O_TIMEOUT: t.timeout_s = (unsigned)atoi(optarg); break;
		default: fprintf(stderr, "kizuna task: bad option (kizuna help task)\n"); return 2;
		}
	}
	if (t.interval_ms < 50 || t.interval_ms > 60000) {
		fprintf(stderr, "kizuna task: --interval-ms 50 to 60000\n");
		return 2;
	}
	bool needs_id = !strcmp(verb, "show") || !strcmp(verb, "cancel") || !strcmp(verb, "watch");
	if (!needs_id && strcmp(verb, "create") && strcmp(verb, "list")) {
		fprintf(stderr, "kizuna task: unknown verb '%s' (create, list, show, cancel, watch)\n", verb);
		return 2;
	}
	if (optind != argc - (needs_id ? 1 : 0)) {
		fprintf(stderr, "kizuna task %s: %s (kizuna help task)\n", verb, needs_id ? "give one task id" : "no arguments");
		return 2;
	}
	int fr = cli_opts_finish(&t.o, t.data, "task");
	if (fr)
		return fr;
	t.h = (struct cli_https){ .ctx = cli_tls_ctx(&t.o), .fd = -1, .max_body = 64u << 20 };
	if (!t.h.ctx)
		return 1;
	int rc = !strcmp(verb, "create") ? create(&t)
		 : !strcmp(verb, "list") ? list(&t)
		 : !strcmp(verb, "show") ? show(&t, argv[optind])
		 : !strcmp(verb, "cancel") ? cancel(&t, argv[optind])
					   : watch(&t, argv[optind]);
	cli_https_close(&t.h);
	SSL_CTX_free(t.h.ctx);
	return rc;
}
