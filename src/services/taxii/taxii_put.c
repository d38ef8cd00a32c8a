/* taxii_put.c — objects of the node's own services (docs/TAXII.md "Objects from the node's
 * services"): a detection's sightings go into a collection as records by the path a cluster
 * follower's take (validated here as a POST validates, dated in the collection's date_added
 * order, indexed once durable), and the newest version of an object is read back for a
 * service that follows a collection (a deletion of the version it used). */
#include "services/taxii/taxii_internal.h"
#include "base/kz_json.h"
#include "base/kz_err.h"
#include "base/kz_topic.h"

int taxii_put(struct taxii *t, const char *coll, const char *author, const char *label, const char *json, size_t n,
	      char *why, size_t why_len)
{
	struct tx_coll *c = t ? tx_coll_of(t, coll, strlen(coll)) : NULL;
	if (!c) {
		snprintf(why, why_len, "no TAXII collection %s", coll);
		return -1;
	}
	struct kz_json_doc d = { 0 };
	if (kz_json_parse(&d, json, n) || !kz_json_is(kz_json_root(&d), KZ_JSON_OBJECT)) {
		kz_json_free(&d);
		snprintf(why, why_len, "not a JSON object");
		return -1;
	}
	const struct kz_json *o = kz_json_root(&d);
	int64_t now = (int64_t)(kz_now_wall_ns() / 1000);
	struct stix_opts opts = { .allow_custom = c->allow_custom, .now_us = now };
	struct stix_info info;
	char e[300];
	int rc = -1;
	char *js = NULL;
	struct kz_buf attrs, rec;
	kz_buf_init(&attrs, 0), kz_buf_init(&rec, 0);
	if (stix_validate(o, &opts, &info, e, sizeof e)) {
		snprintf(why, why_len, "not a valid STIX 2.1 object: %s", e);
		goto out;
	}
	const char *marks[STIX_MAX_MARKINGS];
	size_t nm = stix_markings(o, marks);
	struct tx_ent ent = { .by_i = TX_NONE, .mk_i = TX_NONE };
	uint32_t ti = tx_type_index(t, info.type, true);
	if (ti == TX_NONE || tx_refs_intern(t, info.created_by_ref, marks, nm, &ent.by_i, &ent.mk_i)) {
		snprintf(why, why_len, "too many distinct types or identifiers on this node");
		goto out;
	}
	/* the same version again, or an SCO (no versions of its own) already there: nothing */
	bool sco = info.created_us == INT64_MIN;
	bool dup = false;
	pthread_rwlock_rdlock(&c->lock);
	struct tx_slot *sl = tx_slot_of(c, ti, info.uuid, false);
	for (uint32_t j = sl ? sl->first : TX_NONE; j != TX_NONE && !dup; j = c->e[j].next_ver)
		dup = !c->e[j].deleted && (sco || c->e[j].version_us == info.modified_us);
	pthread_rwlock_unlock(&c->lock);
	if (dup) {
		rc = 1;
		goto out;
	}
	const char *pl = json;
	size_t pll = n;
	if (info.tlp_rewritten) {
		if (!(js = stix_rewrite(json, o, &pll))) {
			snprintf(why, why_len, "out of memory");
			goto out;
		}
		pl = js;
	}
	char topic[400], u[37];
	kz_uuid_format(info.uuid, u);
	snprintf(topic, sizeof topic, KZ_TOPIC_TAXII "/%s/%s/%s/%lld", c->id, info.type, u,
		 (long long)(sco ? now : info.modified_us));
	tx_refs_attrs(t, &ent, &attrs);
	struct kz_record r = { .time_ns = (uint64_t)now * 1000, .qos = 1, .service = true };
	kz_uuidv7(r.id, r.time_ns / 1000000);
	r.topic = (struct kz_bytes){ (const uint8_t *)topic, (uint32_t)strlen(topic) };
	r.origin_node = (struct kz_bytes){ (const uint8_t *)t->cfg.node_id, (uint32_t)strlen(t->cfg.node_id) };
	r.origin_id = (struct kz_bytes){ (const uint8_t *)author, (uint32_t)strlen(author) };
	r.label = (struct kz_bytes){ (const uint8_t *)label, (uint32_t)strlen(label) };
	r.content_type = (struct kz_bytes){ (const uint8_t *)STIX_MT, (uint32_t)strlen(STIX_MT) };
	r.attrs = (struct kz_bytes){ kz_buf_head(&attrs), (uint32_t)attrs.len };
	r.payload = (struct kz_bytes){ (const uint8_t *)pl, (uint32_t)pll };
	uint8_t *data = NULL;
	if (kz_record_encode(&r, &rec) || !(data = malloc(rec.len))) {
		snprintf(why, why_len, "cannot encode the record");
		goto out;
	}
	memcpy(data, kz_buf_head(&rec), rec.len);
	struct kz_store_item it = { data, (uint32_t)rec.len, NULL, NULL, NULL, false };
	int k = taxii_follow(t, &it);
	if (k <= 0) {
		free(data);
		snprintf(why, why_len, k < 0 ? "out of memory" : "the record is not a TAXII object's");
		goto out;
	}
	rc = 0;
out:
	free(js);
	kz_buf_cleanup(&attrs), kz_buf_cleanup(&rec);
	kz_json_free(&d);
	return rc;
}

int taxii_newest(struct taxii *t, const char *coll, const char *type, const uint8_t uuid[16], struct kz_buf *rec)
{
	struct tx_coll *c = t ? tx_coll_of(t, coll, strlen(coll)) : NULL;
	uint32_t ti = c ? tx_type_index(t, type, false) : TX_NONE;
	if (ti == TX_NONE)
		return 0;
	uint64_t seq = 0;
	struct kz_reclog_pos pos;
	int64_t best = INT64_MIN;
	pthread_rwlock_rdlock(&c->lock);
	struct tx_slot *sl = tx_slot_of(c, ti, uuid, false);
	for (uint32_t j = sl ? sl->first : TX_NONE; j != TX_NONE; j = c->e[j].next_ver)
		if (!c->e[j].deleted && (!seq || c->e[j].version_us > best)) {
			best = c->e[j].version_us;
			seq = c->e[j].seq;
			pos = c->e[j].pos;
		}
	pthread_rwlock_unlock(&c->lock);
	if (!seq)
		return 0;
	struct kz_reclog_reader r;
	kz_reclog_reader_init(&r, t->cfg.log_dir, t->cfg.max_record_bytes);
	int rc = kz_reclog_read(&r, &pos, seq, rec);
	kz_reclog_reader_close(&r);
	return rc == KZ_OK ? 1 : rc == KZ_ENOTFOUND ? 0 : -1;
}
