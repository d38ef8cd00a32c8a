/* test_task.c — a task's transitions (docs/TASKS.md): the happy path by the right parties,
 * the same steps by the wrong ones, every way out of a final state, skipped states, cancel
 * and expiry rules, the number of legal moves; and the decoders' refusals. */
#include "services/task/task.h"
#include "base/kz_json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct kz_json_doc doc;

#define OK(f, t, p) assert_null(task_transition_why(f, t, p))
#define NO(f, t, p) assert_non_null(task_transition_why(f, t, p))

static void test_happy_path_and_wrong_parties(void **state)
{
	(void)state;
	OK(TASK_CREATED, TASK_SENT, TASK_BY_NODE);
	NO(TASK_CREATED, TASK_SENT, TASK_BY_AGENT);
	NO(TASK_CREATED, TASK_SENT, TASK_BY_TASKER);
	static const enum task_state agent_path[] = { TASK_SENT, TASK_RECEIVED, TASK_ACKNOWLEDGED, TASK_WILCO,
						      TASK_EXECUTING, TASK_DONE_OK };
	for (size_t i = 0; i + 1 < sizeof agent_path / sizeof agent_path[0]; i++) {
		OK(agent_path[i], agent_path[i + 1], TASK_BY_AGENT);
		NO(agent_path[i], agent_path[i + 1], TASK_BY_TASKER);
		NO(agent_path[i], agent_path[i + 1], TASK_BY_NODE);
	}
	OK(TASK_EXECUTING, TASK_DONE_FAILED, TASK_BY_AGENT);
	assert_non_null(strstr(task_transition_why(TASK_EXECUTING, TASK_DONE_OK, TASK_BY_TASKER), "agent"));
}

static void test_final_states_and_skips(void **state)
{
	(void)state;
	static const enum task_state finals[] = { TASK_DONE_OK, TASK_DONE_FAILED, TASK_REJECTED, TASK_CANCELLED,
						  TASK_EXPIRED };
	for (size_t i = 0; i < 5; i++) {
		assert_true(task_state_final(finals[i]));
		for (int to = 1; to < TASK_N_STATES; to++)
			for (int p = TASK_BY_TASKER; p <= TASK_BY_NODE; p++)
				assert_non_null(strstr(task_transition_why(finals[i], (enum task_state)to, (enum task_party)p), "ended"));
	}
	NO(TASK_CREATED, TASK_EXECUTING, TASK_BY_AGENT);
	NO(TASK_SENT, TASK_WILCO, TASK_BY_AGENT);
	NO(TASK_RECEIVED, TASK_DONE_OK, TASK_BY_AGENT);
	NO(TASK_WILCO, TASK_REJECTED, TASK_BY_AGENT); /* after WILCO it is done or failed, not refused */
	NO(TASK_EXECUTING, TASK_RECEIVED, TASK_BY_AGENT); /* no way back */
	assert_non_null(strstr(task_transition_why(TASK_SENT, TASK_EXECUTING, TASK_BY_AGENT), "not a transition"));
}

static void test_cancel_and_expiry(void **state)
{
	(void)state;
	OK(TASK_CREATED, TASK_CANCELLED, TASK_BY_TASKER);
	OK(TASK_SENT, TASK_CANCELLED, TASK_BY_TASKER);
	NO(TASK_RECEIVED, TASK_CANCELLED, TASK_BY_TASKER); /* the agent has it: ask */
	for (enum task_state s = TASK_RECEIVED; s <= TASK_EXECUTING; s++) {
		OK(s, TASK_CANCEL_REQUESTED, TASK_BY_TASKER);
		NO(s, TASK_CANCEL_REQUESTED, TASK_BY_AGENT);
	}
	OK(TASK_CANCEL_REQUESTED, TASK_CANCELLED, TASK_BY_AGENT);
	NO(TASK_CANCEL_REQUESTED, TASK_CANCELLED, TASK_BY_TASKER);
	OK(TASK_CANCEL_REQUESTED, TASK_DONE_OK, TASK_BY_AGENT); /* it finished first */
	NO(TASK_CANCEL_REQUESTED, TASK_EXECUTING, TASK_BY_AGENT);
	for (int s = 1; s < TASK_N_STATES; s++) {
		if (task_state_final((enum task_state)s))
			continue;
		OK((enum task_state)s, TASK_EXPIRED, TASK_BY_NODE);
		NO((enum task_state)s, TASK_EXPIRED, TASK_BY_AGENT);
		NO((enum task_state)s, TASK_EXPIRED, TASK_BY_TASKER);
	}
}

