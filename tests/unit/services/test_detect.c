/* test_detect.c — the detection engine's parts: addresses and CIDR edges (IPv4 and IPv6,
 * host bits, the longest prefix), domain names (case, the trailing dot, a subdomain matches,
 * a look-alike does not, Zeek intel's exact names), URL normalisation (RFC 3986 §6), hash
 * case; the STIX pattern subset on the specification's examples (§9.9) and what is outside
 * it; a conjunction needing both comparisons in one event; versions, revocation and
 * valid_until; a warning list suppressing; the log readers (Zeek TSV with sets, Zeek JSON,
 * Suricata EVE, syslog) and sightings with STIX-derived ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kz_hash.h"
#include "base/kz_json.h"
#include "services/detect/detect.h"
#include "store/store.h"
#include "services/detect/detect_internal.h"

static struct kz_json_doc doc;

/* Adds an indicator with this pattern (and optional extra members): detect_add_stix's result. */
static int add(struct detect_index *x, const char *uuid_tail, const char *pattern, const char *extra)
{
	char buf[4096];
	snprintf(buf, sizeof buf,
		 "{\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"indicator--00000000-0000-4000-8000-%s\","
		 "\"created\":\"2024-01-01T00:00:00.000Z\",\"modified\":\"2024-01-01T00:00:00.000Z\",\"pattern\":\"%s\","
		 "\"pattern_type\":\"stix\",\"valid_from\":\"2024-01-01T00:00:00Z\"%s}",
		 uuid_tail, pattern, extra ? extra : "");
	assert_int_equal(kz_json_parse(&doc, buf, strlen(buf)), 0);
	const char *why = NULL;
	return detect_add_stix(x, kz_json_root(&doc), "class=restricted", "test", &why);
}

struct got {
	int n;
	char ids[16][64];
};

static void on_match(void *ctx, const struct detect_match *m)
{
	struct got *g = ctx;
	if (g->n < 16)
		snprintf(g->ids[g->n], sizeof g->ids[0], "%s", m->ind->id);
	g->n++;
}

/* How many indicators one observable matches. */
static int match1(struct detect_index *x, int kind, int role, const char *v)
{
	struct detect_obs o = { .kind = (uint8_t)kind, .role = (uint8_t)role, .value = v, .len = strlen(v), .field = "f" };
	struct got g = { 0 };
	detect_match_event(x, &o, 1, 1735689600000000ll /* 2025-01-01 */, on_match, &g);
	return g.n;
}

