/*
 * notime: runs a command under a seccomp filter that turns every system call able to set
 * or adjust the system clock into a no-op returning 0, without entering the kernel:
 * adjtimex, clock_adjtime, settimeofday, clock_settime.
 *
 * The ClockBound 3.x daemon disciplines the clock through ntp_adjtime and treats a failure
 * as fatal; under this filter its calls "succeed" and the clock is left alone (it still
 * logs the adjustments it believes it made). Read-only adjtimex calls also return 0 and
 * leave the caller's struct as it was: the daemon does not depend on what they report.
 * Any other architecture than the one this was built for is refused (the filter would
 * not know its system call numbers).
 *
 *   cc -O2 -o notime notime.c && ./notime CMD [ARGS...]
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "notime: unsupported architecture"
#endif

/* Return 0 for system call NR, without running it. */
#define NOOP(nr)                                                  \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),              \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CMD [ARGS...]\n", argv[0]);
        return 2;
    }
    struct sock_filter filter[] = {
        /* Wrong architecture: kill (its system call numbers mean something else). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        /* The x32 ABI reaches the same calls with bit 30 set: refuse it altogether. */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
        NOOP(__NR_adjtimex),
        NOOP(__NR_clock_adjtime),
        NOOP(__NR_settimeofday),
        NOOP(__NR_clock_settime),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {
        .len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
        .filter = filter,
    };
    /* Also keeps the command from gaining privileges through setuid binaries. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        perror("notime: PR_SET_NO_NEW_PRIVS");
        return 1;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("notime: PR_SET_SECCOMP");
        return 1;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "notime: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
