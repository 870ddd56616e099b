/*
 * A program written against the released ClockBound 3.x C header, unchanged: it uses only
 * what that header declares, the way its documentation and tests use it (open_with, now,
 * close; the error structure's kind, errno and detail; a switch over the released kinds),
 * and reads `err.errno` directly, as a file that does not include <errno.h> can.
 *
 * Usage: released_usage <segment> <vmclock>; exits 0 after one window.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clockbound.h"

static void report(const char *what, const clockbound_err *err)
{
	switch (err->kind) {
	case CLOCKBOUND_ERR_NONE:
		fprintf(stderr, "%s: no error\n", what);
		break;
	case CLOCKBOUND_ERR_SYSCALL:
		fprintf(stderr, "%s: %s (%s)\n", what, err->detail, strerror(err->errno));
		break;
	case CLOCKBOUND_ERR_SEGMENT_NOT_INITIALIZED:
	case CLOCKBOUND_ERR_SEGMENT_MALFORMED:
	case CLOCKBOUND_ERR_CAUSALITY_BREACH:
	case CLOCKBOUND_ERR_SEGMENT_VERSION_NOT_SUPPORTED:
		fprintf(stderr, "%s: kind %d: %s\n", what, (int)err->kind, err->detail);
		break;
	default:
		fprintf(stderr, "%s: unexpected error %d\n", what, (int)err->kind);
	}
}

static const char *status_name(clockbound_clock_status s)
{
	switch (s) {
	case CLOCKBOUND_STA_UNKNOWN: return "UNKNOWN";
	case CLOCKBOUND_STA_SYNCHRONIZED: return "SYNCHRONIZED";
	case CLOCKBOUND_STA_FREE_RUNNING: return "FREE_RUNNING";
	case CLOCKBOUND_STA_DISRUPTED: return "DISRUPTED";
	default: return "?";
	}
}

int main(int argc, char *argv[])
{
	char const *shm_path = CLOCKBOUND_SHM_DEFAULT_PATH;
	char const *vmclock_path = VMCLOCK_SHM_DEFAULT_PATH;
	clockbound_ctx *ctx;
	clockbound_err open_err;
	clockbound_err call_err;
	clockbound_err const *err;
	clockbound_now_result now;

	if (argc == 3) {
		shm_path = argv[1];
		vmclock_path = argv[2];
	}

	ctx = clockbound_open_with(shm_path, vmclock_path, &open_err);
	if (ctx == NULL) {
		report("clockbound_open_with", &open_err);
		return 1;
	}

	err = clockbound_now(ctx, &now, &call_err);
	if (err) {
		report("clockbound_now", err);
		return 1;
	}
	printf("true time within [%ld.%09ld, %ld.%09ld], status %s\n",
	       (long)now.earliest.tv_sec, now.earliest.tv_nsec,
	       (long)now.latest.tv_sec, now.latest.tv_nsec, status_name(now.clock_status));

	err = clockbound_close(ctx, &call_err);
	if (err) {
		report("clockbound_close", err);
		return 1;
	}
	return 0;
}