static void test_addresses(void **st)
{
	(void)st;
	uint8_t a[16];
	unsigned pl;
	assert_int_equal(detect_ip_parse("10.1.2.3/8", 10, a, &pl), 0);
	assert_int_equal(pl, 104);
	assert_int_equal(a[12], 10);
	assert_int_equal(a[13], 0); /* host bits cleared */
	assert_int_equal(detect_ip_parse("1.2.3", 5, a, &pl), -1);
	/* the dotted-quad fast path takes what inet_pton takes, and nothing else */
	static const char *const quads[] = { "0.0.0.0", "255.255.255.255", "10.0.0.1", " 1.2.3.4", "1.2.3.4 " };
	for (size_t i = 0; i < sizeof quads / sizeof *quads; i++) {
		assert_int_equal(detect_ip_parse(quads[i], strlen(quads[i]), a, &pl), 0);
		assert_int_equal(pl, 128);
		assert_int_equal(a[10], 0xff);
	}
	assert_int_equal(a[12], 1);
	assert_int_equal(a[15], 4);
	static const char *const bad[] = { "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3.4.5", "1..3.4", "1.2.3.", "1.2.3.4x",
					   "1.2.3.1000", "-1.2.3.4" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(detect_ip_parse(bad[i], strlen(bad[i]), a, &pl), -1);
	assert_int_equal(detect_ip_parse("1.2.3.4/33", 10, a, &pl), -1);
	assert_int_equal(detect_ip_parse("2001:db8::/129", 14, a, &pl), -1);
	assert_int_equal(detect_ip_parse("::ffff:1.2.3.4", 14, a, &pl), 0);
	struct detect_index *x = detect_index_new();
	assert_int_equal(add(x, "000000000001", "[ipv4-addr:value = '10.0.0.0/8']", NULL), 0);
	assert_int_equal(add(x, "000000000002", "[ipv4-addr:value = '10.20.30.40']", NULL), 0);
	assert_int_equal(add(x, "000000000003", "[ipv6-addr:value = '2001:db8:dead::/48']", NULL), 0);
	assert_int_equal(add(x, "000000000004", "[network-traffic:dst_ref.value = '192.0.2.7']", NULL), 0);
	assert_int_equal(match1(x, DETECT_IP, 0, "10.255.255.255"), 1);
	assert_int_equal(match1(x, DETECT_IP, 0, "10.20.30.40"), 2); /* the /8 and the /32 */
	assert_int_equal(match1(x, DETECT_IP, 0, "11.0.0.0"), 0);
	assert_int_equal(match1(x, DETECT_IP, 0, "9.255.255.255"), 0);
	assert_int_equal(match1(x, DETECT_IP, 0, "2001:db8:dead:beef::1"), 1);
	assert_int_equal(match1(x, DETECT_IP, 0, "2001:DB8:DEAE::1"), 0);
	assert_int_equal(match1(x, DETECT_IP, 0, "::ffff:10.1.1.1"), 1); /* the same IPv4 address */
	assert_int_equal(match1(x, DETECT_IP, DETECT_DST, "192.0.2.7"), 1);
	assert_int_equal(match1(x, DETECT_IP, DETECT_SRC, "192.0.2.7"), 0); /* dst_ref only */
	detect_index_free(x);
}

static void test_domains_urls_hashes(void **st)
{
	(void)st;
	struct detect_index *x = detect_index_new();
	assert_int_equal(add(x, "000000000001", "[domain-name:value = 'Evil.Example.']", NULL), 0);
	assert_int_equal(add(x, "000000000002", "[url:value = 'HTTP://Bad.example:80/a%7Eb?q=1#frag']", NULL), 0);
	assert_int_equal(add(x, "000000000003",
			     "[file:hashes.'SHA-256' = 'AEC070645FE53EE3B3763059376134F058CC337247C978ADD178B6CCDFB0019F']",
			     NULL),
			 0);
	assert_int_equal(add(x, "000000000004", "[email-addr:value = 'Jdoe@Example.com']", NULL), 0);
	assert_int_equal(add(x, "000000000005", "[domain-name:value = 'xn--80ak6aa92e.com']", NULL), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "evil.example"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "a.b.EVIL.example."), 1); /* a subdomain */
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "notevil.example"), 0);	/* a look-alike */
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "example"), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "XN--80AK6AA92E.COM"), 1);
	assert_int_equal(match1(x, DETECT_URL, 0, "bad.example/a~b?q=1"), 1); /* no scheme: http; default port */
	assert_int_equal(match1(x, DETECT_URL, 0, "http://bad.example/a~b?q=2"), 0);
	assert_int_equal(match1(x, DETECT_URL, 0, "https://bad.example/a~b?q=1"), 0);
	assert_int_equal(
		match1(x, DETECT_SHA256, 0, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"), 1);
	assert_int_equal(match1(x, DETECT_EMAIL, 0, "jdoe@example.com"), 1);
	char out[256];
	size_t n;
	assert_int_equal(detect_url_norm("HTTPS://Host.Example:443/%41%2fx#y", 34, out, sizeof out, &n), 0);
	assert_string_equal(out, "https://host.example/A%2Fx");
	assert_int_equal(detect_url_norm("http://h.example:8080", 21, out, sizeof out, &n), 0);
	assert_string_equal(out, "http://h.example:8080/");
	assert_int_equal(detect_domain_norm("B\xc3\xbc\x63her.Example", 15, out, sizeof out, &n), 0); /* IDN: its A-label */
	assert_string_equal(out, "xn--bcher-kva.example");
	assert_int_equal(detect_domain_norm("a b.example", 11, out, sizeof out, &n), -1);
	detect_index_free(x);
}

static void test_pattern_subset(void **st)
{
	(void)st;
	struct detect_index *x = detect_index_new();
	/* STIX 2.1 §9.9's examples within the subset */
	assert_int_equal(add(x, "000000000001",
			     "[ipv4-addr:value = '198.51.100.1/32' OR ipv4-addr:value = '203.0.113.33/32' OR "
			     "ipv6-addr:value = '2001:0db8:dead:beef:dead:beef:dead:0001/128']",
			     NULL),
			 0);
	assert_int_equal(add(x, "000000000002", "[domain-name:value = 'example.com'] OR [domain-name:value = 'example.net']",
			     NULL),
			 0);
	assert_int_equal(add(x, "000000000003", "[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]", NULL), 0);
	/* a conjunction: both in one event */
	assert_int_equal(add(x, "000000000004",
			     "[network-traffic:dst_ref.value = '198.18.0.1' AND domain-name:value = 'c2.example']", NULL),
			 0);
	assert_int_equal(match1(x, DETECT_IP, 0, "203.0.113.33"), 1);
	assert_int_equal(match1(x, DETECT_IP, 0, "2001:db8:dead:beef:dead:beef:dead:1"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "www.example.net"), 1);
	assert_int_equal(match1(x, DETECT_IP, 0, "192.0.2.2"), 1);
	assert_int_equal(match1(x, DETECT_IP, DETECT_DST, "198.18.0.1"), 0); /* half of the conjunction */
	struct detect_obs both[2] = {
		{ .kind = DETECT_IP, .role = DETECT_DST, .value = "198.18.0.1", .len = 10, .field = "id.resp_h" },
		{ .kind = DETECT_DOMAIN, .value = "c2.example", .len = 10, .field = "query" },
	};
	struct got g = { 0 };
	assert_int_equal(detect_match_event(x, both, 2, 0, on_match, &g), 1);
	assert_string_equal(g.ids[0], "indicator--00000000-0000-4000-8000-000000000004");
	/* outside the subset: listed, not dropped */
	static const char *const out[] = {
		"[domain-name:value = 'a.example'] AND [domain-name:value = 'b.example']",
		"[domain-name:value = 'a.example'] WITHIN 5 SECONDS",
		"[url:value MATCHES '(a)\\\\1']",	   /* a back-reference: Hyperscan does not compile it */
		"[file:hashes.MD5 MATCHES '^d41d']", /* MATCHES on a hash */
		"[file:name = 'evil.exe']",
		"[ipv4-addr:value != '192.0.2.1']",
		"[ipv4-addr:value = 'not an address']",
	};
	for (size_t i = 0; i < sizeof out / sizeof *out; i++)
		assert_int_equal(add(x, "000000000100", out[i], NULL), 1);
	struct detect_stats s;
	detect_index_stats(x, &s);
	assert_int_equal(s.indicators, 4);
	assert_int_equal(s.unsupported, 7);
	detect_index_free(x);
}

static void test_matches_and_idna(void **st)
{
	(void)st;
	struct detect_index *x = detect_index_new();
	assert_int_equal(add(x, "000000000001", "[url:value MATCHES '^https?://[^/]+/wp-admin/.*\\\\\\\\.php$']", NULL), 0);
	assert_int_equal(add(x, "000000000002", "[domain-name:value MATCHES '(?i)^[a-z0-9]{16}\\\\\\\\.onion$']", NULL), 0);
	assert_int_equal(add(x, "000000000003", "[domain-name:value = 'b\xc3\xbc\x63her.example']", NULL), 0);
	assert_int_equal(add(x, "000000000004", "[domain-name:value = 'xn--mnchen-3ya.example']", NULL), 0);
	assert_int_equal(match1(x, DETECT_URL, 0, "http://victim.example/wp-admin/x/setup.php"), 1);
	assert_int_equal(match1(x, DETECT_URL, 0, "http://victim.example/wp-admin/setup.phps"), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "ABCDEFGHIJKLMNOP.onion"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "abc.onion"), 0);
	/* an indicator in Unicode matches the A-label a resolver logs, and the other way */
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "xn--bcher-kva.example"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "www.B\xc3\xbc\x63her.example"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "m\xc3\xbcnchen.example"), 1);
	/* a new expression after matching began: compiled in at the next match */
	assert_int_equal(add(x, "000000000005", "[email-addr:value MATCHES '@evil\\\\\\\\.example$']", NULL), 0);
	assert_int_equal(match1(x, DETECT_EMAIL, 0, "ceo@evil.example"), 1);
	detect_index_free(x);
}

