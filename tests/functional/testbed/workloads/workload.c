/*
 * Guest workload for the sparc-nova test bed.
 *
 * The markers are compiled in XOR-obfuscated (markers.h is generated per
 * test run), so the only plain copies in guest memory are the ones this
 * program makes at run time.
 *
 *   workload hold IDX [--threads N] [--pages N] [--wait sleep|pipe|futex]
 *                     [--uid N] [--fork]
 *       Decode marker IDX and copy it into the heap, N anonymous pages,
 *       the environment and the stack of every thread; print READY and
 *       wait forever (timed sleep, untimed read() on an idle pipe, or an
 *       untimed futex wait). --uid switches to that uid (and gid) first;
 *       --fork forks a child after the copies are made (it shares them
 *       copy-on-write, prints CHILD pid=N and waits the same way).
 *   workload spray IDX PAGES
 *       Write marker IDX into PAGES fresh pages, print DONE and exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"

#define PAGE 4096

static void fill_pages(const char *m, long pages)
{
    if (pages <= 0)
        return;
    char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    for (long i = 0; i < pages; i++) {
        /* Two copies per page, at different offsets. */
        memcpy(p + i * PAGE + 64, m, MARKER_LEN);
        memcpy(p + i * PAGE + 2048, m, MARKER_LEN);
    }
}

static const char *wait_mode = "sleep";
static int idle_pipe[2];
static int futex_word;

static void wait_forever(void)
{
    char c;
    for (;;) {
        if (!strcmp(wait_mode, "pipe")) {
            /* Untimed wait: nothing ever writes to this pipe. */
            if (read(idle_pipe[0], &c, 1) < 0 && errno != EINTR)
                exit(1);
        } else if (!strcmp(wait_mode, "futex")) {
            syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0,
                    NULL, NULL, 0);
        } else {
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    }
}

struct thread_arg {
    const char *marker;
    long pages;
};

static void *thread_main(void *opaque)
{
    struct thread_arg *a = opaque;
    volatile char stackbuf[256];
    memcpy((char *)stackbuf, a->marker, MARKER_LEN);
    fill_pages(a->marker, a->pages);
    wait_forever();
    return NULL;
}

static int hold(int idx, int threads, long pages, int do_fork)
{
    volatile char stackbuf[256];
    char *m = decode(idx);
    char *heap = malloc(PAGE);
    memcpy(heap, m, MARKER_LEN);
    memcpy((char *)stackbuf, m, MARKER_LEN);
    setenv("SPARC_SECRET", m, 1);
    fill_pages(m, pages);
    if (pipe(idle_pipe) < 0)
        return 1;
    static struct thread_arg arg;
    arg.marker = m;
    arg.pages = pages > 0 ? 1 : 0;
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, thread_main, &arg);
    }
    usleep(100000);
    if (do_fork) {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            /* A pipe of its own: parent and child share only their
             * copy-on-write memory, no IPC object. */
            close(idle_pipe[0]);
            close(idle_pipe[1]);
            if (pipe(idle_pipe) < 0)
                return 1;
            printf("CHILD pid=%d\n", getpid());
            fflush(stdout);
            wait_forever();
        }
        usleep(100000);
    }
    printf("READY hold marker=%d pid=%d threads=%d wait=%s\n", idx,
           getpid(), threads, wait_mode);
    fflush(stdout);
    wait_forever();
    return 0;
}

static int spray(int idx, long pages)
{
    char *m = decode(idx);
    fill_pages(m, pages);
    printf("DONE spray marker=%d pid=%d pages=%ld\n", idx, getpid(), pages);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "hold")) {
        int threads = 1, do_fork = 0;
        long pages = 16;
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--fork")) {
                do_fork = 1;
                continue;
            }
            if (i + 1 >= argc)
                break;
            if (!strcmp(argv[i], "--uid")) {
                int uid = atoi(argv[++i]);
                if (setgid(uid) < 0 || setuid(uid) < 0) {
                    perror("setuid");
                    return 1;
                }
            } else if (!strcmp(argv[i], "--threads"))
                threads = atoi(argv[++i]);
            else if (!strcmp(argv[i], "--pages"))
                pages = atol(argv[++i]);
            else if (!strcmp(argv[i], "--wait"))
                wait_mode = argv[++i];
        }
        return hold(atoi(argv[2]), threads, pages, do_fork);
    }
    if (argc == 4 && !strcmp(argv[1], "spray"))
        return spray(atoi(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: workload hold IDX [...] | spray IDX PAGES\n");
    return 2;
}
