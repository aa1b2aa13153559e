/*
 * The spinning latency floor: the least two processes need to hand a
 * message back and forth when neither ever sleeps.
 *
 *   latency_floor spin N  maps one shared page, forks, and pins the parent
 *                         to the first CPU of its affinity mask and the
 *                         child to the second. The two then ping-pong a
 *                         counter in that page, both spinning on it (with
 *                         the CPU's pause instruction) and making no system
 *                         call: the parent sets it odd and spins until the
 *                         child has made it even. 100 untimed trips, then
 *                         N timed ones; prints each one's seconds on its
 *                         own line. Exits 3, saying why on stderr, when the
 *                         mask has fewer than two CPUs: one process would
 *                         spin while the other cannot run, which measures
 *                         the scheduler's time slice, not a hand-off.
 *
 * Two pinned CPUs, so that the trip is across CPUs (a cache line moving
 * between cores), the case a kernel wake-up costs most on a VM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* bench/src/cases/latency.rs reads this as "not available here". */
#define EXIT_UNAVAILABLE 3
#define UNTIMED 100

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* The child: answers each odd value with the next even one, `trips` times. */
static void answer(atomic_ulong *counter, long trips, pid_t parent) {
    for (long i = 0; i < trips; i++) {
        unsigned long odd = 2 * (unsigned long)i + 1;
        unsigned long spins = 0;
        while (atomic_load_explicit(counter, memory_order_acquire) != odd) {
            relax();
            /* The parent gone (PR_SET_PDEATHSIG raced with its exit). */
            if (++spins % (1UL << 24) == 0 && getppid() != parent) _exit(1);
        }
        atomic_store_explicit(counter, odd + 1, memory_order_release);
    }
    _exit(0);
}

static int spin(long count) {
    if (count < 0) {
        fprintf(stderr, "latency_floor: a negative count\n");
        return 2;
    }
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0) {
        fprintf(stderr, "latency_floor: sched_getaffinity: %s\n", strerror(errno));
        return 1;
    }
    int cpus[2], found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
        if (CPU_ISSET(cpu, &mask)) cpus[found++] = cpu;
    }
    if (found < 2) {
        fprintf(stderr, "one CPU in the affinity mask; spinning needs two\n");
        return EXIT_UNAVAILABLE;
    }
    atomic_ulong *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counter == MAP_FAILED) {
        fprintf(stderr, "latency_floor: mmap: %s\n", strerror(errno));
        return 1;
    }
    atomic_init(counter, 0);
    double *samples = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
    if (samples == NULL) {
        fprintf(stderr, "latency_floor: no memory for %ld samples\n", count);
        return 1;
    }
    long trips = UNTIMED + count;
    pid_t parent = getpid();
    if (pin(cpus[0]) != 0) {
        fprintf(stderr, "latency_floor: pinning to CPU %d: %s\n", cpus[0], strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "latency_floor: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        if (pin(cpus[1]) != 0) _exit(1);
        answer(counter, trips, parent);
    }
    for (long i = 0; i < trips; i++) {
        unsigned long odd = 2 * (unsigned long)i + 1;
        double start = now();
        atomic_store_explicit(counter, odd, memory_order_release);
        unsigned long spins = 0;
        while (atomic_load_explicit(counter, memory_order_acquire) != odd + 1) {
            relax();
            /* Every few million spins: has the child died? */
            if (++spins % (1UL << 24) == 0 && waitpid(pid, NULL, WNOHANG) != 0) {
                fprintf(stderr, "latency_floor: the child ended before trip %ld\n", i);
                return 1;
            }
        }
        if (i >= UNTIMED) samples[i - UNTIMED] = now() - start;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "latency_floor: the child did not exit 0\n");
        return 1;
    }
    for (long i = 0; i < count; i++) printf("%.9f\n", samples[i]);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "spin") == 0) return spin(strtol(argv[2], NULL, 10));
    fprintf(stderr, "usage: latency_floor spin N\n");
    return 2;
}
