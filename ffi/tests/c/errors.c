/*
 * Every bad argument and failure is an error code, never a crash.
 *
 * Usage: errors <dir>, where <dir> holds segments written by the test driver:
 *   good       layout 2, Synchronized
 *   unknown    layout 2, status Unknown
 *   malformed  80 bytes that are not a segment
 * and no file named "missing".
 *
 * <errno.h> comes first on purpose: the header must cope with the `errno` macro.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "clockbound.h"

/* The released header's layout on LP64 Linux. */
_Static_assert(sizeof(clockbound_err) == 136, "clockbound_err size");
_Static_assert(offsetof(clockbound_err, detail) == 8, "clockbound_err.detail offset");
_Static_assert(CLOCKBOUND_ERROR_DETAIL_SIZE == 128, "detail size");
_Static_assert(sizeof(clockbound_now_result) == 40, "clockbound_now_result size");
_Static_assert(offsetof(clockbound_now_result, latest) == 16, "latest offset");
_Static_assert(offsetof(clockbound_now_result, clock_status) == 32, "status offset");
_Static_assert(CLOCKBOUND_ERR_SEGMENT_VERSION_NOT_SUPPORTED == 5, "released kinds");
_Static_assert(CLOCKBOUND_STA_DISRUPTED == 3, "released statuses");

static int failures;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                    \
		}                                                                      \
	} while (0)

/* `e` is the error returned, `kind`/`err_no` what it must say (-1: any errno). */
static void expect(const clockbound_err *e, clockbound_err_kind kind, int err_no, int line)
{
	if (e == NULL) {
		fprintf(stderr, "line %d: expected kind %d, got success\n", line, kind);
		failures++;
		return;
	}
	if (e->kind != kind || (err_no >= 0 && clockbound_err_errno(e) != err_no) ||
	    e->detail[0] == '\0' || memchr(e->detail, '\0', CLOCKBOUND_ERROR_DETAIL_SIZE) == NULL) {
		fprintf(stderr, "line %d: expected kind %d errno %d, got kind %d errno %d: %s\n",
			line, kind, err_no, e->kind, clockbound_err_errno(e), e->detail);
		failures++;
	}
}
#define EXPECT(e, kind, err_no) expect((e), (kind), (err_no), __LINE__)

