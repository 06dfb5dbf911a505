/*
 * IPC workloads for the sparc-nova test bed: a writer hands its marker to
 * peers through a kernel object and leaves one copy unread in it.
 *
 *   ipc pipe IDX     writer -> reader through a pipe; the reader forwards
 *                    what it read to a sink through a second pipe
 *   ipc ustream IDX  writer -> reader over a unix stream socket pair
 *   ipc udgram IDX   writer -> reader over a unix datagram socket pair
 *   ipc sysv IDX     writer and reader attach one SysV shm segment
 *   ipc memfd IDX    writer and reader map one memfd MAP_SHARED
 *   ipc pty IDX      a terminal holds a pty master; busybox "sh -i" runs on
 *                    the slave as session leader with it as controlling
 *                    tty; the terminal types "echo >FILE # MARKER" on the
 *                    master and never reads it
 *   ipc ptrace IDX   a tracer seizes a tracee and writes the marker into
 *                    its memory with PTRACE_POKEDATA; the tracee runs on,
 *                    traced
 *
 * The peers are forked before the marker is decoded, so that no copy
 * reaches them by copy-on-write: every copy a peer holds came through the
 * IPC object. For pipe and sockets the writer sends the marker, waits
 * until the reader has read exactly that copy, then sends a second copy
 * that nobody reads. For shared memory the reader copies the marker out of
 * the shared page into its heap.
 *
 * Once every peer has its copy the first process prints one line naming
 * the processes (comm is set to SCEN-ROLE, e.g. "pipe-reader"):
 *   READY ipc pipe writer=PID reader=PID sink=PID
 *   READY ipc pty terminal=PID shell=PID
 * and every process waits without a timeout.
 *
 * On SIGUSR1 a peer (reader, sink, terminal) reads once, without
 * blocking, what is pending on its channel (for shared memory: the first
 * MARKER_LEN bytes of the shared page) and prints, on every SIGUSR1, the
 * result of that one read:
 *   IPC-READ <scen> <role> <pid> <ret> <found> <hex> <chk>
 * ret is the byte count or -errno (0: end of file); found is 1 when the
 * bytes contain the marker; hex is the first 32 bytes read ("-" for none);
 * chk is the sum of the bytes of the line before " <chk>", mod 65536, in
 * hex, so that a line garbled on the serial console can be told apart.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"

#define PAGE 4096
#define READ_MAX 4096

static int marker_idx;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void name_self(const char *scen, const char *role)
{
    char comm[16];
    snprintf(comm, sizeof(comm), "%s-%s", scen, role);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
}

static void flag_path(char *out, size_t n, const char *scen,
                      const char *role)
{
    snprintf(out, n, "/tmp/ipc-%s-%s.ok", scen, role);
}

/* "I have my copy": a file in tmpfs (no descriptor stays open, so it is
 * no IPC edge between the processes). */
static void flag(const char *scen, const char *role)
{
    char path[128];
    flag_path(path, sizeof(path), scen, role);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("flag");
    close(fd);
}

static void wait_flag(const char *scen, const char *role)
{
    char path[128];
    struct stat st;
    flag_path(path, sizeof(path), scen, role);
    for (int i = 0; i < 6000; i++) {
        if (stat(path, &st) == 0)
            return;
        usleep(20000);
    }
    fprintf(stderr, "ipc %s: %s never got its copy\n", scen, role);
    exit(1);
}

static void clear_flag(const char *scen, const char *role)
{
    char path[128];
    flag_path(path, sizeof(path), scen, role);
    unlink(path);
}

static void read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("read");
        got += r;
    }
}

static void write_full(int fd, const char *buf, size_t n)
{
    if (write(fd, buf, n) != (ssize_t)n)
        die("write");
}

static void wait_forever(void)
{
    for (;;)
        pause();
}

static void print_read(const char *scen, const char *role, ssize_t ret,
                       const unsigned char *buf)
{
    char line[256], hex[2 * MARKER_LEN + 1] = "-";
    int found = 0;
    if (ret > 0) {
        char *m = decode(marker_idx);
        found = memmem(buf, ret, m, MARKER_LEN) != NULL;
        free(m);
        size_t k = ret < MARKER_LEN ? (size_t)ret : MARKER_LEN;
        for (size_t i = 0; i < k; i++)
            sprintf(hex + 2 * i, "%02x", buf[i]);
    }
    snprintf(line, sizeof(line), "IPC-READ %s %s %d %zd %d %s", scen, role,
             getpid(), ret, found, hex);
    unsigned sum = 0;
    for (const char *p = line; *p; p++)
        sum += (unsigned char)*p;
    printf("%s %x\n", line, sum & 0xffff);
    fflush(stdout);
}

