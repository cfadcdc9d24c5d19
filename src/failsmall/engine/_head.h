/* The request head walk (`_head.c`) and what it shares with the value scanner (`_native.c`). */
#ifndef FAILSMALL_HEAD_H
#define FAILSMALL_HEAD_H
#include "_memo.h"

typedef struct ValueScanner ValueScanner;

/* What a value, a head part or a request found and cost; `hits` is a new reference. */
typedef struct {
    PyObject *hits;
    Py_ssize_t values;
    Py_ssize_t chars;
} known_t;

/* Defined in `_native.c`: the hits (a frozenset) and characters of a value not seen before as a
 * value of `targets`, as written and, for a value that is not ASCII, in its NFKC form too, into
 * `*out` (one value). -1 on error. */
int fresh_value(ValueScanner *self, PyObject *value, long long targets, known_t *out);

/* Why a walk stopped: it did not (every value fit), or the next value's work would pass the
 * values limit, or the characters limit (checked in that order). */
typedef enum { STOP_NONE = 0, STOP_VALUES = 1, STOP_CHARS = 2 } stop_t;

/* The work of a scan: the room it has, what it has counted, where it stopped, and the set its
 * hits go to (the caller's). */
typedef struct {
    PyObject *hits;
    Py_ssize_t room_values, room_chars, values, chars;
    stop_t stop;
} work_t;

/* Charge `found` to `w` and add its hits (`WorkCount.fits`): 1 when it fits, 0 when it does not
 * (`w->stop` says which limit it would pass), -1 on error. Releases `found->hits`. */
int work_charge(work_t *w, known_t *found);

/* Values scanned fresh during a walk, remembered after it (`remembered_later_put`): a body with
 * more distinct values than the memo holds then finds those remembered from the last time. */
typedef struct {
    struct later_value *items;
    Py_ssize_t count, capacity;
} remembered_later_t;

/* Keep `value` (a str of hash `hash`) with its `targets`, `hits` and `chars` to remember
 * later (new references are taken). -1 on error. */
int remembered_later_add(remembered_later_t *later, PyObject *value, Py_hash_t hash,
                         long long targets, PyObject *hits, Py_ssize_t chars);

/* Remember every value kept, in order. -1 on error. */
int remembered_later_put(remembered_later_t *later, Memo *memo);

/* Let go of the values kept. */
void remembered_later_free(remembered_later_t *later);

/* The table `scan_json` merges a body's repeated values in (`_jsonscan.c`), kept by its scanner
 * from one body to the next, so a body's merge neither allocates nor clears one: a slot is in
 * use only when it carries the current `generation` (the next body's slots, all in use by an
 * earlier one, read as empty). Zeroed when made and when the generation wraps. */
typedef struct {
    uint64_t *slots;
    size_t capacity;
    uint64_t generation;
} merge_table_t;

/* The merge table of `self` (`_native.c`). */
merge_table_t *scanner_merge_table(ValueScanner *self);

/* Let go of a merge table's slots. */
void merge_table_free(merge_table_t *table);

/* Fresh values scanned together (`_native.c`): each value's results go, as UTF-8 separated by
 * `\n`, into the buffer of the database that would scan them alone (a subset's or the one of
 * every pattern), scanned once with its candidate form; only the results it flags are scanned
 * on their own, exactly (as `scan_result`), and those alone give hits. Results that hold a
 * `\n` or are long are scanned on their own as they are added. */
typedef struct {
    struct batch_group *groups; /* by the database that scans a result alone; NULL for none */
    PyObject **hits;            /* per value: a set, or NULL for none yet */
    Py_ssize_t nvalues, hits_capacity;
} scan_batch_t;

/* Add the results of a fresh `value` of `targets` (and of its NFKC form, as `fresh_value`):
 * returns the value's index in the batch, -1 on error; `*chars` is what they cost. */
Py_ssize_t batch_add(ValueScanner *self, scan_batch_t *b, PyObject *value, long long targets,
                     Py_ssize_t *chars);

/* Scan the results added since the last call. -1 on error. */
int batch_scan(ValueScanner *self, scan_batch_t *b);

