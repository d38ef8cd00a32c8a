/* test_access.c — the one decision point for records (trust/access.h) on the fixture in
 * tests/data/policy: reading through each path (an MQTT delivery, a query, a service's view
 * with TLP sharing, with and without a policy), writing with a given or a default label, and
 * the sharing part of labels (split, composed, audiences in canonical form). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kz_hash.h"
#include "trust/access.h"

#define FIX KZ_TEST_DATA "/policy/kizuna.policy"
#define REG KZ_TEST_DATA "/policy/identities"
#define ID(o, k, n) "spiffe://kizuna.local/" o "/" k "/" n

static struct kz_policy *pol;

static int setup(void **st)
{
	(void)st;
	kz_hash_seed();
	return kz_policy_load(FIX, REG, 1, &pol, stderr) ? -1 : 0;
}

static int teardown(void **st)
{
	(void)st;
	kz_policy_free(pol);
	return 0;
}

static struct kz_label label(const char *text)
{
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[160];
	size_t cn;
	assert_int_equal(kz_label_parse(pol, text, strlen(text), &l, canon, &cn, why, sizeof why), 0);
	return l;
}

static bool reads(const char *who, enum kz_path path, const struct kz_record_facts *f, const char **why)
{
	struct kz_subject s;
	kz_subject_init(pol, who, &s);
	return kz_may_read(pol, &s, path, f, why);
}

static void test_read_paths(void **st)
{
	(void)st;
	const char *why;
	struct kz_label secret_cyber = label("class=secret;caveat=cyber;rel=jpn");
	struct kz_record_facts f = { .label = &secret_cyber, .topic = (const uint8_t *)"ops/x", .topic_len = 5 };
	/* a delivery: the label only (the filter was decided at SUBSCRIBE) */
	assert_true(reads(ID("mod", "user", "alice"), KZ_PATH_DELIVERY, &f, &why));
	assert_false(reads(ID("mod", "user", "dave"), KZ_PATH_DELIVERY, &f, &why)); /* confidential < secret */
	assert_string_equal(why, "clearance below the label's classification");
	assert_false(reads(ID("acme", "user", "erin"), KZ_PATH_DELIVERY, &f, &why)); /* rel=jpn, erin is usa */
	/* a query: also the subscribe rules on the record's topic */
	assert_true(reads(ID("mod", "user", "alice"), KZ_PATH_QUERY, &f, &why));
	f.topic = (const uint8_t *)"cti/x";
	f.topic_len = 5;
	assert_true(reads(ID("mod", "user", "alice"), KZ_PATH_QUERY, &f, &why));
	f.topic = (const uint8_t *)"elsewhere";
	f.topic_len = 9;
	assert_false(reads(ID("mod", "user", "alice"), KZ_PATH_QUERY, &f, &why));
	assert_string_equal(why, "no rule allows this subject to subscribe to the record's topic");
	assert_true(reads(ID("mod", "user", "alice"), KZ_PATH_DELIVERY, &f, &why)); /* not a delivery's business */
	/* a label that does not parse under the policy in force: denied on every path */
	f.label = NULL;
	assert_false(reads(ID("nisc", "user", "carol"), KZ_PATH_DELIVERY, &f, &why));
	assert_string_equal(why, "the record's label is not valid under the policy in force");
}