/*
 * A peer's life after it has its copy: wait for SIGUSR1 (blocked since
 * main(), taken with sigwait: an untimed wait), then read once from fd
 * (or copy from shared) and report that read on every signal.
 */
static void serve(const char *scen, const char *role, int fd,
                  const unsigned char *shared)
{
    static unsigned char buf[READ_MAX];
    sigset_t set;
    ssize_t ret = 0;
    int done = 0, sig;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (!done) {
            if (shared) {
                memcpy(buf, shared, MARKER_LEN);
                ret = MARKER_LEN;
            } else {
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                ret = read(fd, buf, sizeof(buf));
                if (ret < 0)
                    ret = -errno;
            }
            done = 1;
        }
        print_read(scen, role, ret, buf);
    }
}

static pid_t spawn(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    return pid;
}

static int run_pipe(void)
{
    int p1[2], p2[2];
    char held[MARKER_LEN];
    clear_flag("pipe", "reader");
    clear_flag("pipe", "sink");
    if (pipe(p1) < 0 || pipe(p2) < 0)
        die("pipe");
    pid_t reader = spawn();
    if (reader == 0) {
        name_self("pipe", "reader");
        close(p1[1]);
        close(p2[0]);
        read_full(p1[0], held, MARKER_LEN);
        write_full(p2[1], held, MARKER_LEN);
        flag("pipe", "reader");
        serve("pipe", "reader", p1[0], NULL);
    }
    pid_t sink = spawn();
    if (sink == 0) {
        name_self("pipe", "sink");
        close(p1[0]);
        close(p1[1]);
        close(p2[1]);
        read_full(p2[0], held, MARKER_LEN);
        flag("pipe", "sink");
        serve("pipe", "sink", p2[0], NULL);
    }
    name_self("pipe", "writer");
    close(p1[0]);
    close(p2[0]);
    close(p2[1]);
    char *m = decode(marker_idx);
    write_full(p1[1], m, MARKER_LEN);
    wait_flag("pipe", "reader");
    wait_flag("pipe", "sink");
    write_full(p1[1], m, MARKER_LEN);   /* the copy nobody reads */
    printf("READY ipc pipe writer=%d reader=%d sink=%d\n", getpid(), reader,
           sink);
    fflush(stdout);
    wait_forever();
    return 0;
}

static int run_socket(const char *scen, int type)
{
    int sv[2];
    char held[MARKER_LEN];
    clear_flag(scen, "reader");
    if (socketpair(AF_UNIX, type, 0, sv) < 0)
        die("socketpair");
    pid_t reader = spawn();
    if (reader == 0) {
        name_self(scen, "reader");
        close(sv[0]);
        /* One datagram, or exactly MARKER_LEN bytes of the stream. */
        if (type == SOCK_DGRAM) {
            if (recv(sv[1], held, sizeof(held), 0) != MARKER_LEN)
                die("recv");
        } else {
            read_full(sv[1], held, MARKER_LEN);
        }
        flag(scen, "reader");
        serve(scen, "reader", sv[1], NULL);
    }
    name_self(scen, "writer");
    close(sv[1]);
    char *m = decode(marker_idx);
    write_full(sv[0], m, MARKER_LEN);
    wait_flag(scen, "reader");
    write_full(sv[0], m, MARKER_LEN);   /* the copy nobody reads */
    printf("READY ipc %s writer=%d reader=%d\n", scen, getpid(), reader);
    fflush(stdout);
    wait_forever();
    return 0;
}

/* Writer and reader share the page at `shared` (mapped before fork). */
static int run_shared(const char *scen, unsigned char *shared)
{
    static char held[MARKER_LEN];
    clear_flag(scen, "reader");
    pid_t reader = spawn();
    if (reader == 0) {
        name_self(scen, "reader");
        for (int i = 0; i < 6000 && !shared[MARKER_LEN - 1]; i++)
            usleep(20000);
        memcpy(held, shared, MARKER_LEN);
        flag(scen, "reader");
        serve(scen, "reader", -1, shared);
    }
    name_self(scen, "writer");
    char *m = decode(marker_idx);
    memcpy(shared, m, MARKER_LEN);
    wait_flag(scen, "reader");
    printf("READY ipc %s writer=%d reader=%d\n", scen, getpid(), reader);
    fflush(stdout);
    wait_forever();
    return 0;
}

