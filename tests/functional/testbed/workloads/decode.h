/*
 * Decode a marker of the generated markers.h (XORed with MARKER_KEY) into
 * a fresh heap string: the copy the workloads make at run time.
 */
#ifndef SPARC_DECODE_H
#define SPARC_DECODE_H

#include <stdio.h>
#include <stdlib.h>

#include "markers.h"

static char *decode(int idx)
{
    if (idx < 0 || idx >= MARKER_COUNT) {
        fprintf(stderr, "bad marker index %d\n", idx);
        exit(2);
    }
    size_t n = MARKER_LEN;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(MARKERS[idx][i] ^ MARKER_KEY);
    out[n] = 0;
    return out;
}

#endif
