/* audit.h — the tamper-evident audit log (docs/AUDIT.md).
 *
 * DIR/audit/audit.log: one JSON object per line, numbered from 1, each carrying the SHA-256
 * of the line before it ("prev") and its own ("hash", over the line up to its "prev"
 * field). Every checkpoint_entries entries, or at the first entry after checkpoint_ms, and
 * at close, a checkpoint entry signs (Ed25519, DIR/audit/audit.key) its own number and the
 * hash before it; DIR/audit/head keeps the last checkpoint, so that cutting entries off
 * the end is detected too. */
#ifndef KZ_AUDIT_H
#define KZ_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kz_audit_entry {
	const char *subject;   /* SPIFFE ID; NULL or "" when unknown */
	const char *serial;    /* certificate serial, hex; NULL when not known here */
	const char *tls_group; /* key exchange group; NULL when not known here */
	const char *issuer;    /* the certificate's issuer DN; NULL when not known here */
	const char *tls;       /* TLS version and cipher suite ("TLSv1.3 TLS_AES_128_GCM_SHA256"); NULL: unknown */
	const char *addr;      /* the client's address and port; NULL when not known here */
	const char *action;    /* tls, connect, subscribe, publish, ... */
	const char *resource;  /* address, client id, topic, filter, record id */
	const char *label;     /* canonical label text; NULL when none */
	bool allow;
	const char *reason;
	const char *policy;    /* version of the policy that decided; NULL = no policy ("none") */
	uint64_t count;        /* decisions this entry stands for (a summary); 0 means 1 */
};

struct kz_audit;

int kz_audit_open(const char *dir, uint32_t checkpoint_entries, uint32_t checkpoint_ms, struct kz_audit **out,
		  char *why, size_t why_len);
/* Denial summaries and rotation (audit.summary_window_ms, audit.max_file_bytes,
 * audit.max_files; 0 bytes: never rotate, 0 files: keep every rotated file). */
void kz_audit_set_limits(struct kz_audit *a, uint32_t window_ms, uint64_t max_file_bytes, uint32_t max_files);
/* Appends a decision (any thread). Denials are summarised by kind — (subject, or the client
 * address without its port when there is none; action; reason): the first of a kind in a
 * window of audit.summary_window_ms is written in full, the others are counted, and one
 * summary entry with "count" and samples of their resources follows when the window ends.
 * Nothing is dropped. */
void kz_audit_record(struct kz_audit *a, const struct kz_audit_entry *e);
/* Decisions recorded by this process since it started (for /metrics). */
void kz_audit_decisions(uint64_t *allowed, uint64_t *denied);
/* False while the log cannot be written (disk full, I/O error): the node refuses new
 * connections and decisions until it can (fail closed, docs/AUDIT.md). */
bool kz_audit_writable(void);
/* Writes that failed since the process started (for /metrics). */
uint64_t kz_audit_write_errors(void);
/* Periodically (any thread): while writes fail, tries again to write the gap entry that
 * says how many decisions are missing, and signs it. */
void kz_audit_tick(struct kz_audit *a);
/* `kizuna audit reset`: moves DIR/audit.log and DIR/head into DIR/quarantine-<time>/ and
 * starts a new log whose first entry names the old head and the reason (verify reports the
 * new chain as a continuation, exit 3). qdir_out receives the quarantine directory. */
int kz_audit_new_chain(const char *dir, const char *reason, char *qdir_out, size_t qdir_len, char *why,
		       size_t why_len);
/* True when this open made the signing keys (a new audit directory). */
bool kz_audit_is_new(const struct kz_audit *a);
/* Writes a final checkpoint and closes. */
void kz_audit_close(struct kz_audit *a);

/* The process's audit log, for the layers that record decisions (NULL: none). */
extern struct kz_audit *kz_audit_log;
static inline void kz_audit(const struct kz_audit_entry *e)
{
	if (kz_audit_log)
		kz_audit_record(kz_audit_log, e);
}

/* Checks DIR/audit: returns 0 when intact (report gets a summary line), 1 with the first
 * bad entry reported when not, 3 when the chain is intact but says itself that it is not
 * the whole record (gap entries, or a new chain after a log moved aside), -1 when it
 * cannot be read (why). */
int kz_audit_verify(const char *dir, void (*report)(void *ctx, const char *line), void *ctx, char *why,
		    size_t why_len);

struct kz_audit_filter {
	const char *subject, *action, *decision; /* exact; NULL = any */
	uint64_t since_ns, until_ns;             /* 0 = open */
};
/* kz_audit_newest's callback: one entry (NUL-terminated, without its newline); nonzero stops. */
typedef int (*kz_audit_line_fn)(void *ctx, const char *line, size_t len);
/* The entries that match, newest first (numbered below before; 0: from the newest), to cb
 * until it stops: the files are read from their ends backwards, 64 KiB at a time, so memory
 * holds a chunk and a line, not the log (a line above 1 MiB is an error). -1 when unreadable. */
int kz_audit_newest(const char *dir, const struct kz_audit_filter *f, uint64_t before, kz_audit_line_fn cb,
		    void *ctx, char *why, size_t why_len);
/* Prints the entries that match, as they are in the log. -1 when unreadable. */
int kz_audit_show(const char *dir, const struct kz_audit_filter *f, FILE *out, char *why, size_t why_len);

#endif
