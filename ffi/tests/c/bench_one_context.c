/*
 * Nanoseconds per clockbound_now() on one context in one thread, using only the functions
 * of the released ClockBound 3.x header: the same file builds against that library and
 * against this one, so the two can be timed side by side (BENCHMARKS.md says how).
 *
 * Usage: bench_one_context <segment> [calls]   (default 3000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clockbound.h"

static double seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	clockbound_err err;
	clockbound_now_result now;
	long calls = argc > 2 ? atol(argv[2]) : 3000000;
	long folded = 0;

	if (argc < 2 || calls <= 0) {
		fprintf(stderr, "usage: %s <segment> [calls]\n", argv[0]);
		return 2;
	}
	clockbound_ctx *ctx = clockbound_open_with(argv[1], VMCLOCK_SHM_DEFAULT_PATH, &err);
	if (ctx == NULL) {
		fprintf(stderr, "open: %s\n", err.detail);
		return 1;
	}
	/* Warm-up, then the timed loop; every answer is folded in so none is skipped. */
	for (long i = 0; i < calls / 10; i++)
		clockbound_now(ctx, &now, &err);
	double start = seconds();
	for (long i = 0; i < calls; i++) {
		if (clockbound_now(ctx, &now, &err) != NULL) {
			fprintf(stderr, "clockbound_now: %s\n", err.detail);
			return 1;
		}
		folded += now.earliest.tv_nsec ^ now.latest.tv_nsec;
	}
	double elapsed = seconds() - start;
	printf("%.1f ns per clockbound_now (status %d, %ld)\n", elapsed * 1e9 / (double)calls,
	       (int)now.clock_status, folded & 1);
	clockbound_close(ctx, &err);
	return 0;
}
