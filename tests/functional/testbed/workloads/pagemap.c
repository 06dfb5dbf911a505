/*
 * Report the physical frames of a process's private anonymous pages, as
 * the guest kernel sees them, from /proc/PID/maps and /proc/PID/pagemap.
 *
 *   pagemap PID [PID ...]
 *
 * Output, per process a header and the frames in parts of at most 32,
 * then a terminator:
 *   PAGEMAP <pid> <count> <sum-hex>
 *   PAGEMAP-PART <pid> <index> <sum-hex> <pfn-hex>,<pfn-hex>,...
 *   PAGEMAP-END
 * Each sum (of the frame numbers) lets the reader detect a line garbled
 * on the serial console and ask again for the parts it lacks.
 * Only present pages that are anonymous (pagemap bit 61 clear) and
 * exclusively mapped (bit 56) are listed: those are what the engine may
 * scrub.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(int pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
    int pm = open(path, O_RDONLY);
    if (!maps || pm < 0) {
        printf("PAGEMAP %d 0 0\n", pid);
        return;
    }
    size_t cap = 1024, n = 0;
    uint64_t *pfns = malloc(cap * sizeof(*pfns));
    while (fgets(line, sizeof(line), maps)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx", &start, &end) != 2)
            continue;
        if (strstr(line, "[vsyscall]"))
            continue;
        for (unsigned long va = start; va < end; va += 4096) {
            uint64_t ent;
            if (pread(pm, &ent, 8, (va / 4096) * 8) != 8)
                break;
            if (!(ent >> 63 & 1) || (ent >> 61 & 1) || !(ent >> 56 & 1))
                continue;
            if (n == cap) {
                cap *= 2;
                pfns = realloc(pfns, cap * sizeof(*pfns));
            }
            pfns[n++] = ent & ((1ULL << 55) - 1);
        }
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += pfns[i];
    printf("PAGEMAP %d %zu %" PRIx64 "\n", pid, n, total);
    for (size_t part = 0; part * 32 < n; part++) {
        uint64_t sum = 0;
        size_t end = part * 32 + 32 < n ? part * 32 + 32 : n;
        for (size_t i = part * 32; i < end; i++)
            sum += pfns[i];
        printf("PAGEMAP-PART %d %zu %" PRIx64 " ", pid, part, sum);
        for (size_t i = part * 32; i < end; i++)
            printf(i > part * 32 ? ",%" PRIx64 : "%" PRIx64, pfns[i]);
        printf("\n");
    }
    free(pfns);
    fclose(maps);
    close(pm);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        report(atoi(argv[i]));
    printf("PAGEMAP-END\n");
    fflush(stdout);
    return 0;
}
