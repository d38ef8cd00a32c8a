/* test_policy.c — labels, the policy file, the identity registry and the decision point:
 * strict parsing with file:line errors, canonical labels, decisions on the fixture in
 * tests/data/policy, filter coverage, and a property test of 20,000 random
 * (subject, label, action) cases against a plain reference implementation of the rules
 * written here from docs/POLICY.md, on strings, without the bitsets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/kz_hash.h"
#include "trust/policy.h"

#define FIX KZ_TEST_DATA "/policy/kizuna.policy"
#define REG KZ_TEST_DATA "/policy/identities"

static char dir[256];
static char errs[8192];

static int setup(void **st)
{
	(void)st;
	kz_hash_seed();
	snprintf(dir, sizeof dir, "/tmp/kz-policy-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void write_file(const char *name, const char *text)
{
	char path[400];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Loads dir/pol + dir/reg; errors collected in errs. */
static int load_text(const char *pol, const char *reg, struct kz_policy **p)
{
	char pp[400], rp[400];
	write_file("p", pol);
	write_file("r", reg);
	snprintf(pp, sizeof pp, "%s/p", dir);
	snprintf(rp, sizeof rp, "%s/r", dir);
	FILE *e = fmemopen(errs, sizeof errs, "w");
	int n = kz_policy_load(pp, rp, 1, p, e);
	fclose(e);
	return n;
}

static struct kz_policy *fixture(void)
{
	struct kz_policy *p;
	int n = kz_policy_load(FIX, REG, 7, &p, stderr);
	assert_int_equal(n, 0);
	return p;
}

static void test_fixture_loads(void **st)
{
	(void)st;
	struct kz_policy *p = fixture();
	assert_string_equal(p->id, "jp-mod");
	assert_int_equal(p->n_levels, 5);
	assert_int_equal(p->n_cats, 4);
	assert_int_equal(p->n_ids, 6);
	assert_int_equal(p->n_rules, 6);
	assert_int_equal(p->gen, 7);
	assert_non_null(strstr(p->version, "fixture-1/"));
	assert_int_equal(strlen(p->version), strlen("fixture-1/") + 12);
	assert_string_equal(p->default_text, "policy=jp-mod;class=restricted;rel=jpn");
	kz_policy_free(p);
}

static int parse(const struct kz_policy *p, const char *s, char *canon, char *why)
{
	struct kz_label l;
	size_t n;
	return kz_label_parse(p, s, strlen(s), &l, canon, &n, why, 160);
}

