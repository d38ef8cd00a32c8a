/* audit_internal.h — what audit.c (writing, summaries, rotation), audit_keys.c (the
 * checkpoint keys) and audit_read.c (verify, show) share. Not for use outside
 * src/trust/audit*.c. */
#ifndef KZ_AUDIT_INTERNAL_H
#define KZ_AUDIT_INTERNAL_H

#include "trust/audit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MLDSA_CTX "kizuna-audit" /* the ML-DSA context string of checkpoint and head signatures */
#define HEX_ZERO "0000000000000000000000000000000000000000000000000000000000000000"

#define LINE_MAX_BYTES 16384

/* Denials of one kind from one source within one window: the first is written in full, the
 * rest are counted (with a few samples of what they asked for) and written as one summary
 * entry when the window ends. Kind = (source, action, reason); source = the subject, or the
 * client address without its port when there is no subject (refused handshakes). */
#define AGG_MAX 256
#define AGG_SAMPLES 3
#define AGG_SAMPLE_BYTES 120
struct agg {
	char src[300];
	struct kz_audit_entry e; /* the first denial's fields; strings in buf */
	char *buf[11];
	char samples[AGG_SAMPLES][AGG_SAMPLE_BYTES];
	uint32_t n_samples;
	uint64_t count;          /* denials after the first, not written yet */
	uint64_t start_ms;
};

struct kz_audit {
	pthread_mutex_t lock;
	pthread_mutex_t head_lock; /* DIR/head is written under it (after a->lock, or alone) */
	uint64_t head_n;           /* the entry DIR/head names (as read at open, or as last written) */
	bool head_known;
	int fd;
	char dir[4096];
	uint64_t n;          /* last entry number written */
	off_t end;           /* the file's size after our last write or read of its tail */
	char prev[65];       /* its hash, hex */
	uint8_t priv[32];
	char pub_hex[65];
	uint8_t *mldsa_sk;   /* owns; ML-DSA-65 secret key from DIR/audit/audit.mldsa.key (ξ) */
	uint32_t ck_entries, ck_ms;
	uint32_t since_ck;
	uint64_t last_ck_ms;
	bool failing;
	bool new_keys;       /* kz_audit_load_key made the signing keys now (a new log) */
	/* decisions that could not be written (docs/AUDIT.md "When the log cannot be
	 * written"): a signed gap entry says so once writing works again */
	uint64_t lost;
	char lost_from[32], lost_to[32];
	char lost_error[96];
	/* denials being summarised (see kz_audit_record) */
	struct agg *agg;     /* owns [AGG_MAX] */
	uint32_t n_agg;
	uint32_t window_ms;
	/* rotation (docs/AUDIT.md "Rotation") */
	uint64_t max_file_bytes;
	uint32_t max_files;
	uint64_t first_n;    /* the first entry number audit.log holds (a->n + 1 when it is empty) */
};

/* Loads (or makes, for a new log) the checkpoint keys of a->dir: Ed25519 and ML-DSA-65. */
int kz_audit_load_key(struct kz_audit *a, char *why, size_t why_len);

/* The first entry numbers of the rotated files audit-<n>.log in dir, ascending (malloc'd; *n
 * of them), and one's path. */
uint64_t *kz_audit_rotated_files(const char *dir, size_t *n);
void kz_audit_rotated_path(char *out, size_t cap, const char *dir, uint64_t first);

#endif