/* Nothing legal was added by mistake: 18 moves of the table, and EXPIRED from the 7 states
 * that are not final. */
static void test_count_of_legal_moves(void **state)
{
	(void)state;
	int n = 0;
	for (int f = 1; f < TASK_N_STATES; f++)
		for (int t = 1; t < TASK_N_STATES; t++)
			for (int p = TASK_BY_TASKER; p <= TASK_BY_NODE; p++)
				n += task_transition_why((enum task_state)f, (enum task_state)t, (enum task_party)p) == NULL;
	assert_int_equal(n, 25);
	for (int s = 1; s < TASK_N_STATES; s++) {
		enum task_state back;
		assert_int_equal(task_state_parse(task_state_name((enum task_state)s), &back), 0);
		assert_int_equal(back, s);
	}
}

static void test_decoders(void **state)
{
	(void)state;
	struct task_request t;
	const char *why = NULL;
	const char *ok = "{\"assignee\":\"spiffe://kizuna.local/mod/effector/uav-1\",\"kind\":\"observe\","
			 "\"entities\":[\"trk-1\"],\"parameters\":{\"dwell_s\":60},\"precedence\":\"IMMEDIATE\","
			 "\"deadline\":\"2026-12-04T12:00:00Z\"}";
	assert_int_equal(task_request_decode(&doc, ok, strlen(ok), &t, &why), 0);
	assert_string_equal(t.kind, "observe");
	assert_int_equal(t.precedence, TASK_IMMEDIATE);
	assert_int_equal(t.n_entities, 1);
	assert_memory_equal(t.params, "{\"dwell_s\":60}", t.params_len);
	static const struct { const char *text, *why; } bad[] = {
		{ "{\"kind\":\"observe\"}", "required" },
		{ "{\"assignee\":\"alice\",\"kind\":\"observe\"}", "SPIFFE ID" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"go to\"}", "kind:" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"goto\",\"precedence\":\"URGENT\"}", "precedence" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"goto\",\"deadline\":\"soon\"}", "deadline" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"goto\",\"state\":\"DONE_OK\"}", "the node's" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"goto\",\"parameters\":[1]}", "parameters" },
		{ "{\"assignee\":\"spiffe://x/y\",\"kind\":\"goto\",\"colour\":1}", "unknown member" },
		{ "[]", "JSON object" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (task_request_decode(&doc, bad[i].text, strlen(bad[i].text), &t, &why) != -1 || !strstr(why, bad[i].why))
			fail_msg("%s: got '%s', wanted '%s'", bad[i].text, why, bad[i].why);
	struct task_move mv;
	const char *mok = "{\"state\":\"DONE_OK\",\"version\":6,\"result\":{\"seen\":true},\"reason\":\"done\"}";
	assert_int_equal(task_move_decode(&doc, mok, strlen(mok), &mv, &why), 0);
	assert_int_equal(mv.to, TASK_DONE_OK);
	assert_int_equal(mv.from_version, 6);
	static const struct { const char *text, *why; } mbad[] = {
		{ "{\"state\":\"DONE\",\"version\":1}", "state:" },
		{ "{\"state\":\"WILCO\"}", "required" },
		{ "{\"state\":\"WILCO\",\"version\":0}", "version:" },
		{ "{\"state\":\"WILCO\",\"version\":1,\"result\":{}}", "result goes with" },
		{ "{\"state\":\"WILCO\",\"version\":1,\"reason\":\"\"}", "reason:" },
	};
	for (size_t i = 0; i < sizeof mbad / sizeof mbad[0]; i++)
		if (task_move_decode(&doc, mbad[i].text, strlen(mbad[i].text), &mv, &why) != -1 || !strstr(why, mbad[i].why))
			fail_msg("%s: got '%s', wanted '%s'", mbad[i].text, why, mbad[i].why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_happy_path_and_wrong_parties), cmocka_unit_test(test_final_states_and_skips),
		cmocka_unit_test(test_cancel_and_expiry),            cmocka_unit_test(test_count_of_legal_moves),
		cmocka_unit_test(test_decoders),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kz_json_free(&doc);
	return rc;
}
