/*
 * List the open file descriptors of processes as the guest kernel shows
 * them: readlink(/proc/PID/fd/N).
 *
 *   fdlist PID [PID ...]
 *
 * Output, per process a header, one line per descriptor, then a
 * terminator (count is -1 for a process that does not exist):
 *   FDS <pid> <count> <chk>
 *   FD <pid> <fd> <link> <chk>
 *   FDS-END
 * Each chk is the sum of the bytes of its line before " <chk>" mod 65536,
 * in hex: the reader drops lines garbled on the serial console and asks
 * again for what it lacks.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_checked(const char *line)
{
    unsigned sum = 0;
    for (const char *p = line; *p; p++)
        sum += (unsigned char)*p;
    printf("%s %x\n", line, sum & 0xffff);
}

static void report(int pid)
{
    char path[64], line[4200], link[4096];
    int fds[1024], n = 0;
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(line, sizeof(line), "FDS %d -1", pid);
        print_checked(line);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024)
        if (e->d_name[0] != '.')
            fds[n++] = atoi(e->d_name);
    closedir(d);
    snprintf(line, sizeof(line), "FDS %d %d", pid, n);
    print_checked(line);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fds[i]);
        ssize_t k = readlink(path, link, sizeof(link) - 1);
        if (k < 0)
            k = 0;
        link[k] = 0;
        snprintf(line, sizeof(line), "FD %d %d %s", pid, fds[i], link);
        print_checked(line);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        report(atoi(argv[i]));
    printf("FDS-END\n");
    fflush(stdout);
    return 0;
}