static void test_versions_and_warninglists(void **st)
{
	(void)st;
	struct detect_index *x = detect_index_new();
	assert_int_equal(add(x, "000000000001", "[domain-name:value = 'old.example']", NULL), 0);
	/* a newer version replaces it */
	char buf[1024];
	snprintf(buf, sizeof buf,
		 "{\"type\":\"indicator\",\"id\":\"indicator--00000000-0000-4000-8000-000000000001\","
		 "\"created\":\"2024-01-01T00:00:00.000Z\",\"modified\":\"2024-02-01T00:00:00.000Z\","
		 "\"pattern\":\"[domain-name:value = 'new.example']\",\"pattern_type\":\"stix\","
		 "\"valid_from\":\"2024-01-01T00:00:00Z\"}");
	const char *why;
	assert_int_equal(kz_json_parse(&doc, buf, strlen(buf)), 0);
	assert_int_equal(detect_add_stix(x, kz_json_root(&doc), "", "t", &why), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "old.example"), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "new.example"), 1);
	/* revoked */
	snprintf(buf, sizeof buf,
		 "{\"type\":\"indicator\",\"id\":\"indicator--00000000-0000-4000-8000-000000000001\","
		 "\"created\":\"2024-01-01T00:00:00.000Z\",\"modified\":\"2024-03-01T00:00:00.000Z\",\"revoked\":true,"
		 "\"pattern\":\"[domain-name:value = 'new.example']\",\"pattern_type\":\"stix\","
		 "\"valid_from\":\"2024-01-01T00:00:00Z\"}");
	assert_int_equal(kz_json_parse(&doc, buf, strlen(buf)), 0);
	assert_int_equal(detect_add_stix(x, kz_json_root(&doc), "", "t", &why), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "new.example"), 0);
	/* a file's indicators removed by source, then loaded again (a file that changed) */
	{
		char intel[] = "#fields\tindicator\tindicator_type\tmeta.source\nfile.example\tIntel::DOMAIN\tt\n";
		char again[sizeof intel];
		memcpy(again, intel, sizeof intel);
		char w[200];
		assert_int_equal(detect_load_text(x, intel, strlen(intel), "", "a.intel", w, sizeof w), 0);
		assert_int_equal(match1(x, DETECT_DOMAIN, 0, "file.example"), 1);
		assert_int_equal(detect_remove_source(x, "a.intel"), 1);
		assert_int_equal(match1(x, DETECT_DOMAIN, 0, "file.example"), 0);
		assert_int_equal(detect_remove_source(x, "nothing.intel"), 0);
		assert_int_equal(detect_load_text(x, again, strlen(again), "", "a.intel", w, sizeof w), 0);
		assert_int_equal(match1(x, DETECT_DOMAIN, 0, "file.example"), 1);
	}
	/* removed (a TAXII deletion): only the version it holds; then any version comes again */
	uint8_t u7[16];
	assert_int_equal(add(x, "000000000007", "[domain-name:value = 'deleted.example']", NULL), 0);
	assert_int_equal(kz_uuid_parse("00000000-0000-4000-8000-000000000007", u7), 0);
	assert_int_equal(detect_remove(x, u7, 1), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "deleted.example"), 1);
	assert_int_equal(detect_remove(x, u7, INT64_MIN), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "deleted.example"), 0);
	assert_int_equal(detect_remove(x, u7, INT64_MIN), 0);
	assert_int_equal(add(x, "000000000007", "[domain-name:value = 'deleted.example']", NULL), 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "deleted.example"), 1);
	/* valid_until in the past: no match at the event's time */
	assert_int_equal(add(x, "000000000002", "[domain-name:value = 'expired.example']",
			     ",\"valid_until\":\"2024-06-01T00:00:00Z\""),
			 0);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "expired.example"), 0);
	/* warning lists */
	assert_int_equal(detect_warn_add(x, "public-dns-v4", "cidr", "8.8.8.0/24"), 0);
	assert_int_equal(detect_warn_add(x, "top-domains", "string", "google.com"), 0);
	assert_int_equal(add(x, "000000000003", "[ipv4-addr:value = '8.8.8.8']", NULL), 1);
	assert_int_equal(add(x, "000000000004", "[domain-name:value = 'Google.com']", NULL), 1);
	assert_int_equal(add(x, "000000000005", "[ipv4-addr:value = '8.8.0.0/16']", NULL), 0); /* wider than the list */
	struct detect_stats s;
	detect_index_stats(x, &s);
	assert_int_equal(s.suppressed, 2);
	detect_index_free(x);
}