static void test_service_sharing(void **st)
{
	(void)st;
	const char *why;
	struct kz_share sh;
	char base[256];
	struct kz_label open = label("class=unclassified");
	struct kz_record_facts f = { .label = &open, .share = &sh, .author = ID("mod", "user", "dave") };
	/* AMBER to the author's organisation by default, and to an audience */
	assert_int_equal(kz_share_split("class=unclassified;tlp=amber;aud=org:METI", &sh, base, sizeof base), 0);
	assert_string_equal(base, "class=unclassified");
	assert_int_equal(sh.tlp, KZ_TLP_AMBER);
	assert_int_equal(sh.n_orgs, 1);
	assert_string_equal(sh.orgs[0], "meti");
	assert_true(reads(ID("mod", "user", "alice"), KZ_PATH_SERVICE, &f, &why));  /* the author's org */
	assert_true(reads(ID("meti", "user", "bob"), KZ_PATH_SERVICE, &f, &why));   /* the audience */
	assert_false(reads(ID("nisc", "user", "carol"), KZ_PATH_SERVICE, &f, &why));
	assert_string_equal(why, "not among those the record's TLP and audience share it with");
	assert_true(reads(ID("nisc", "user", "carol"), KZ_PATH_DELIVERY, &f, &why)); /* sharing is the service's path */
	kz_share_free(&sh);
	/* AMBER+STRICT: the one organisation only, not even the author's */
	assert_int_equal(kz_share_split("tlp=amber+strict;aud=org:meti", &sh, base, sizeof base), 0);
	assert_false(reads(ID("mod", "user", "alice"), KZ_PATH_SERVICE, &f, &why));
	assert_true(reads(ID("meti", "user", "bob"), KZ_PATH_SERVICE, &f, &why));
	assert_true(reads(ID("mod", "user", "dave"), KZ_PATH_SERVICE, &f, &why)); /* the author */
	kz_share_free(&sh);
	/* RED: named identities only */
	assert_int_equal(kz_share_split("tlp=red;aud=id:" ID("nisc", "user", "carol"), &sh, base, sizeof base), 0);
	assert_string_equal(base, "");
	assert_true(reads(ID("nisc", "user", "carol"), KZ_PATH_SERVICE, &f, &why));
	assert_false(reads(ID("mod", "user", "alice"), KZ_PATH_SERVICE, &f, &why));
	/* without a policy the sharing part still holds; the policy's part has nobody to ask */
	struct kz_subject s;
	kz_subject_init(NULL, ID("mod", "user", "alice"), &s);
	assert_string_equal(s.org, "mod");
	assert_false(kz_may_read(NULL, &s, KZ_PATH_SERVICE, &f, &why));
	kz_subject_init(NULL, ID("nisc", "user", "carol"), &s);
	assert_true(kz_may_read(NULL, &s, KZ_PATH_SERVICE, &f, &why));
	kz_share_free(&sh);
	/* CLEAR and GREEN: everyone the policy lets in */
	assert_int_equal(kz_share_split("class=secret;tlp=green", &sh, base, sizeof base), 0);
	struct kz_label sec = label("class=secret");
	f.label = &sec;
	assert_true(reads(ID("nisc", "user", "carol"), KZ_PATH_SERVICE, &f, &why));
	assert_false(reads(ID("meti", "user", "bob"), KZ_PATH_SERVICE, &f, &why)); /* confidential < secret */
	kz_share_free(&sh);
}

static void test_write(void **st)
{
	(void)st;
	struct kz_subject s;
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[200];
	size_t cn;
	kz_subject_init(pol, ID("mod", "sensor", "radar1"), &s);
	/* no label given: the publish rule's */
	assert_int_equal(kz_may_write(pol, &s, "sensors/a", 9, NULL, 0, &l, canon, &cn, why, sizeof why), KZ_WRITE_OK);
	assert_string_equal(canon, "policy=jp-mod;class=restricted;rel=jpn;relorg=mod");
	/* a label it dominates */
	const char *lt = "class=unclassified;rel=jpn";
	assert_int_equal(kz_may_write(pol, &s, "sensors/a", 9, lt, strlen(lt), &l, canon, &cn, why, sizeof why),
			 KZ_WRITE_OK);
	/* one above its clearance */
	lt = "class=secret";
	assert_int_equal(kz_may_write(pol, &s, "sensors/a", 9, lt, strlen(lt), &l, canon, &cn, why, sizeof why),
			 KZ_WRITE_LABEL_DENIED);
	/* malformed */
	lt = "class=cosmic";
	assert_int_equal(kz_may_write(pol, &s, "sensors/a", 9, lt, strlen(lt), &l, canon, &cn, why, sizeof why),
			 KZ_WRITE_BAD_LABEL);
	/* a topic no rule lets it publish on */
	assert_int_equal(kz_may_write(pol, &s, "ops/a", 5, NULL, 0, &l, canon, &cn, why, sizeof why), KZ_WRITE_DENIED);
}

