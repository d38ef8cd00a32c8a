/* kz_err.h — the project's one error enum: 0 is success, negatives are failures. */
#ifndef KZ_ERR_H
#define KZ_ERR_H

enum kz_err {
	KZ_OK = 0,
	KZ_EAGAIN = -1,     /* parser: need more bytes */
	KZ_EMALFORMED = -2, /* peer sent bytes that violate the protocol */
	KZ_ETOOBIG = -3,    /* over a configured cap */
	KZ_ENOMEM = -4,
	KZ_EINVAL = -5,     /* caller passed something invalid */
	KZ_EIO = -6,
	KZ_ENOTFOUND = -7,
	KZ_EPROTO = -8,     /* valid bytes, wrong in this state */
	KZ_ETLS = -9,
	KZ_ECONFIG = -10,
	KZ_EDENIED = -11,
	KZ_ECLOSED = -12,
	KZ_EEXIST = -13,    /* already there (e.g. revoked twice) */
	KZ_ENOSPC = -14,    /* the disk (or the quota) is full */
};

/* Borrows nothing; returns a static string. */
const char *kz_strerror(int err);

#define KZ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