static void test_zeek_intel(void **st)
{
	(void)st;
	struct detect_index *x = detect_index_new();
	const char *names[] = { "indicator", "indicator_type", "meta.source" };
	const char *l1[] = { "evil.example", "Intel::DOMAIN", "feed" }, *l2[] = { "203.0.113.0/24", "Intel::SUBNET", "feed" },
		   *l3[] = { "JA3HASH", "Intel::JA3", "feed" };
	const char *why;
	assert_int_equal(detect_add_zeek_intel(x, l1, names, 3, "", "feed.intel", 2, &why), 0);
	assert_int_equal(detect_add_zeek_intel(x, l2, names, 3, "", "feed.intel", 3, &why), 0);
	assert_int_equal(detect_add_zeek_intel(x, l3, names, 3, "", "feed.intel", 4, &why), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "EVIL.example"), 1);
	assert_int_equal(match1(x, DETECT_DOMAIN, 0, "www.evil.example"), 0); /* Zeek: exact names */
	assert_int_equal(match1(x, DETECT_IP, 0, "203.0.113.9"), 1);
	detect_index_free(x);
}

struct evs {
	int events;
	struct detect_obs obs[32];
	size_t n;
	char vals[32][128];
	int64_t ts;
};

static void on_event(void *ctx, const struct detect_obs *obs, size_t n, int64_t ts, const char *line, size_t len)
{
	struct evs *e = ctx;
	(void)line, (void)len;
	e->events++;
	e->n = n < 32 ? n : 32;
	e->ts = ts;
	for (size_t i = 0; i < e->n; i++) {
		e->obs[i] = obs[i];
		snprintf(e->vals[i], sizeof e->vals[0], "%.*s", (int)obs[i].len, obs[i].value);
	}
}

