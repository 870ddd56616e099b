/*
 * Many threads on ONE context while a writer updates the segment.
 *
 * Usage: threads <segment> <threads> <run_ms>
 *
 * Each thread calls clockbound_now() in a loop and checks every window: earliest <= latest,
 * Synchronized, less than a second wide, and consistent with every window any thread got
 * before the call started (true time only moves forward, so a later window's latest can
 * never be before an earlier window's earliest). After <run_ms> the main thread closes the
 * context while the others are still calling: each must then see CONTEXT_CLOSED and stop,
 * with no other error. Exit status 0 when everything held.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clockbound.h"

#define MAX_THREADS 64
#define NS_PER_SEC 1000000000LL

static clockbound_ctx *ctx;
static pthread_barrier_t start;
/* The greatest `earliest` of any window returned so far, in ns since the epoch. */
static _Atomic int64_t max_earliest = INT64_MIN;
/* CLOCK_MONOTONIC seconds after which a worker gives up waiting for the close. */
static time_t deadline;

struct worker {
	pthread_t thread;
	long calls;
	long anomalies;
	clockbound_err_kind last_kind;
};

static int64_t ns(struct timespec t)
{
	return (int64_t)t.tv_sec * NS_PER_SEC + t.tv_nsec;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	clockbound_now_result res;
	clockbound_err err;

	pthread_barrier_wait(&start);
	for (;;) {
		int64_t before = atomic_load(&max_earliest);
		clockbound_err *e = clockbound_now(ctx, &res, &err);
		if (e != NULL) {
			w->last_kind = e->kind;
			if (e->kind != CLOCKBOUND_ERR_CONTEXT_CLOSED) {
				fprintf(stderr, "clockbound_now: kind %d: %s\n", e->kind, e->detail);
				w->anomalies++;
			}
			return NULL;
		}
		w->calls++;
		if ((w->calls & 4095) == 0) {
			struct timespec mono;
			clock_gettime(CLOCK_MONOTONIC, &mono);
			if (mono.tv_sec > deadline) {
				fprintf(stderr, "the context was never closed\n");
				w->anomalies++;
				return NULL;
			}
		}
		int64_t earliest = ns(res.earliest), latest = ns(res.latest);
		if (earliest > latest || latest - earliest >= NS_PER_SEC ||
		    res.clock_status != CLOCKBOUND_STA_SYNCHRONIZED || latest < before) {
			if (w->anomalies++ < 5)
				fprintf(stderr,
					"bad window [%lld, %lld] status %d (earlier earliest %lld)\n",
					(long long)earliest, (long long)latest, res.clock_status,
					(long long)before);
		}
		int64_t seen = atomic_load(&max_earliest);
		while (seen < earliest &&
		       !atomic_compare_exchange_weak(&max_earliest, &seen, earliest)) {
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <segment> <threads> <run_ms>\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[2]);
	long run_ms = atol(argv[3]);
	if (n < 1 || n > MAX_THREADS)
		return 2;

	clockbound_err err;
	ctx = clockbound_open_with(argv[1], VMCLOCK_SHM_DEFAULT_PATH, &err);
	if (ctx == NULL) {
		fprintf(stderr, "open: kind %d: %s\n", err.kind, err.detail);
		return 1;
	}

	struct timespec mono;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	deadline = mono.tv_sec + run_ms / 1000 + 10;

	static struct worker workers[MAX_THREADS];
	pthread_barrier_init(&start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++)
		pthread_create(&workers[i].thread, NULL, run, &workers[i]);
	pthread_barrier_wait(&start);

	struct timespec pause = { run_ms / 1000, (run_ms % 1000) * 1000000L };
	nanosleep(&pause, NULL);
	/* Closed while every worker is still calling. */
	if (clockbound_close(ctx, &err) != NULL) {
		fprintf(stderr, "close: kind %d: %s\n", err.kind, err.detail);
		return 1;
	}

	long calls = 0, anomalies = 0;
	int bad = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(workers[i].thread, NULL);
		calls += workers[i].calls;
		anomalies += workers[i].anomalies;
		if (workers[i].calls == 0 ||
		    workers[i].last_kind != CLOCKBOUND_ERR_CONTEXT_CLOSED) {
			fprintf(stderr, "thread %d: %ld calls, ended with kind %d\n", i,
				workers[i].calls, workers[i].last_kind);
			bad = 1;
		}
	}

	/* Closed: every call is an error now, a second close too. */
	clockbound_now_result res;
	clockbound_err *e = clockbound_now(ctx, &res, &err);
	if (e != &err || err.kind != CLOCKBOUND_ERR_CONTEXT_CLOSED)
		bad = 1;
	e = clockbound_close(ctx, &err);
	if (e != &err || err.kind != CLOCKBOUND_ERR_CONTEXT_CLOSED)
		bad = 1;

	printf("threads=%d calls=%ld anomalies=%ld\n", n, calls, anomalies);
	return (bad || anomalies) ? 1 : 0;
}
