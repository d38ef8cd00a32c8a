/* kz_err.c — human-readable names for enum kz_err. */
#include "base/kz_err.h"

const char *kz_strerror(int err)
{
	switch (err) {
	case KZ_OK: return "success";
	case KZ_EAGAIN: return "need more data";
	case KZ_EMALFORMED: return "malformed input";
	case KZ_ETOOBIG: return "over the configured limit";
	case KZ_ENOMEM: return "out of memory";
	case KZ_EINVAL: return "invalid argument";
	case KZ_EIO: return "input/output error";
	case KZ_ENOTFOUND: return "not found";
	case KZ_EPROTO: return "protocol error";
	case KZ_ETLS: return "TLS error";
	case KZ_ECONFIG: return "configuration error";
	case KZ_EDENIED: return "denied";
	case KZ_ECLOSED: return "closed";
	case KZ_EEXIST: return "already exists";
	case KZ_ENOSPC: return "no space left on the device";
	}
	return "unknown error";
}