static void test_readers(void **st)
{
	(void)st;
	struct evs e = { 0 };
	struct detect_reader *r = detect_reader_new(DETECT_AUTO, on_event, &e);
	static const char *const tsv[] = {
		"#separator \\x09", "#set_separator\t,",
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tquery\tanswers",
		"1521911720.865716\tC1\t10.47.1.100\t41772\t10.0.0.100\t53\tise.wrccdc.org\tise.wrccdc.cpp.edu,134.71.3.16",
	};
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(detect_reader_line(r, tsv[i], strlen(tsv[i])), 0);
	assert_int_equal(e.events, 1);
	assert_int_equal(e.n, 5);
	assert_int_equal(e.obs[0].kind, DETECT_IP);
	assert_int_equal(e.obs[0].role, DETECT_SRC);
	assert_string_equal(e.vals[2], "ise.wrccdc.org");
	assert_int_equal(e.obs[3].kind, DETECT_DOMAIN);
	assert_int_equal(e.obs[4].kind, DETECT_IP);
	assert_string_equal(e.vals[4], "134.71.3.16");
	assert_true(e.ts == 1521911720865716ll);
	static const char http[] = "{\"ts\":\"2018-03-24T17:15:20.5Z\",\"id.orig_h\":\"10.0.0.1\",\"host\":\"bad.example\","
				   "\"uri\":\"/x?y=1\",\"md5\":\"-\"}";
	assert_int_equal(detect_reader_line(r, http, sizeof http - 1), 0);
	assert_int_equal(e.n, 3);
	assert_string_equal(e.vals[2], "http://bad.example/x?y=1");
	assert_true(e.ts == 1521911720500000ll);
	static const char eve[] = "{\"timestamp\":\"2024-01-01T01:00:00.000000+0100\",\"event_type\":\"dns\",\"src_ip\":"
				  "\"192.0.2.1\",\"dest_ip\":\"192.0.2.53\",\"dns\":{\"queries\":[{\"rrname\":\"c2.example\"}],"
				  "\"answers\":[{\"rdata\":\"198.51.100.7\"}]}}";
	assert_int_equal(detect_reader_line(r, eve, sizeof eve - 1), 0);
	assert_int_equal(e.n, 4);
	assert_string_equal(e.vals[2], "c2.example");
	assert_int_equal(e.obs[3].kind, DETECT_IP);
	assert_true(e.ts == 1704067200000000ll); /* 01:00 at +01:00 */
	detect_reader_free(r);
	r = detect_reader_new(DETECT_SYSLOG, on_event, &e);
	static const char sl[] = "<34>1 2024-01-01T00:00:00Z host sshd 1 - - Failed login from 203.0.113.9 for "
				 "root; see http://bad.example/x or mail a@b.example about c2.example.";
	assert_int_equal(detect_reader_line(r, sl, sizeof sl - 1), 0);
	bool ip = false, url = false, mail = false, dom = false;
	for (size_t i = 0; i < e.n; i++) {
		ip |= e.obs[i].kind == DETECT_IP && !strcmp(e.vals[i], "203.0.113.9");
		url |= e.obs[i].kind == DETECT_URL && !strcmp(e.vals[i], "http://bad.example/x");
		mail |= e.obs[i].kind == DETECT_EMAIL && !strcmp(e.vals[i], "a@b.example");
		dom |= e.obs[i].kind == DETECT_DOMAIN && !strcmp(e.vals[i], "c2.example");
	}
	assert_true(ip && url && mail && dom);
	assert_true(e.ts == 1704067200000000ll);
	detect_reader_free(r);
	/* a TSV line before any header is an error, counted; the reader goes on */
	r = detect_reader_new(DETECT_ZEEK_TSV, on_event, &e);
	assert_int_equal(detect_reader_line(r, "1\t2\t3", 5), -1);
	struct detect_reader_stats rs;
	detect_reader_stats(r, &rs);
	assert_int_equal(rs.errors, 1);
	detect_reader_free(r);
}

