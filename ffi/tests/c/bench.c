/*
 * Nanoseconds per clockbound_now() call on one shared context, with 1 and 2 threads.
 *
 * Usage: bench <segment> [calls_per_thread]   (default 1000000)
 *
 * Also prints the floor: the two clock readings a layout 2 window needs
 * (CLOCK_REALTIME, CLOCK_MONOTONIC_COARSE), called directly. Compare ratios within one
 * run; absolute numbers move with the machine and its load.
 */
#define _GNU_SOURCE /* CLOCK_MONOTONIC_COARSE */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clockbound.h"

static clockbound_ctx *ctx;
static long calls = 1000000;
static pthread_barrier_t start;

static double seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *loop(void *arg)
{
	double *ns_per_call = arg;
	clockbound_now_result res;
	clockbound_err err;
	pthread_barrier_wait(&start);
	double t0 = seconds();
	for (long i = 0; i < calls; i++) {
		if (clockbound_now(ctx, &res, &err) != NULL) {
			fprintf(stderr, "clockbound_now: %s\n", err.detail);
			exit(1);
		}
	}
	*ns_per_call = (seconds() - t0) * 1e9 / (double)calls;
	return NULL;
}

static void floor_cost(void)
{
	struct timespec a, b;
	long long sink = 0;
	double t0 = seconds();
	for (long i = 0; i < calls; i++) {
		clock_gettime(CLOCK_REALTIME, &a);
		clock_gettime(CLOCK_MONOTONIC_COARSE, &b);
		sink += a.tv_nsec ^ b.tv_nsec;
	}
	double ns = (seconds() - t0) * 1e9 / (double)calls;
	printf("floor (two clock_gettime calls): %.1f ns%s\n", ns, sink == 42 ? " " : "");
}

static void run(int threads)
{
	pthread_t t[2];
	double ns[2];
	pthread_barrier_init(&start, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, loop, &ns[i]);
	double sum = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		sum += ns[i];
	}
	pthread_barrier_destroy(&start);
	printf("%d thread%s: %.1f ns per clockbound_now (mean over threads, %ld calls each)\n",
	       threads, threads > 1 ? "s" : "", sum / threads, calls);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <segment> [calls_per_thread]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		calls = atol(argv[2]);
	clockbound_err err;
	ctx = clockbound_open_with(argv[1], VMCLOCK_SHM_DEFAULT_PATH, &err);
	if (ctx == NULL) {
		fprintf(stderr, "open: %s\n", err.detail);
		return 1;
	}
	floor_cost();
	run(1);
	run(2);
	clockbound_close(ctx, &err);
	return 0;
}
