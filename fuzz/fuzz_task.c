/* fuzz_task.c — the task decoders (task_request_decode, task_move_decode, and
 * task_from_json, which reads task records back at start): a refusal says why; what decodes
 * holds its caps; a task read from a record is written and read again to the same task; a
 * decoded move asks the transition table of every state and party without harm, and a
 * final state lets nothing out. */
#include "services/task/task.h"
#include "services/task/task_service_internal.h"
#include "base/kz_buf.h"
#include "base/kz_json.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kz_json_doc doc;
	const char *p = (const char *)data, *why = NULL;
	struct task_request t;
	if (task_request_decode(&doc, p, size, &t, &why))
		assert(why && why[0]);
	else
		assert(t.assignee && t.kind && t.n_entities <= TASK_MAX_ENTITIES && t.params_len <= TASK_PARAMS_MAX &&
		       t.precedence >= TASK_FLASH && t.precedence <= TASK_ROUTINE);
	struct task rec, again;
	if (!task_from_json(&doc, p, size, &rec)) {
		struct kz_buf b;
		kz_buf_init(&b, 0);
		assert(task_to_json(&rec, &b) == 0);
		assert(!task_from_json(&doc, (const char *)kz_buf_head(&b), b.len, &again));
		assert(!strcmp(rec.id, again.id) && rec.version == again.version && rec.state == again.state &&
		       !strcmp(rec.assignee, again.assignee) && rec.n_hist == again.n_hist);
		task_free_fields(&again);
		task_free_fields(&rec);
		kz_buf_cleanup(&b);
	}
	struct task_move m;
	why = NULL;
	if (task_move_decode(&doc, p, size, &m, &why)) {
		assert(why && why[0]);
		return 0;
	}
	assert(m.to >= TASK_CREATED && m.to < TASK_N_STATES && m.from_version >= 1);
	for (int from = 1; from < TASK_N_STATES; from++)
		for (int by = TASK_BY_TASKER; by <= TASK_BY_NODE; by++) {
			const char *w = task_transition_why((enum task_state)from, m.to, (enum task_party)by);
			assert(!task_state_final((enum task_state)from) || w);
		}
	return 0;
}