static void test_label_canonical(void **st)
{
	(void)st;
	struct kz_policy *p = fixture();
	char canon[KZ_LABEL_MAX_LEN + 1], why[160];
	static const char *const cases[][2] = {
		{ "class=secret", "policy=jp-mod;class=secret" },
		{ "CLASS=Secret;Policy=JP-MOD", "policy=jp-mod;class=secret" },
		{ "tlp=AMBER+STRICT;aud=org:meti,org:mod;rel=usa,jpn;class=confidential;caveat=crypto,cyber",
		  "policy=jp-mod;class=confidential;caveat=cyber,crypto;rel=jpn,usa;tlp=amber+strict;aud=org:meti,org:mod" },
		{ "class=unclassified;note=zulu,alpha;tlp=clear", "policy=jp-mod;class=unclassified;note=alpha,zulu;tlp=clear" },
		{ "class=secret;tlp=red;aud=id:spiffe://kizuna.local/meti/user/bob,nation:usa",
		  "policy=jp-mod;class=secret;tlp=red;aud=id:spiffe://kizuna.local/meti/user/bob,nation:usa" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse(p, cases[i][0], canon, why), 0);
		assert_string_equal(canon, cases[i][1]);
		/* Canonical text is a fixed point. */
		char again[KZ_LABEL_MAX_LEN + 1];
		assert_int_equal(parse(p, canon, again, why), 0);
		assert_string_equal(again, canon);
	}
	static const char *const bad[][2] = {
		{ "", "empty label" },
		{ "tlp=green", "no class=" },
		{ "class=secret;", "ends with ';'" },
		{ "class=secret;;tlp=red", "empty field" },
		{ "class=secret;class=secret", "given twice" },
		{ "class=cosmic", "unknown classification" },
		{ "class=secret;policy=nato", "this node enforces 'jp-mod'" },
		{ "class=secret;tlp=white", "no WHITE" },
		{ "class=secret;tlp=red", "needs an audience" },
		{ "class=secret;tlp=amber+strict", "needs an audience" },
		{ "class=secret;colour=blue", "unknown category 'colour'" },
		{ "class=secret;caveat=cyber,cyber", "given twice" },
		{ "class=secret;caveat=magic", "unknown value 'magic'" },
		{ "class=secret;rel=", "empty value" },
		{ "class=secret;rel=jpn,", "bad value" },
		{ "class= secret", "unknown classification" },
		{ "class=secret;aud=team:x", "unknown kind" },
		{ "class=secret;aud=org", "is not org:NAME" },
		{ "class=secret;aud=id:http://x/y", "not a SPIFFE ID" },
		{ "class=secret;aud=org:mod,org:mod", "given twice" },
		{ "class", "has no '='" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(parse(p, bad[i][0], canon, why), -2);
		if (!strstr(why, bad[i][1]))
			fail_msg("label '%s': why '%s' lacks '%s'", bad[i][0], why, bad[i][1]);
	}
	char big[KZ_LABEL_MAX_LEN + 10];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(parse(p, big, canon, why), -2);
	assert_non_null(strstr(why, "longer than"));
	kz_policy_free(p);
}

static void test_policy_errors(void **st)
{
	(void)st;
	struct kz_policy *p = NULL;
	const char *good_reg = "spiffe://kizuna.local/mod/user/a org=mod clearance=secret\n";
	assert_int_equal(load_text("policy x\nlevels a b\ndefault-label class=a\nallow connect\n", good_reg, &p), 1);
	assert_non_null(strstr(errs, "/r:1: clearance 'secret' is not a level"));
	static const char *const bad[][2] = {
		{ "levels a b\ndefault-label class=a\n", "p:0: no policy directive" },
		{ "policy x\nlevels a b\n", "p:0: no default-label" },
		{ "policy x\nlevels a b\ndefault-label class=c\n", "p:3: label: unknown classification" },
		{ "policy x\nlevels a a\ndefault-label class=a\n", "p:2: level 'a' given twice" },
		{ "policy x\nlevels a\ncategory c restrictive one\ndefault-label class=a\n", "p:3: a restrictive category needs attr" },
		{ "policy x\nlevels a\ncategory c informative attr=org\ndefault-label class=a\n", "p:3: an informative category takes no attr" },
		{ "policy x\nlevels a\ncategory tlp permissive attr=org x\ndefault-label class=a\n", "p:3: bad category name" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish\n", "p:4: publish and subscribe rules need a topic filter" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow read t/#\n", "p:4: unknown action 'read'" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish t/#/x\n", "p:4: bad topic filter" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish t where\n", "p:4: where needs at least one condition" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish t where colour=red\n", "p:4: condition 'colour=red'" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish t where kind=robot\n", "p:4: kind: bad value 'robot'" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow subscribe t label class=a\n", "p:4: label is the default label of publishes" },
		{ "policy x\nlevels a\ndefault-label class=a\nallow publish t where clearance>=b\n", "p:4: clearance>=b" },
		{ "policy x\nlevels a\ndefault-label class=a\nfrobnicate\n", "p:4: unknown directive 'frobnicate'" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *reg = "spiffe://kizuna.local/mod/user/a org=mod\n";
		assert_int_not_equal(load_text(bad[i][0], reg, &p), 0);
		assert_null(p);
		if (!strstr(errs, bad[i][1]))
			fail_msg("policy case %zu: errors '%s' lack '%s'", i, errs, bad[i][1]);
	}
	static const char *const bad_reg[][2] = {
		{ "spiffe://kizuna.local/mod/user/a org=meti\n", "r:1: org=meti but the SPIFFE ID's organisation is 'mod'" },
		{ "spiffe://kizuna.local/mod/robot/a\n", "r:1: kind 'robot'" },
		{ "spiffe://kizuna.local/mod/user\n", "r:1: 'spiffe://kizuna.local/mod/user' is not" },
		{ "spiffe://kizuna.local/mod/user/a\nspiffe://kizuna.local/mod/user/a\n", "r:2: spiffe://kizuna.local/mod/user/a is also on line 1" },
		{ "spiffe://kizuna.local/mod/user/a hair=red\n", "r:1: unknown attribute 'hair'" },
		{ "spiffe://kizuna.local/mod/user/a org\n", "r:1: 'org' is not ATTRIBUTE=VALUE" },
		{ "spiffe://kizuna.local/mod/user/a caveats=x,,y\n", "r:1: caveats: bad value ''" },
	};
	for (size_t i = 0; i < sizeof bad_reg / sizeof bad_reg[0]; i++) {
		assert_int_not_equal(load_text("policy x\nlevels a\ndefault-label class=a\n", bad_reg[i][0], &p), 0);
		if (!strstr(errs, bad_reg[i][1]))
			fail_msg("registry case %zu: errors '%s' lack '%s'", i, errs, bad_reg[i][1]);
	}
	assert_int_equal(load_text("policy x\nlevels a\ndefault-label class=a\n", "", &p), 0);
	kz_policy_free(p);
}

static void subject(const struct kz_policy *p, const char *who, struct kz_subject *s)
{
	char id[200];
	snprintf(id, sizeof id, "spiffe://kizuna.local/%s", who);
	kz_subject_init(p, id, s);
}

static bool reads(const struct kz_policy *p, const char *who, const char *label)
{
	struct kz_subject s;
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], why[160];
	size_t n;
	subject(p, who, &s);
	assert_int_equal(kz_label_parse(p, label, strlen(label), &l, canon, &n, why, sizeof why), 0);
	const char *w;
	return kz_dominates(p, &s, &l, &w);
}

static void test_decisions(void **st)
{
	(void)st;
	struct kz_policy *p = fixture();
	const char *why;
	struct kz_subject s;
	/* Reads. */
	assert_true(reads(p, "mod/user/alice", "class=secret;caveat=cyber;rel=jpn"));
	assert_false(reads(p, "mod/user/alice", "class=top-secret"));
	assert_false(reads(p, "mod/user/alice", "class=secret;caveat=cyber,crypto"));
	assert_true(reads(p, "nisc/user/carol", "class=secret;caveat=cyber,crypto"));
	assert_false(reads(p, "acme/user/erin", "class=restricted;rel=jpn"));
	assert_true(reads(p, "acme/user/erin", "class=restricted;rel=jpn,usa"));
	assert_false(reads(p, "meti/user/bob", "class=restricted;relorg=mod"));
	assert_true(reads(p, "meti/user/bob", "class=restricted;relorg=mod,meti;note=x"));
	assert_true(reads(p, "meti/user/bob", "class=unclassified;tlp=amber+strict;aud=org:meti"));
	assert_false(reads(p, "mod/user/alice", "class=unclassified;tlp=amber+strict;aud=org:meti"));
	assert_true(reads(p, "mod/user/alice", "class=unclassified;tlp=red;aud=id:spiffe://kizuna.local/mod/user/alice"));
	assert_false(reads(p, "mod/user/dave", "class=unclassified;tlp=red;aud=id:spiffe://kizuna.local/mod/user/alice"));
	assert_false(reads(p, "mod/user/dave", "class=unclassified;tlp=red;aud=org:ghost"));
	assert_false(reads(p, "mod/user/nobody", "class=unclassified"));
	/* Connect, subscribe, publish. */
	subject(p, "mod/sensor/radar1", &s);
	assert_true(kz_policy_connect(p, &s, &why));
	const struct kz_label *dl;
	const char *dt;
	assert_true(kz_policy_publish(p, &s, "sensors/radar1/track", 20, &dl, &dt, &why));
	assert_string_equal(dt, "policy=jp-mod;class=restricted;rel=jpn;relorg=mod");
	assert_false(kz_policy_publish(p, &s, "ops/x", 5, &dl, &dt, &why));
	assert_non_null(strstr(why, "publish"));
	assert_true(kz_policy_subscribe(p, &s, "sensors/#", 9, &why));
	assert_false(kz_policy_subscribe(p, &s, "ops/#", 5, &why));
	subject(p, "meti/user/bob", &s);
	assert_true(kz_policy_publish(p, &s, "cti/indicators", 14, &dl, &dt, &why));
	assert_string_equal(dt, "policy=jp-mod;class=unclassified;tlp=green");
	assert_true(kz_policy_subscribe(p, &s, "cti/+/x", 7, &why));
	assert_false(kz_policy_subscribe(p, &s, "#", 1, &why));
	assert_false(kz_policy_subscribe(p, &s, "sensors/#", 9, &why));
	subject(p, "nisc/user/carol", &s); /* auditor */
	assert_true(kz_policy_subscribe(p, &s, "#", 1, &why));
	assert_false(kz_policy_subscribe(p, &s, "$SYS/x", 6, &why));
	subject(p, "mod/user/dave", &s);
	assert_true(kz_policy_subscribe(p, &s, "sensors/+/track", 15, &why));
	assert_true(kz_policy_publish(p, &s, "ops/orders", 10, &dl, &dt, &why));
	assert_string_equal(dt, p->default_text);
	/* Labelling: not above one's clearance, not outside one's releasability. */
	struct kz_label l;
	char canon[KZ_LABEL_MAX_LEN + 1], w2[160];
	size_t n;
	assert_int_equal(kz_label_parse(p, "class=secret", 12, &l, canon, &n, w2, sizeof w2), 0);
	assert_false(kz_policy_may_label(p, &s, &l, &why));
	assert_non_null(strstr(why, "clearance"));
	assert_int_equal(kz_label_parse(p, "class=restricted;rel=usa", 24, &l, canon, &n, w2, sizeof w2), 0);
	assert_false(kz_policy_may_label(p, &s, &l, &why));
	assert_non_null(strstr(why, "releasability"));
	assert_int_equal(kz_label_parse(p, "class=restricted;tlp=red;aud=org:meti", 37, &l, canon, &n, w2, sizeof w2), 0);
	assert_true(kz_policy_may_label(p, &s, &l, &why));
	/* A subject the registry does not know connects (by kind) but has no clearance. */
	subject(p, "mod/user/nobody", &s);
	assert_true(kz_policy_connect(p, &s, &why));
	assert_int_equal(s.level, -1);
	kz_policy_free(p);
}

/* Task rules (docs/TASKS.md "Policy"): the kinds, the tasker's where-conditions and the
 * agent's conditions must all hold; an agent's inbox is its own. */
static void test_task_rules(void **st)
{
	(void)st;
	const char *pol = "policy t\nlevels u s\ndefault-label class=u\n"
			  "allow connect where kind=user,sensor\n"
			  "allow task observe,goto where role=operator agent org=mod kind=sensor\n"
			  "allow task * where id=spiffe://kizuna.local/mod/user/boss\n"
			  "allow subscribe kz/agent/# where role=operator\n";
	const char *reg = "spiffe://kizuna.local/mod/user/op org=mod clearance=s roles=operator\n"
			  "spiffe://kizuna.local/meti/user/op2 org=meti clearance=s roles=operator\n"
			  "spiffe://kizuna.local/mod/sensor/drone org=mod clearance=s\n"
			  "spiffe://kizuna.local/meti/sensor/drone2 org=meti clearance=s\n";
	struct kz_policy *p;
	int ne = load_text(pol, reg, &p);
	if (ne)
		fprintf(stderr, "%s", errs);
	assert_int_equal(ne, 0);
	struct kz_subject op, op2, drone, drone2, boss;
	const char *why;
	kz_subject_init(p, "spiffe://kizuna.local/mod/user/op", &op);
	kz_subject_init(p, "spiffe://kizuna.local/meti/user/op2", &op2);
	kz_subject_init(p, "spiffe://kizuna.local/mod/sensor/drone", &drone);
	kz_subject_init(p, "spiffe://kizuna.local/meti/sensor/drone2", &drone2);
	kz_subject_init(p, "spiffe://kizuna.local/mod/user/boss", &boss);
	assert_true(kz_policy_task(p, &op, &drone, "observe", &why));
	assert_true(kz_policy_task(p, &op2, &drone, "goto", &why)); /* the tasker's org is not a condition */
	assert_false(kz_policy_task(p, &op, &drone, "strike", &why));
	assert_non_null(strstr(why, "kind"));
	assert_false(kz_policy_task(p, &op, &drone2, "observe", &why)); /* agent not of org mod */
	assert_non_null(strstr(why, "agent"));
	assert_false(kz_policy_task(p, &drone, &drone, "observe", &why)); /* not an operator */
	assert_true(kz_policy_task(p, &boss, &drone2, "strike", &why));
	/* The inbox: one's own, or a watcher's wildcard filter (the rules decide). */
	assert_true(kz_policy_subscribe(p, &op, "kz/agent/kizuna.local/mod/user/op/tasks", 39, &why));
	assert_false(kz_policy_subscribe(p, &op, "kz/agent/kizuna.local/mod/sensor/drone/tasks", 44, &why));
	assert_non_null(strstr(why, "inbox"));
	assert_false(kz_policy_subscribe(p, &op, "kz/agent/kizuna.local/mod/sensor/drone/#", 40, &why));
	assert_true(kz_policy_subscribe(p, &op, "kz/agent/#", 10, &why));
	assert_true(kz_policy_subscribe(p, &op, "kz/agent/+/mod/+/+/tasks", 24, &why));
	assert_true(kz_policy_inbox_ok(&drone, "kz/agent/kizuna.local/mod/sensor/drone/tasks", 44, &why));
	assert_true(kz_policy_inbox_ok(&drone, "sensors/#", 9, &why));
	kz_policy_free(p);
	/* Grammar. */
	assert_int_not_equal(load_text("policy t\nlevels u\ndefault-label class=u\nallow task where role=x\n", "", &p), 0);
	assert_non_null(strstr(errs, "kinds"));
	assert_int_not_equal(load_text("policy t\nlevels u\ndefault-label class=u\nallow task,publish x/# where role=x\n", "", &p), 0);
	assert_non_null(strstr(errs, "rule of its own"));
	assert_int_not_equal(load_text("policy t\nlevels u\ndefault-label class=u\nallow publish x/# agent org=x\n", "", &p), 0);
	assert_non_null(strstr(errs, "task rules"));
	assert_int_not_equal(load_text("policy t\nlevels u\ndefault-label class=u\nallow task goto agent\n", "", &p), 0);
	assert_non_null(strstr(errs, "at least one condition"));
	assert_int_not_equal(load_text("policy t\nlevels u\ndefault-label class=u\nallow task go/to\n", "", &p), 0);
}

static void test_filter_covers(void **st)
{
	(void)st;
	static const struct {
		const char *r, *f;
		bool want;
	} c[] = {
		{ "#", "a/b", true },	   { "#", "#", true },	      { "a/#", "a", true },	  { "a/#", "a/b/c", true },
		{ "a/#", "b", false },	   { "a/+", "a/b", true },    { "a/+", "a/+", true },	  { "a/+", "a/#", false },
		{ "a/+", "a/b/c", false }, { "a/b", "a/+", false },   { "a/b", "a/b", true },	  { "a/b", "a/bc", false },
		{ "+/b", "x/b", true },	   { "+", "", true },	      { "a/+", "a/", true },	  { "#", "$SYS/x", false },
		{ "+/x", "$SYS/x", false }, { "$SYS/#", "$SYS/x", true }, { "a/b/c", "a/b", false }, { "a/#", "a/#", true },
		{ "a/b", "a/#", false },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
		if (kz_filter_covers(c[i].r, strlen(c[i].r), c[i].f, strlen(c[i].f)) != c[i].want)
			fail_msg("covers('%s', '%s') != %d", c[i].r, c[i].f, c[i].want);
}

/* ---------- property test ---------- */

static const char *const LEVELS[] = { "unclassified", "restricted", "confidential", "secret", "top-secret" };
static const char *const CAVEATS[] = { "cyber", "nuclear", "crypto" };
static const char *const NATIONS[] = { "jpn", "usa", "gbr" };
static const char *const ORGS[] = { "mod", "meti", "nisc", "acme" };
static const char *const TLPS[] = { "clear", "green", "amber", "amber+strict", "red" };

struct rsubj {
	char id[128];
	int level; /* -1 none */
	const char *org, *nation;
	bool caveat[3], extra_caveat;
	bool registered;
};

struct rlabel {
	int level;
	bool caveat[3], rel[3], relorg[4];
	int tlp; /* -1 none */
	int naud;
	char aud[4][128];
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* The reference: the rules of docs/POLICY.md, directly on the generated sets. */
static bool ref_read(const struct rsubj *s, const struct rlabel *l, bool with_audience)
{
	if (!s->registered || s->level < l->level)
		return false;
	for (int i = 0; i < 3; i++)
		if (l->caveat[i] && !s->caveat[i])
			return false;
	bool any_rel = false, ok_rel = false;
	for (int i = 0; i < 3; i++)
		if (l->rel[i]) {
			any_rel = true;
			ok_rel |= s->nation && !strcmp(s->nation, NATIONS[i]);
		}
	if (any_rel && !ok_rel)
		return false;
	bool any_org = false, ok_org = false;
	for (int i = 0; i < 4; i++)
		if (l->relorg[i]) {
			any_org = true;
			ok_org |= s->org && !strcmp(s->org, ORGS[i]);
		}
	if (any_org && !ok_org)
		return false;
	if (with_audience && l->naud) {
		for (int i = 0; i < l->naud; i++) {
			char want[140];
			if (!strncmp(l->aud[i], "org:", 4) && s->org && !strcmp(l->aud[i] + 4, s->org))
				return true;
			if (!strncmp(l->aud[i], "nation:", 7) && s->nation && !strcmp(l->aud[i] + 7, s->nation))
				return true;
			snprintf(want, sizeof want, "id:%s", s->id);
			if (!strcmp(l->aud[i], want))
				return true;
		}
		return false;
	}
	return true;
}

static void mixcase(char *s)
{
	for (; *s; s++)
		if (*s >= 'a' && *s <= 'z' && rnd(4) == 0)
			*s = (char)(*s - 'a' + 'A');
}

/* Text of a label with fields and values in random order and random case. */
static void label_text(const struct rlabel *l, const struct rsubj *subs, char *out)
{
	char f[8][400];
	int nf = 0;
	sprintf(f[nf++], "class=%s", LEVELS[l->level]);
	if (rnd(2))
		sprintf(f[nf++], "policy=jp-mod");
	const struct {
		const char *key;
		const bool *on;
		const char *const *names;
		int n;
	} cats[] = { { "caveat", l->caveat, CAVEATS, 3 }, { "rel", l->rel, NATIONS, 3 }, { "relorg", l->relorg, ORGS, 4 } };
	for (int c = 0; c < 3; c++) {
		int idx[4], k = 0;
		for (int i = 0; i < cats[c].n; i++)
			if (cats[c].on[i])
				idx[k++] = i;
		if (!k)
			continue;
		for (int i = k - 1; i > 0; i--) {
			int j = (int)rnd((uint32_t)i + 1), t = idx[i];
			idx[i] = idx[j];
			idx[j] = t;
		}
		char *p = f[nf] + sprintf(f[nf], "%s=", cats[c].key);
		for (int i = 0; i < k; i++)
			p += sprintf(p, "%s%s", i ? "," : "", cats[c].names[idx[i]]);
		nf++;
	}
	if (l->tlp >= 0)
		sprintf(f[nf++], "tlp=%s", TLPS[l->tlp]);
	for (int i = 0; i < nf; i++)
		mixcase(f[i]);
	if (l->naud) {
		char *p = f[nf] + sprintf(f[nf], "aud=");
		for (int i = 0; i < l->naud; i++)
			p += sprintf(p, "%s%s", i ? "," : "", l->aud[i]);
		nf++;
	}
	for (int i = nf - 1; i > 0; i--) {
		int j = (int)rnd((uint32_t)i + 1);
		if (j == i)
			continue;
		char t[400];
		strcpy(t, f[i]);
		strcpy(f[i], f[j]);
		strcpy(f[j], t);
	}
	out[0] = 0;
	for (int i = 0; i < nf; i++) {
		if (i)
			strcat(out, ";");
		strcat(out, f[i]);
	}
	(void)subs;
}

#define NSUBJ 40

static void test_property(void **st)
{
	(void)st;
	struct rsubj subs[NSUBJ];
	char reg[NSUBJ * 200] = "";
	for (int i = 0; i < NSUBJ; i++) {
		struct rsubj *s = &subs[i];
		memset(s, 0, sizeof *s);
		s->org = rnd(6) ? ORGS[rnd(4)] : NULL;
		s->nation = rnd(6) ? NATIONS[rnd(3)] : NULL;
		s->level = (int)rnd(6) - 1;
		s->registered = rnd(10) != 0;
		snprintf(s->id, sizeof s->id, "spiffe://kizuna.local/%s/user/u%d", s->org ? s->org : "none", i);
		if (!s->registered)
			continue;
		static char line[8192];
		char cav[64] = "";
		for (int c = 0; c < 3; c++)
			if ((s->caveat[c] = rnd(2)))
				snprintf(cav + strlen(cav), sizeof cav - strlen(cav), "%s%s", cav[0] ? "," : "", CAVEATS[c]);
		if ((s->extra_caveat = rnd(4) == 0))
			snprintf(cav + strlen(cav), sizeof cav - strlen(cav), "%sunlisted", cav[0] ? "," : "");
		snprintf(line, sizeof line, "%s%s%s%s%s%s%s%s%s\n", s->id, s->org ? " org=" : "", s->org ? s->org : "",
			 s->nation ? " nation=" : "", s->nation ? s->nation : "", s->level >= 0 ? " clearance=" : "",
			 s->level >= 0 ? LEVELS[s->level] : "", cav[0] ? " caveats=" : "", cav);
		strcat(reg, line);
	}
	char pol[2048];
	FILE *pf = fopen(FIX, "r");
	assert_non_null(pf);
	size_t pn = fread(pol, 1, sizeof pol - 1, pf);
	fclose(pf);
	pol[pn] = 0;
	struct kz_policy *p;
	if (load_text(pol, reg, &p))
		fail_msg("registry: %s", errs);
	struct kz_subject ks[NSUBJ];
	for (int i = 0; i < NSUBJ; i++)
		kz_subject_init(p, subs[i].id, &ks[i]);

	unsigned allow_read = 0, deny_read = 0, cases = 0;
	for (int iter = 0; iter < 20000; iter++) {
		struct rlabel l;
		memset(&l, 0, sizeof l);
		l.level = (int)rnd(5);
		for (int i = 0; i < 3; i++)
			l.caveat[i] = rnd(5) == 0, l.rel[i] = rnd(3) == 0;
		for (int i = 0; i < 4; i++)
			l.relorg[i] = rnd(4) == 0;
		l.tlp = (int)rnd(6) - 1;
		if (l.tlp >= 3 || rnd(8) == 0) {
			l.naud = 1 + (int)rnd(3);
			for (int i = 0; i < l.naud; i++) {
				switch (rnd(4)) {
				case 0: sprintf(l.aud[i], "org:%s", ORGS[rnd(4)]); break;
				case 1: sprintf(l.aud[i], "nation:%s", NATIONS[rnd(3)]); break;
				case 2: sprintf(l.aud[i], "id:%s", subs[rnd(NSUBJ)].id); break;
				default: sprintf(l.aud[i], "org:ghost%u", rnd(3)); break;
				}
				for (int j = 0; j < i; j++)
					if (!strcmp(l.aud[j], l.aud[i]))
						sprintf(l.aud[i], "org:dup%d", i);
			}
		}
		char text[1200], canon[KZ_LABEL_MAX_LEN + 1], canon2[KZ_LABEL_MAX_LEN + 1], why[160];
		label_text(&l, subs, text);
		struct kz_label kl, kl2;
		size_t cn;
		if (kz_label_parse(p, text, strlen(text), &kl, canon, &cn, why, sizeof why))
			fail_msg("label '%s' refused: %s", text, why);
		assert_int_equal(kz_label_parse(p, canon, cn, &kl2, canon2, &cn, why, sizeof why), 0);
		assert_string_equal(canon, canon2);
		assert_true(kl.hash == kl2.hash);
		for (int k = 0; k < 3; k++) {
			int si = (int)rnd(NSUBJ);
			const char *w;
			bool got = kz_dominates(p, &ks[si], &kl, &w);
			bool want = ref_read(&subs[si], &l, true);
			if (got != want)
				fail_msg("read: subject %s, label %s: got %d want %d", subs[si].id, canon, got, want);
			got ? allow_read++ : deny_read++;
			got = kz_policy_may_label(p, &ks[si], &kl, &w);
			want = ref_read(&subs[si], &l, false);
			if (got != want)
				fail_msg("label: subject %s, label %s: got %d want %d", subs[si].id, canon, got, want);
			cases += 2;
		}
	}
	print_message("property: %u cases, %u reads allowed, %u denied\n", cases, allow_read, deny_read);
	assert_true(cases >= 10000);
	/* Both outcomes are exercised enough for the comparison to mean something. */
	assert_true(allow_read > 1000 && deny_read > 1000);
	kz_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_loads),	 cmocka_unit_test(test_label_canonical),
		cmocka_unit_test(test_policy_errors),	 cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_filter_covers), cmocka_unit_test(test_task_rules),	 cmocka_unit_test(test_property),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