static void on_sighting(void *ctx, const struct detect_sighting_out *o)
{
	char *out = ctx;
	snprintf(out, 4096, "%.*s", (int)o->len, o->json);
}

static void test_sightings(void **st)
{
	(void)st;
	char id[100];
	detect_uuid5("{\"value\":\"10.47.1.100\"}", 23, "ipv4-addr--", id);
	assert_string_equal(id, "ipv4-addr--80a313b6-d85a-5f92-87e2-08fa0b54926a"); /* as STIX's own tools derive it */
	struct detect_sightings *s = detect_sightings_new("spiffe://kizuna.local/dev/sensor/zeek");
	struct detect_indicator_info ind = { .id = "indicator--00000000-0000-4000-8000-000000000001" };
	struct detect_obs o = { .kind = DETECT_IP, .value = "10.47.1.100", .len = 11, .field = "id.orig_h" };
	struct detect_match m = { .ind = &ind, .obs = &o, .ts_us = 1521911720000000ll };
	detect_sightings_add(s, &m, "class=secret");
	m.ts_us += 5000000;
	detect_sightings_add(s, &m, "class=secret");
	char out[4096] = "";
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 1);
	assert_int_equal(kz_json_parse(&doc, out, strlen(out)), 0);
	const struct kz_json *objs = kz_json_get(kz_json_root(&doc), "objects");
	const struct kz_json *sg = kz_json_at(objs, 0);
	assert_string_equal(kz_json_get_str(sg, "type"), "sighting");
	long long count;
	assert_true(kz_json_int(kz_json_get(sg, "count"), &count) && count == 2);
	assert_string_equal(kz_json_get_str(sg, "first_seen"), "2018-03-24T17:15:20.000000Z");
	assert_string_equal(kz_json_get_str(sg, "last_seen"), "2018-03-24T17:15:25.000000Z");
	assert_string_equal(kz_json_get_str(kz_json_at(objs, 2), "id"), "ipv4-addr--80a313b6-d85a-5f92-87e2-08fa0b54926a");
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 0); /* nothing new */
	/* another label is another sighting, with its own ids */
	char sid[80];
	snprintf(sid, sizeof sid, "%s", kz_json_get_str(sg, "id"));
	detect_sightings_add(s, &m, "class=unclassified");
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 1);
	kz_json_free(&doc);
	assert_int_equal(kz_json_parse(&doc, out, strlen(out)), 0);
	sg = kz_json_at(kz_json_get(kz_json_root(&doc), "objects"), 0);
	assert_string_not_equal(kz_json_get_str(sg, "id"), sid);
	/* versioned: created and modified from the clock, each flush strictly newer */
	detect_sightings_versioned(s, true);
	detect_sightings_add(s, &m, "class=unclassified");
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 1);
	kz_json_free(&doc);
	assert_int_equal(kz_json_parse(&doc, out, strlen(out)), 0);
	char mod1[64];
	snprintf(mod1, sizeof mod1, "%s", kz_json_get_str(kz_json_at(kz_json_get(kz_json_root(&doc), "objects"), 0), "modified"));
	detect_sightings_add(s, &m, "class=unclassified");
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 1);
	kz_json_free(&doc);
	assert_int_equal(kz_json_parse(&doc, out, strlen(out)), 0);
	assert_true(strcmp(kz_json_get_str(kz_json_at(kz_json_get(kz_json_root(&doc), "objects"), 0), "modified"), mod1) > 0);
	assert_int_equal(detect_sightings_count(s), 2);
	detect_sightings_cap(s, 1);
	detect_sightings_add(s, &m, "class=unclassified");
	assert_int_equal(detect_sightings_flush(s, on_sighting, out), 1);
	assert_int_equal(detect_sightings_count(s), 0); /* over the cap: forgotten after the flush */
	detect_sightings_free(s);
}