static int run_sysv(void)
{
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    void *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        die("shmat");
    return run_shared("sysv", p);
}

static int run_memfd(void)
{
    int fd = memfd_create("ipc-secret", 0);
    if (fd < 0 || ftruncate(fd, PAGE) < 0)
        die("memfd");
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return run_shared("memfd", p);
}

static int run_pty(void)
{
    clear_flag("pty", "shell");
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
        die("posix_openpt");
    const char *slave = ptsname(master);
    if (!slave)
        die("ptsname");
    /* The terminal outlives its shell when only the shell is excluded:
     * let the kernel reap it, so that it does not linger as a zombie. */
    signal(SIGCHLD, SIG_IGN);
    pid_t shell = spawn();
    if (shell == 0) {
        signal(SIGCHLD, SIG_DFL);
        close(master);
        if (setsid() < 0)
            die("setsid");
        /* A session leader without a controlling tty that opens a tty
         * (no O_NOCTTY) gets it as its controlling tty. */
        int fd = open(slave, O_RDWR);
        if (fd < 0)
            die("open slave");
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-i", (char *)NULL);
        die("exec sh");
    }
    name_self("pty", "terminal");
    sleep(2);   /* let the shell set up its line editing */
    char *m = decode(marker_idx);
    char line[128];
    char flag_file[128];
    flag_path(flag_file, sizeof(flag_file), "pty", "shell");
    /* Typed as a shell comment: the shell runs a builtin (no fork) that
     * tells us it read the line. */
    int n = snprintf(line, sizeof(line), "echo >%s # %s\r", flag_file, m);
    write_full(master, line, n);
    wait_flag("pty", "shell");
    printf("READY ipc pty terminal=%d shell=%d\n", getpid(), shell);
    fflush(stdout);
    serve("pty", "terminal", master, NULL);
    return 0;
}

/*
 * The tracer seizes the tracee, stops it, writes the marker into its
 * memory with PTRACE_POKEDATA and lets it run on, still traced: data went
 * from tracer to tracee through ptrace only.
 */
static int run_ptrace(void)
{
    static union {
        long words[(MARKER_LEN + sizeof(long) - 1) / sizeof(long)];
        unsigned char bytes[MARKER_LEN];
    } slot;
    pid_t tracee = spawn();
    if (tracee == 0) {
        name_self("ptrace", "tracee");
        serve("ptrace", "tracee", -1, slot.bytes);
    }
    name_self("ptrace", "tracer");
    if (ptrace(PTRACE_SEIZE, tracee, NULL, NULL) < 0)
        die("PTRACE_SEIZE");
    if (ptrace(PTRACE_INTERRUPT, tracee, NULL, NULL) < 0)
        die("PTRACE_INTERRUPT");
    int status;
    if (waitpid(tracee, &status, __WALL) < 0)
        die("waitpid");
    char *m = decode(marker_idx);
    memcpy(slot.bytes, m, MARKER_LEN);
    for (size_t i = 0; i < sizeof(slot.words) / sizeof(long); i++)
        if (ptrace(PTRACE_POKEDATA, tracee, &slot.words[i],
                   (void *)slot.words[i]) < 0)
            die("PTRACE_POKEDATA");
    memset(slot.bytes, 0, MARKER_LEN);
    if (ptrace(PTRACE_CONT, tracee, NULL, NULL) < 0)
        die("PTRACE_CONT");
    printf("READY ipc ptrace tracer=%d tracee=%d\n", getpid(), tracee);
    fflush(stdout);
    wait_forever();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ipc pipe|ustream|udgram|sysv|memfd|pty|ptrace "
                "IDX\n");
        return 2;
    }
    marker_idx = atoi(argv[2]);
    if (marker_idx < 0 || marker_idx >= MARKER_COUNT) {
        fprintf(stderr, "bad marker index %d\n", marker_idx);
        return 2;
    }
    /* Taken with sigwait() by the peers; blocked before any fork. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "pipe"))
        return run_pipe();
    if (!strcmp(argv[1], "ustream"))
        return run_socket("ustream", SOCK_STREAM);
    if (!strcmp(argv[1], "udgram"))
        return run_socket("udgram", SOCK_DGRAM);
    if (!strcmp(argv[1], "sysv"))
        return run_sysv();
    if (!strcmp(argv[1], "memfd"))
        return run_memfd();
    if (!strcmp(argv[1], "pty"))
        return run_pty();
    if (!strcmp(argv[1], "ptrace"))
        return run_ptrace();
    fprintf(stderr, "ipc: unknown scenario %s\n", argv[1]);
    return 2;
}
