/* entity_view.c — a reader's view of the picture (the decision point per entity) and the
 * filters of a request (entity_view.h). */
#include "services/entity/entity_view.h"
#include "base/kz_time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void entity_reader_init(struct entity_reader *rd, const struct kz_policy *pol, const char *identity)
{
	memset(rd, 0, sizeof *rd);
	rd->pol = pol;
	if (pol)
		kz_subject_init(pol, identity, &rd->s);
}

void entity_filter_init(struct entity_filter *f, uint32_t max_page)
{
	memset(f, 0, sizeof *f);
	f->limit = max_page;
	f->status_mask = 1u << ENTITY_LIVE | 1u << ENTITY_STALE;
}

static bool label_ok(struct entity_reader *rd, const char *label)
{
	if (!label || !*label)
		return true;
	for (unsigned i = 0; i < rd->n_seen; i++)
		if (rd->seen[i] == label)
			return rd->allowed[i];
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[200];
	size_t clen;
	const char *w;
	bool ok = kz_label_parse(rd->pol, label, strlen(label), &l, canon, &clen, why, sizeof why) == 0 &&
		  kz_dominates(rd->pol, &rd->s, &l, &w);
	if (rd->n_seen < 16) {
		rd->seen[rd->n_seen] = label;
		rd->allowed[rd->n_seen++] = ok;
	}
	return ok;
}

bool entity_reader_sees(struct entity_reader *rd, const struct entity *e)
{
	if (!rd->pol)
		return true;
	char topic[16 + ENTITY_ID_MAX];
	int n = snprintf(topic, sizeof topic, "kz/entity/%s", e->id);
	const char *w;
	bool ok = kz_policy_subscribe(rd->pol, &rd->s, topic, (size_t)n, &w) && label_ok(rd, e->label);
	rd->withheld += !ok;
	return ok;
}

uint32_t entity_reader_hides(struct entity_reader *rd, const struct entity *e)
{
	if (!rd->pol || !e->fl)
		return 0;
	uint32_t hide = 0;
	for (int g = 0; g < ENTITY_G_N; g++)
		if (e->fl->group[g] && !label_ok(rd, e->fl->group[g]))
			hide |= 1u << g;
	for (unsigned i = 0; i < e->n_aliases; i++)
		if (e->fl->alias[i] && !label_ok(rd, e->fl->alias[i]))
			hide |= ENTITY_HIDE_ALIAS(i);
	return hide;
}

bool entity_reader_sees_name(struct entity_reader *rd, const struct entity *e, const char *name)
{
	if (!rd->pol || !e->fl || !strcmp(name, e->id))
		return true;
	for (unsigned i = 0; i < e->n_aliases; i++)
		if (!strcmp(e->aliases[i], name))
			return !e->fl->alias[i] || label_ok(rd, e->fl->alias[i]);
	return true;
}

/* ---------- filters ---------- */

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-')
		return -1;
	*out = x;
	return 0;
}

static int status_of(struct entity_filter *f, const char *v)
{
	f->status_mask = 0;
	for (const char *p = v; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 4 && !strncmp(p, "live", 4))
			f->status_mask |= 1u << ENTITY_LIVE;
		else if (n == 5 && !strncmp(p, "stale", 5))
			f->status_mask |= 1u << ENTITY_STALE;
		else if (n == 7 && !strncmp(p, "removed", 7))
			f->status_mask |= 1u << ENTITY_REMOVED;
		else
			return -1;
		p += n + (p[n] == ',');
	}
	return f->status_mask ? 0 : -1;
}

int entity_filter_param(void *ctx, const char *k, const char *v)
{
	struct entity_filter *f = ctx;
	uint64_t x;
	if (!strcmp(k, "limit")) {
		if (parse_u64(v, &x) || x == 0) {
			snprintf(f->why, sizeof f->why, "limit: a positive integer");
			return -1;
		}
		f->limit = x > f->limit ? f->limit : (uint32_t)x;
		f->has_limit = true;
	} else if (!strcmp(k, "status")) {
		if (status_of(f, v)) {
			snprintf(f->why, sizeof f->why, "status: live, stale or removed, or several separated by commas");
			return -1;
		}
	} else if (!strcmp(k, "type")) {
		snprintf(f->type_buf, sizeof f->type_buf, "%s", v);
		f->type = f->type_buf;
	} else if (!strcmp(k, "origin")) {
		snprintf(f->origin_buf, sizeof f->origin_buf, "%s", v);
		f->origin = f->origin_buf;
	} else if (!strcmp(k, "bbox")) {
		double *b = f->bbox;
		if (sscanf(v, "%lf,%lf,%lf,%lf", &b[0], &b[1], &b[2], &b[3]) != 4 || b[0] < -180 || b[2] > 180 ||
		    b[1] < -90 || b[3] > 90 || b[0] > b[2] || b[1] > b[3]) {
			snprintf(f->why, sizeof f->why, "bbox: min_lon,min_lat,max_lon,max_lat in degrees (WGS 84)");
			return -1;
		}
		f->has_bbox = true;
	} else if (!strcmp(k, "since")) {
		if (kz_time_parse(v, &f->since_ns)) {
			snprintf(f->why, sizeof f->why, "since: an RFC 3339 date-time");
			return -1;
		}
	} else if (!strcmp(k, "next")) {
		f->has_next = true;
		if (parse_u64(v, &f->after_seq)) {
			snprintf(f->why, sizeof f->why, "next: the value of a previous answer's \"next\"");
			return -1;
		}
	} else {
		snprintf(f->why, sizeof f->why, "unknown parameter %.40s (limit, status, type, origin, bbox, since, next)", k);
		return -1;
	}
	return 0;
}

bool entity_filter_matches(const struct entity_filter *f, const struct entity *e)
{
	if (!(f->status_mask & (1u << e->status)) || e->seq <= f->after_seq || e->received_ns <= f->since_ns)
		return false;
	if (f->type && (!e->type || strncmp(e->type, f->type, strlen(f->type))))
		return false;
	if (f->origin && (!e->origin || strcmp(e->origin, f->origin)))
		return false;
	if (f->has_bbox && (!(e->pos.has & ENTITY_POS_KNOWN) || e->pos.lon < f->bbox[0] || e->pos.lat < f->bbox[1] ||
			    e->pos.lon > f->bbox[2] || e->pos.lat > f->bbox[3]))
		return false;
	return true;
}