static void test_share_label(void **st)
{
	(void)st;
	struct kz_subject dave;
	kz_subject_init(pol, ID("mod", "user", "dave"), &dave);
	char out[1200];
	const char *why;
	assert_int_equal(kz_share_label("class=unclassified", KZ_TLP_GREEN, NULL, &dave, out, sizeof out, &why), 0);
	assert_string_equal(out, "class=unclassified;tlp=green");
	assert_int_equal(kz_share_label("", KZ_TLP_AMBER, NULL, &dave, out, sizeof out, &why), 0);
	assert_string_equal(out, "tlp=amber;aud=org:mod");
	assert_int_equal(kz_share_label("", KZ_TLP_RED, NULL, &dave, out, sizeof out, &why), 0);
	assert_string_equal(out, "tlp=red;aud=id:" ID("mod", "user", "dave"));
	assert_int_equal(kz_share_label("", KZ_TLP_AMBER, " org:NISC, id:SPIFFE://Kizuna.Local/meti/user/Bob,org:nisc",
					&dave, out, sizeof out, &why),
			 0);
	assert_string_equal(out, "tlp=amber;aud=id:spiffe://kizuna.local/meti/user/Bob,org:nisc");
	assert_int_equal(kz_share_label("", KZ_TLP_AMBER_STRICT, "org:a,org:b", &dave, out, sizeof out, &why), -1);
	assert_non_null(strstr(why, "exactly one org"));
	assert_int_equal(kz_share_label("", KZ_TLP_AMBER, "nation:jpn", &dave, out, sizeof out, &why), -1);
	/* the canonical form is a fixed point */
	char a[900], b[900];
	size_t n1, n2;
	assert_int_equal(kz_audience_canon("id:spiffe://X/y/user/z org:B org:a", a, sizeof a, &n1, &why), 0);
	assert_int_equal(kz_audience_canon(a, b, sizeof b, &n2, &why), 0);
	assert_string_equal(a, b);
	assert_int_equal(n1, 3);
}

static void join_is(const struct kz_policy *p, const char *a, const char *b, const char *want)
{
	char out[KZ_LABEL_MAX_LEN + 1];
	const char *why = "";
	int rc = kz_label_join(p, a, b, out, sizeof out, &why);
	if (rc)
		fail_msg("join of '%s' and '%s': %s", a, b, why);
	assert_string_equal(out, want);
	assert_int_equal(kz_label_join(p, b, a, out, sizeof out, &why), 0); /* either order */
	assert_string_equal(out, want);
}

static void join_refused(const struct kz_policy *p, const char *a, const char *b, const char *because)
{
	char out[KZ_LABEL_MAX_LEN + 1];
	const char *why = "";
	assert_int_equal(kz_label_join(p, a, b, out, sizeof out, &why), -1);
	assert_non_null(strstr(why, because));
}

/* The stricter of two labels (a sighting of an indicator in an event, docs/POLICY.md). */
static void test_label_join(void **st)
{
	(void)st;
	join_is(pol, "class=secret;rel=jpn", "class=restricted;rel=jpn", "policy=jp-mod;class=secret;rel=jpn");
	/* restrictive: either's values; permissive: both's; informative: either's */
	join_is(pol, "class=restricted;caveat=cyber;rel=jpn,usa;note=a", "class=confidential;caveat=crypto;rel=usa,gbr;note=b",
		"policy=jp-mod;class=confidential;caveat=cyber,crypto;rel=usa;note=a,b");
	join_refused(pol, "class=restricted;rel=jpn", "class=restricted;rel=usa", "permissive");
	/* one side's permissive category only: its values */
	join_is(pol, "class=restricted;relorg=mod", "class=secret", "policy=jp-mod;class=secret;relorg=mod");
	/* an empty label is the policy's default */
	join_is(pol, "", "class=secret;rel=jpn,usa", "policy=jp-mod;class=secret;rel=jpn");
	/* TLP: the higher; audience: in both, or an id whose organisation the other names */
	join_is(pol, "class=unclassified;tlp=green", "class=unclassified;tlp=amber;aud=org:meti",
		"policy=jp-mod;class=unclassified;tlp=amber;aud=org:meti");
	join_is(pol, "class=unclassified;tlp=amber;aud=org:meti,org:mod",
		"class=unclassified;tlp=red;aud=id:" ID("meti", "user", "bob") ",org:nisc",
		"policy=jp-mod;class=unclassified;tlp=red;aud=id:" ID("meti", "user", "bob"));
	join_refused(pol, "class=unclassified;tlp=amber;aud=org:meti", "class=unclassified;tlp=amber;aud=org:mod",
		     "audiences");
	join_refused(pol, "class=cosmic", "class=secret", "does not parse");
	/* without a policy: the sharing parts join, the rest must agree */
	join_is(NULL, "tlp=amber;aud=org:a", "tlp=clear", "tlp=amber;aud=org:a");
	join_is(NULL, "tlp=amber;aud=org:a,org:b", "tlp=red;aud=org:b", "tlp=red;aud=org:b");
	join_is(NULL, "", "", "");
	join_refused(NULL, "class=x", "class=y", "no policy");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_paths),
		cmocka_unit_test(test_service_sharing),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_share_label),
		cmocka_unit_test(test_label_join),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
