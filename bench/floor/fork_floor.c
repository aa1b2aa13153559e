/*
 * The fork floors: the least the OS does to start a process by fork,
 * in a program with nothing else in it.
 *
 *   fork_floor serve     a bare fork server on its stdin, a Unix stream
 *                        socket. Each request is 8 bytes with one
 *                        descriptor (SCM_RIGHTS): a socket for the child.
 *                        The server clones with CLONE_PARENT (the
 *                        requester becomes the parent, reaps the child and
 *                        gets its exit status), replies with the child's
 *                        pid as 8 little-endian bytes and closes its copy
 *                        of the descriptor. The child writes one byte to
 *                        its socket and exits 0. EOF on stdin: exit 0.
 *   fork_floor direct N  fork + _exit(0) + waitpid, N times; prints each
 *                        one's seconds on its own line.
 *
 * This is what multiproc's Forkserver does per start, minus everything a
 * worker needs (the payload, the outcome, stdio, the environment); the
 * bench's fork-server floor sends the requests and reaps the children.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PARENT
#define CLONE_PARENT 0x00008000
#endif

/* One request: 8 bytes and one descriptor. 1 with *fd set, 0 on EOF. */
static int receive(int control, int *fd) {
    char request[8];
    union {
        char space[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control_buffer;
    struct iovec iov = {.iov_base = request, .iov_len = sizeof request};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control_buffer.space,
        .msg_controllen = sizeof control_buffer.space,
    };
    ssize_t got;
    do {
        got = recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got == 0) return 0;
    if (got != (ssize_t)sizeof request) {
        fprintf(stderr, "fork_floor: short request (%zd): %s\n", got, strerror(errno));
        exit(1);
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
        fprintf(stderr, "fork_floor: a request without one descriptor\n");
        exit(1);
    }
    memcpy(fd, CMSG_DATA(c), sizeof(int));
    return 1;
}

static int serve(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd;
    while (receive(0, &fd)) {
        /* All-zero arguments after the flags: the same on every
         * architecture's argument order, and a fork's copy of the stack. */
        long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
            char byte = 1;
            _exit(write(fd, &byte, 1) == 1 ? 0 : 1);
        }
        if (pid < 0) {
            fprintf(stderr, "fork_floor: clone: %s\n", strerror(errno));
            return 1;
        }
        close(fd);
        unsigned char reply[8];
        uint64_t value = (uint64_t)pid;
        for (int i = 0; i < 8; i++) reply[i] = (unsigned char)(value >> (8 * i));
        if (write(0, reply, sizeof reply) != (ssize_t)sizeof reply) {
            fprintf(stderr, "fork_floor: reply: %s\n", strerror(errno));
            return 1;
        }
    }
    return 0;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int direct(long count) {
    for (long i = 0; i < count; i++) {
        double start = now();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0) {
            fprintf(stderr, "fork_floor: fork: %s\n", strerror(errno));
            return 1;
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork_floor: the child did not exit 0\n");
            return 1;
        }
        printf("%.9f\n", now() - start);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "serve") == 0) return serve();
    if (argc == 3 && strcmp(argv[1], "direct") == 0) return direct(strtol(argv[2], NULL, 10));
    fprintf(stderr, "usage: fork_floor serve | fork_floor direct N\n");
    return 2;
}