/* data_dir/detect.pos: only "next_seq N\n" with N from 1 to 2^64-1, canonical */
static void test_saved_position(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int rc;
		uint64_t v;
	} cases[] = {
		{"next_seq 1\n", 0, 1},
		{"next_seq 4711\n", 0, 4711},
		{"next_seq 18446744073709551615\n", 0, UINT64_MAX},
		{"next_seq 18446744073709551616\n", -1, 0}, /* one over */
		{"next_seq 99999999999999999999\n", -1, 0},
		{"next_seq 0\n", -1, 0},
		{"next_seq -1\n", -1, 0}, /* sscanf's %llu took this as 2^64-1 */
		{"next_seq +5\n", -1, 0},
		{"next_seq 05\n", -1, 0},
		{"next_seq  5\n", -1, 0},
		{"next_seq 5\n\n", -1, 0},
		{"next_seq 5", -1, 0},
		{"next_seq \n", -1, 0},
		{"next_seq5\n", -1, 0},
		{"", -1, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t v = 0;
		int rc = detect_pos_parse(cases[i].text, strlen(cases[i].text), &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].v))
			fail_msg("%s: rc %d, value %llu", cases[i].text, rc, (unsigned long long)v);
	}
	char out[DETECT_POS_MAX];
	assert_int_equal(detect_pos_format(UINT64_MAX, out), strlen("next_seq 18446744073709551615\n"));
	assert_string_equal(out, "next_seq 18446744073709551615\n");
}

/* data_dir/detect.headers: a reader's Zeek header written out and given to a fresh reader
 * reads the same line the same way; a file saved after the position, or malformed, gives none */