/* The hits of value `index` once scanned: a new frozenset. */
PyObject *batch_hits(ValueScanner *self, scan_batch_t *b, Py_ssize_t index);

void batch_free(scan_batch_t *b);

/* A value added: its hits and cost when remembered, or its index in the batch when fresh. */
struct walk_value {
    known_t found;
    PyObject *value; /* the fresh value, or NULL */
    Py_hash_t hash;  /* its hash */
    long long targets;
    Py_ssize_t index;
};

/* Values in order, the remembered ones as found and the fresh ones scanned together, charged
 * to the work as `scan_sources` charges them one by one (`_scanwalk.c`): `walk_known` and
 * `walk_fresh` add the next value and return 1 while more may follow, 0 once a value would not
 * fit (it is the last: the work stops before it), -1 on error; `walk_finish` scans, charges
 * each value in order to `w`, and remembers the short fresh ones charged or stopped at. */
typedef struct {
    scan_batch_t batch;
    struct walk_value *items;
    Py_ssize_t count, capacity;
    Py_ssize_t room_values, room_chars, values, chars;
} scan_walk_t;

/* Whether a value of `values` and `chars` fits after the values added so far
 * (`work_charge`'s test). */
static inline int walk_fits(const scan_walk_t *walk, Py_ssize_t values, Py_ssize_t chars) {
    return walk->values + values <= walk->room_values && walk->chars + chars <= walk->room_chars;
}

/* A remembered value without hits that fits changes the work only by its values and
 * characters: after another such value it joins that one's item, which `work_charge` then
 * charges in one go (the sums fit as each part did), so a body of values remembered clean
 * costs a few items, not one per value. 1 when the value of `hits`, `values` and `chars`
 * joined the last item so, else 0 (and nothing changed). */
static inline int walk_join_clean(scan_walk_t *walk, PyObject *hits, Py_ssize_t values,
                                  Py_ssize_t chars) {
    if (walk->count == 0 || PySet_GET_SIZE(hits) != 0) return 0;
    struct walk_value *last = &walk->items[walk->count - 1];
    if (last->value != NULL || PySet_GET_SIZE(last->found.hits) != 0 ||
        !walk_fits(walk, values, chars))
        return 0;
    last->found.values += values;
    last->found.chars += chars;
    walk->values += values;
    walk->chars += chars;
    return 1;
}

/* Room for `values` more values, so a walk of a known number of them never grows (and copies)
 * its items. -1 with MemoryError set. */
int walk_reserve(scan_walk_t *walk, Py_ssize_t values);
/* `found->hits` is taken. */
int walk_known(scan_walk_t *walk, known_t *found);
/* `hash` is the hash of the str `value`. */
int walk_fresh(ValueScanner *self, scan_walk_t *walk, PyObject *value, Py_hash_t hash,
               long long targets);
int walk_finish(ValueScanner *self, scan_walk_t *walk, Memo *memo, work_t *w);
void walk_free(scan_walk_t *walk);

/* The hits and cost of `value` as a value of `targets` (a mask > 0): remembered in `memo`, or
 * scanned (then `*fresh` is 1). An empty value has none. -1 on error. */
int value_found(ValueScanner *self, Memo *memo, PyObject *value, long long targets,
                known_t *out, int *fresh);

/* `value_found`, remembering a value scanned when short. -1 on error. */
int value_known(ValueScanner *self, Memo *memo, PyObject *value, long long targets,
                known_t *out);

/* ValueScanner.scan_head: see `_head.c`. */
PyObject *scan_head_impl(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs);

/* ValueScanner.scan_json: see `_jsonscan.c`. */
PyObject *scan_json_impl(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs);

/* The module function index_headers(headers): values by lowercase name, and the names. */
PyObject *index_headers(PyObject *module, PyObject *headers);

/* The module function has_header(headers, name): whether a header's lowercase name is it. */
PyObject *has_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Imports what the head walk calls (urllib.parse.unquote) and adds HEAD_TARGET_BITS (the
 * target bits it is built with, by target name) to `module`; -1 on error. */
int head_init(PyObject *module);

#endif
