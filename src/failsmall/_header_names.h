/* Header names most clients and origins send, as they spell them. The node's framing
 * (`node/_framing.c`) gives a message that carries one of them the same bytes and str objects
 * each time, in the spelling received (as listed, or in lowercase), and the engine's head walk
 * (`engine/_head.c`) the same lowercase str each time it lowers one: no allocation for each,
 * and a hash computed once for every lookup by name (an object keeps its hash). Any other name
 * is made anew, as before; which names are listed changes no result, only what is allocated. */
#ifndef FAILSMALL_HEADER_NAMES_H
#define FAILSMALL_HEADER_NAMES_H

#include <Python.h>
#include <string.h>

static const char *const COMMON_HEADER_NAMES[] = {
    /* requests */
    "Host", "User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Cookie", "Connection",
    "Content-Type", "Content-Length", "Referer", "Origin", "Cache-Control", "Pragma",
    "Authorization", "Upgrade-Insecure-Requests", "If-None-Match", "If-Modified-Since",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "X-Requested-With", "DNT", "Priority",
    "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User", "Sec-Ch-Ua",
    "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
    /* responses */
    "Server", "Date", "Last-Modified", "ETag", "Accept-Ranges", "Expires", "Vary", "Set-Cookie",
    "Location", "Keep-Alive", "Transfer-Encoding", "Content-Encoding",
};

#define COMMON_HEADER_COUNT ((int)(sizeof COMMON_HEADER_NAMES / sizeof *COMMON_HEADER_NAMES))
#define LONGEST_COMMON_HEADER 32

/* Spellings of the common names found by length: `first[n]` is the first spelling of n
 * characters (or -1), `next[k]` the next one after spelling k. */
typedef struct {
    char text[2 * COMMON_HEADER_COUNT][LONGEST_COMMON_HEADER];
    Py_ssize_t length[2 * COMMON_HEADER_COUNT];
    int first[LONGEST_COMMON_HEADER + 1];
    int next[2 * COMMON_HEADER_COUNT];
    int count;
} header_spellings_t;

/* Fill `s` with the names as listed (`lowercase` 0) or lowercase only (1). */
static void header_spellings(header_spellings_t *s, int lowercase) {
    s->count = 0;
    for (int n = 0; n <= LONGEST_COMMON_HEADER; n++) s->first[n] = -1;
    for (int form = lowercase; form < 2; form++) {
        for (int i = 0; i < COMMON_HEADER_COUNT; i++) {
            const char *name = COMMON_HEADER_NAMES[i];
            size_t n = strlen(name);
            if (n > LONGEST_COMMON_HEADER) continue;
            int k = s->count++;
            for (size_t c = 0; c < n; c++)
                s->text[k][c] = form == 1 && name[c] >= 'A' && name[c] <= 'Z' ? name[c] + 32 : name[c];
            s->length[k] = (Py_ssize_t)n;
            s->next[k] = s->first[n];
            s->first[n] = k;
        }
    }
}

/* The index of the spelling `name` (of `length` characters), or -1. */
static inline int header_spelling(const header_spellings_t *s, const char *name, Py_ssize_t length) {
    if (length > LONGEST_COMMON_HEADER) return -1;
    for (int k = s->first[length]; k >= 0; k = s->next[k])
        if (s->text[k][0] == name[0] && memcmp(s->text[k], name, (size_t)length) == 0) return k;
    return -1;
}

#endif