static void header_to(void *ctx, const char *topic, size_t topic_len, const char *h, size_t len)
{
	struct detect_reader *r = ctx;
	assert_int_equal(topic_len, strlen("kz/logs/zeek/dns"));
	assert_memory_equal(topic, "kz/logs/zeek/dns", topic_len);
	for (const char *p = h, *end = h + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		assert_int_equal(detect_reader_line(r, p, l), 0);
		p += l + 1;
	}
}

static void test_saved_headers(void **state)
{
	(void)state;
	struct evs a = { 0 }, b = { 0 };
	struct detect_reader *ra = detect_reader_new(DETECT_AUTO, on_event, &a), *rb = detect_reader_new(DETECT_AUTO, on_event, &b);
	static const char *const head[] = { "#separator \\x7c", "#set_separator|;",
					    "#fields|ts|id.orig_h|query|answers" };
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(detect_reader_line(ra, head[i], strlen(head[i])), 0);
	struct kz_buf f, scratch;
	kz_buf_init(&f, 0), kz_buf_init(&scratch, 0);
	assert_int_equal(detect_headers_begin(&f, 77), 0);
	assert_int_equal(detect_headers_add(&f, "kz/logs/zeek/dns", ra, &scratch), 0);
	assert_int_equal(detect_headers_add(&f, "kz/logs/other", rb, &scratch), 0); /* none: not written */
	assert_int_equal(detect_headers_end(&f), 0);
	const char *text = (const char *)kz_buf_head(&f);
	assert_non_null(memmem(text, f.len, "\"next_seq\":77", 13)); /* not NUL-terminated */
	assert_null(memmem(text, f.len, "kz/logs/other", 13));
	assert_int_equal(detect_headers_parse(text, f.len, 76, header_to, rb), -1); /* saved after 76 */
	assert_int_equal(detect_headers_parse(text, f.len - 3, 77, header_to, rb), -1); /* cut short */
	assert_int_equal(detect_headers_parse(text, f.len, 77, header_to, rb), 1);
	struct evs c = { 0 };
	struct detect_reader *rc = detect_reader_new(DETECT_AUTO, on_event, &c);
	assert_int_equal(detect_headers_parse(text, f.len, 1000, header_to, rc), 1); /* held since 77 */
	static const char line[] = "1521911720.865716|10.47.1.100|ise.wrccdc.org|a.example;134.71.3.16";
	assert_int_equal(detect_reader_line(ra, line, sizeof line - 1), 0);
	assert_int_equal(detect_reader_line(rb, line, sizeof line - 1), 0);
	assert_int_equal(a.events, 1);
	assert_int_equal(b.events, 1);
	assert_int_equal(b.n, a.n);
	assert_int_equal(b.n, 4); /* the address, the query, and each of the answers' set */
	for (size_t i = 0; i < a.n; i++) {
		assert_string_equal(b.vals[i], a.vals[i]);
		assert_int_equal(b.obs[i].kind, a.obs[i].kind);
		assert_int_equal(b.obs[i].role, a.obs[i].role);
	}
	assert_true(b.ts == a.ts && a.ts == 1521911720865716ll);
	kz_buf_cleanup(&f), kz_buf_cleanup(&scratch);
	assert_int_equal(detect_reader_line(rc, line, sizeof line - 1), 0);
	assert_int_equal(c.n, 4);
	detect_reader_free(ra);
	detect_reader_free(rb);
	detect_reader_free(rc);
}

int main(void)
{
	kz_hash_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses),	  cmocka_unit_test(test_domains_urls_hashes),
		cmocka_unit_test(test_pattern_subset),	  cmocka_unit_test(test_versions_and_warninglists),
		cmocka_unit_test(test_matches_and_idna),
		cmocka_unit_test(test_zeek_intel),	  cmocka_unit_test(test_readers),
		cmocka_unit_test(test_sightings),	  cmocka_unit_test(test_saved_position),
		cmocka_unit_test(test_saved_headers),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kz_json_free(&doc);
	return rc;
}