static char path_buf[4][512];
static const char *path(int slot, const char *dir, const char *name)
{
	snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
	return path_buf[slot];
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s <dir>\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	const char *vm = VMCLOCK_SHM_DEFAULT_PATH;
	const char *good = path(0, dir, "good");
	const char *unknown = path(1, dir, "unknown");
	const char *malformed = path(2, dir, "malformed");
	const char *missing = path(3, dir, "missing");
	clockbound_err err;
	clockbound_now_result res;
	int answer = -1;

	/* Opening. */
	memset(&err, 0, sizeof err);
	CHECK(clockbound_open_with(missing, vm, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_SYSCALL, ENOENT);
	CHECK(strstr(err.detail, "missing") != NULL);
	CHECK(clockbound_open_with(malformed, vm, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_SEGMENT_MALFORMED, EPROTO);
	CHECK(clockbound_open_with(NULL, vm, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	CHECK(clockbound_open_with(good, NULL, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	CHECK(clockbound_open_with("", vm, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	/* An empty VMClock path is accepted, as by the released library: the page is only
	 * opened when the segment asks for the disruption check, and this one does not. */
	clockbound_ctx *no_vmclock = clockbound_open_with(good, "", &err);
	CHECK(no_vmclock != NULL);
	CHECK(clockbound_close(no_vmclock, &err) == NULL);
	CHECK(clockbound_open_with("/tmp/\xff\xfe", vm, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	/* No `err`: NULL is the only report, and nothing crashes. */
	CHECK(clockbound_open_with(missing, vm, NULL) == NULL);
	CHECK(clockbound_open_with(NULL, NULL, NULL) == NULL);

	/* The default paths: whatever this machine has, an answer or an error. */
	clockbound_ctx *dflt = clockbound_open(&err);
	if (dflt != NULL)
		CHECK(clockbound_close(dflt, &err) == NULL);
	else
		CHECK(err.kind != CLOCKBOUND_ERR_NONE && err.detail[0] != '\0');

	/* A good context. */
	clockbound_ctx *ctx = clockbound_open_with(good, vm, &err);
	CHECK(ctx != NULL);
	if (ctx == NULL) {
		fprintf(stderr, "open good: %s\n", err.detail);
		return 1;
	}
	CHECK(clockbound_now(ctx, &res, &err) == NULL);
	CHECK(res.clock_status == CLOCKBOUND_STA_SYNCHRONIZED);
	EXPECT(clockbound_now(ctx, NULL, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_now(NULL, &res, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	/* Failure without `err`: a per-thread error, never NULL. */
	const clockbound_err *own = clockbound_now(NULL, &res, NULL);
	EXPECT(own, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_close(NULL, NULL), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);

	/* after / before. */
	struct timespec past = { res.earliest.tv_sec - 10, 0 };
	struct timespec future = { res.latest.tv_sec + 3600, 0 };
	struct timespec bad_nsec = { res.latest.tv_sec, 1000000000L };
	struct timespec negative_nsec = { res.latest.tv_sec, -1 };
	CHECK(clockbound_after(ctx, &past, &answer, &err) == NULL && answer == 1);
	CHECK(clockbound_after(ctx, &future, &answer, &err) == NULL && answer == 0);
	CHECK(clockbound_before(ctx, &future, &answer, &err) == NULL && answer == 1);
	CHECK(clockbound_before(ctx, &past, &answer, &err) == NULL && answer == 0);
	EXPECT(clockbound_after(ctx, &bad_nsec, &answer, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_before(ctx, &negative_nsec, &answer, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_after(ctx, NULL, &answer, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_after(ctx, &past, NULL, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);
	EXPECT(clockbound_before(NULL, &past, &answer, &err), CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);

	/* Commit-wait: a timestamp just issued is certainly past on return. */
	CHECK(clockbound_now(ctx, &res, &err) == NULL);
	struct timespec commit = res.latest;
	clockbound_now_result waited;
	CHECK(clockbound_wait_until_after(ctx, &commit, 1000000000ULL, &waited, &err) == NULL);
	CHECK(waited.earliest.tv_sec > commit.tv_sec ||
	      (waited.earliest.tv_sec == commit.tv_sec && waited.earliest.tv_nsec > commit.tv_nsec));
	CHECK(clockbound_wait_until_after(ctx, &past, 0, NULL, &err) == NULL);
	EXPECT(clockbound_wait_until_after(ctx, &future, 1000000ULL, &waited, &err),
	       CLOCKBOUND_ERR_TIMEOUT, ETIMEDOUT);
	EXPECT(clockbound_wait_until_after(ctx, &bad_nsec, 0, NULL, &err),
	       CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);

	/* Closed context, double close. */
	CHECK(clockbound_close(ctx, &err) == NULL);
	EXPECT(clockbound_now(ctx, &res, &err), CLOCKBOUND_ERR_CONTEXT_CLOSED, EBADF);
	EXPECT(clockbound_after(ctx, &past, &answer, &err), CLOCKBOUND_ERR_CONTEXT_CLOSED, EBADF);
	EXPECT(clockbound_wait_until_after(ctx, &past, 0, NULL, &err), CLOCKBOUND_ERR_CONTEXT_CLOSED, EBADF);
	EXPECT(clockbound_close(ctx, &err), CLOCKBOUND_ERR_CONTEXT_CLOSED, EBADF);
	EXPECT(clockbound_close(ctx, NULL), CLOCKBOUND_ERR_CONTEXT_CLOSED, EBADF);

	/* An untrusted clock: now answers (with the status), the queries refuse. */
	clockbound_ctx *unk = clockbound_open_with(unknown, vm, &err);
	CHECK(unk != NULL);
	if (unk != NULL) {
		CHECK(clockbound_now(unk, &res, &err) == NULL);
		CHECK(res.clock_status == CLOCKBOUND_STA_UNKNOWN);
		EXPECT(clockbound_after(unk, &past, &answer, &err), CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED, -1);
		EXPECT(clockbound_before(unk, &future, &answer, &err), CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED, -1);
		EXPECT(clockbound_wait_until_after(unk, &past, 1000000ULL, NULL, &err),
		       CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED, -1);
		CHECK(clockbound_close(unk, &err) == NULL);
	}

	/* Start-up waits. */
	clockbound_ctx *synced = clockbound_wait_for_sync(good, vm, 1000000000ULL, &err);
	CHECK(synced != NULL);
	if (synced != NULL)
		CHECK(clockbound_close(synced, &err) == NULL);
	CHECK(clockbound_wait_for_sync(missing, vm, 30000000ULL, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_TIMEOUT, ETIMEDOUT);
	CHECK(strstr(err.detail, "gave up") != NULL);
	CHECK(clockbound_wait_for_sync(unknown, NULL, 30000000ULL, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_TIMEOUT, ETIMEDOUT);
	/* Waiting cannot fix a malformed segment: at once, not after the timeout. */
	CHECK(clockbound_wait_for_sync(malformed, vm, 60000000000ULL, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_SEGMENT_MALFORMED, EPROTO);
	CHECK(clockbound_wait_for_sync("/tmp/\xff", vm, 0, &err) == NULL);
	EXPECT(&err, CLOCKBOUND_ERR_INVALID_ARGUMENT, EINVAL);

	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("errors: all checks passed\n");
	return 0;
}
