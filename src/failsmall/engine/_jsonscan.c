/* A JSON body scanned in one call: `ValueScanner.scan_json`, from the body's bytes to its hits.
 *
 * It gives what `SignatureScanner` gets from `json_fields`, `add_fields` and `scan_sources`
 * together (the readable way: `body.parse_json_reference`, then `scan_sources` of the
 * reference scanner), without a Python string per value:
 *
 * 1. the walk (`_jsonwalk.c`) gives each field's path and value: a value read where it is in
 *    the body's bytes, the others' characters copied into one arena in the narrowest kind
 *    that holds them, each hashed as it is added (`memo_text_hash`); then each is
 *    kept once, in the order first seen, with the target bits of every place it was seen (as
 *    `add_fields` ors them into a dict);
 * 2. then each distinct value in order, as `scan_sources` does: looked up in the memo by its
 *    characters and hash (no str is made for a value remembered; a value too long to be
 *    remembered is not looked up), or made a str and scanned (the fresh values together,
 *    `scan_walk_t`);
 *    charged to the room left, stopping before the first whose work does not fit; the short
 *    fresh values are remembered after the walk.
 *
 * A body that is not JSON, or one the walk leaves to `json.loads`, is not scanned: the status
 * says so and the caller scans its fields the long way.
 */
#include "_head.h"
#include "_jsonwalk.h"
#include "_kind.h"

#include <stdint.h>
#include <string.h>

/* Where a value's characters are: copied into the arena, in the body's bytes (a value without
 * escapes of a body walked as its bytes), or the body's text (the str passed in). The body and
 * its text outlive the scan, so neither is copied. */
typedef enum { IN_ARENA, IN_BODY, BODY_TEXT } source_place;

/* One distinct value: its characters at `offset` of its place, and its target bits. */
typedef struct {
    Py_ssize_t offset, length;
    int kind;
    source_place place;
    Py_hash_t hash;
    long long bits;
} source_t;

typedef struct {
    char *arena;
    Py_ssize_t arena_length, arena_capacity;
    source_t *items;
    Py_ssize_t count, capacity;
    long long names_bit, values_bit;
    PyObject *text; /* the body's text (borrowed), or NULL when it is not a source */
    const char *body; /* the body's bytes (borrowed) */
} sources_t;

/* The characters of `item`. */
static inline const char *source_data(const sources_t *s, const source_t *item) {
    switch (item->place) {
    case IN_BODY:
        return s->body + item->offset;
    case BODY_TEXT:
        return PyUnicode_DATA(s->text);
    case IN_ARENA:
    default: /* the three places above are all there are */
        return s->arena + item->offset;
    }
}

static void sources_free(sources_t *s) {
    PyMem_Free(s->arena);
    PyMem_Free(s->items);
}

/* Room for `more` bytes at the end of the arena. */
static int arena_reserve(sources_t *s, Py_ssize_t more) {
    if (s->arena_length + more <= s->arena_capacity) return 0;
    if (more > PY_SSIZE_T_MAX / 4 - s->arena_length) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t capacity = (s->arena_length + more) * 2 + 64;
    char *arena = PyMem_Realloc(s->arena, (size_t)capacity);
    if (arena == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->arena = arena;
    s->arena_capacity = capacity;
    return 0;
}

/* A slot of the merge table: the table's generation in the high 16 bits (a slot of another
 * generation is empty), 16 bits of the item's hash next, so a probe reads the item only when
 * they agree, and the item's index + 1 in the low 32 bits. */
static inline uint64_t slot_of(uint64_t generation, Py_hash_t hash, Py_ssize_t index) {
    return generation << 48 | ((uint64_t)hash & 0xFFFF00000000u) | (uint64_t)(index + 1);
}

/* Room for the values of a body of `length` bytes, so most bodies never grow their buffers:
 * a field's name and value take 20 to 25 bytes of a body of short fields (the 1 MiB import of
 * `bench/engine.py` 20, its 8 KiB cart 24), and a value read in place no room in the arena. */
static int presize(sources_t *s, Py_ssize_t length) {
    Py_ssize_t items = length / 8 + 64;
    s->items = PyMem_Malloc((size_t)items * sizeof(source_t));
    if (s->items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->capacity = items;
    return arena_reserve(s, length + 256);
}

/* The narrowest kind that holds the `length` characters of `kind` at `data`. */
static int narrowest(int kind, const void *data, Py_ssize_t length) {
    if (kind == PyUnicode_1BYTE_KIND) return kind;
    Py_UCS4 max = 0;
    for (Py_ssize_t j = 0; j < length; j++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, j);
        if (c > max) max = c;
    }
    return max < 0x100 ? PyUnicode_1BYTE_KIND : max < 0x10000 ? PyUnicode_2BYTE_KIND : kind;
}

/* Copy the `length` UCS4 characters at `data` to the end of the arena as one-byte characters
 * in one pass, which tells at its end the narrowest kind that holds them all (the copy is used
 * only when that is one byte); -1 with MemoryError set when there is no room. */
static int to_latin1(sources_t *s, const Py_UCS4 *restrict data, Py_ssize_t length) {
    if (arena_reserve(s, length) < 0) return -1;
    /* `restrict`: the arena is not the walk's path, so the loop is vectorised */
    Py_UCS1 *restrict at = (Py_UCS1 *)(s->arena + s->arena_length);
    Py_UCS4 bits = 0; /* every bit of every character: below 2^k exactly when all are */
    for (Py_ssize_t j = 0; j < length; j++) {
        bits |= data[j];
        at[j] = (Py_UCS1)data[j];
    }
    return bits < 0x100     ? PyUnicode_1BYTE_KIND
           : bits < 0x10000 ? PyUnicode_2BYTE_KIND
                            : PyUnicode_4BYTE_KIND;
}

/* Append the source of `length` characters of `kind` at `offset` of `place`, with its hash:
 * computed now, while the walk has just read its characters (or copied them), rather than
 * when they are read again from a body's worth of memory. */
ALWAYS_INLINE int append_source(sources_t *s, source_place place, Py_ssize_t offset, int kind,
                                Py_ssize_t length, long long bits) {
    if (array_reserve((void **)&s->items, &s->capacity, s->count + 1, sizeof(source_t)) < 0)
        return -1;
    source_t *item = &s->items[s->count++];
    *item = (source_t){offset, length, kind, place, 0, bits};
    item->hash = memo_text_hash(kind, source_data(s, item), length);
    return 0;
}

/* Add the value of `length` characters of `kind` at `data`, of targets `bits`, after the
 * others: where it is in the body's bytes (at `body_at`, an ASCII body's characters), else its
 * characters copied into the arena in their narrowest kind. Repeats are merged afterwards
 * (`merge_repeats`). */
static int add_source(sources_t *s, int kind, const void *data, Py_ssize_t length,
                      Py_ssize_t body_at, long long bits) {
    if (body_at != NOT_IN_BODY) return append_source(s, IN_BODY, body_at, kind, length, bits);
    int narrow = kind == PyUnicode_4BYTE_KIND ? to_latin1(s, data, length)
                                              : narrowest(kind, data, length);
    if (narrow < 0) return -1;
    Py_ssize_t start = s->arena_length;
    /* a path (or an escaped value) of one-byte characters was narrowed as it was read */
    if (kind != PyUnicode_4BYTE_KIND || narrow != PyUnicode_1BYTE_KIND) {
        /* each value starts at a multiple of its character size (the arena's start is
         * aligned) */
        start = (start + narrow - 1) & ~(Py_ssize_t)(narrow - 1);
        if (arena_reserve(s, start - s->arena_length + length * narrow) < 0) return -1;
        char *copy = s->arena + start;
        if (narrow == kind) {
            copy_bytes(copy, data, (size_t)(length * kind));
        } else {
            for (Py_ssize_t j = 0; j < length; j++)
                PyUnicode_WRITE(narrow, copy, j, PyUnicode_READ(kind, data, j));
        }
    }
    s->arena_length = start + length * narrow;
    return append_source(s, IN_ARENA, start, narrow, length, bits);
}

/* Add the body's text `text` (of targets `bits`) as a source read where it is: no copy of a
 * body's worth of characters, and no new str when it is scanned. */
static int add_text(sources_t *s, PyObject *text, long long bits) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (narrowest(kind, data, length) != kind)
        return add_source(s, kind, data, length, NOT_IN_BODY, bits);
    s->text = text;
    return append_source(s, BODY_TEXT, 0, kind, length, bits);
}

/* How many values ahead the merge asks for the table slot it will read. */
#define MERGE_PREFETCH 16
/* The most slots of a merge table kept from one body to the next (128 KiB: a body of up to
 * 8,192 values); a larger body's merge has a table of its own. */
#define MERGE_KEPT_SLOTS ((size_t)1 << 14)
#define MERGE_GENERATIONS ((uint64_t)1 << 16)

void merge_table_free(merge_table_t *table) {
    PyMem_Free(table->slots);
    *table = (merge_table_t){0};
}

/* `slots` slots of `kept` for a body's merge, the generation they are in use by in
 * `*generation`: its own, zeroed, when the body needs more than MERGE_KEPT_SLOTS (then the
 * caller frees it), else those kept, in a generation of their own. NULL, with MemoryError
 * set, when there is no room. */
static uint64_t *merge_slots(merge_table_t *kept, size_t slots, uint64_t *generation) {
    if (slots > MERGE_KEPT_SLOTS) {
        *generation = 1;
        uint64_t *own = PyMem_Calloc(slots, sizeof(uint64_t));
        if (own == NULL) PyErr_NoMemory();
        return own;
    }
    if (kept->capacity < slots) {
        merge_table_free(kept);
        if ((kept->slots = PyMem_Calloc(MERGE_KEPT_SLOTS, sizeof(uint64_t))) == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        kept->capacity = MERGE_KEPT_SLOTS;
    }
    if (++kept->generation == MERGE_GENERATIONS) {
        memset(kept->slots, 0, kept->capacity * sizeof(uint64_t));
        kept->generation = 1;
    }
    *generation = kept->generation;
    return kept->slots;
}

/* Keep each value once, where first added, with the targets of every place it was added (as
 * `add_fields` ors them into a dict). The table is sized once for every value, so the slot a
 * value will probe is known, and asked for, a few values before it is read: in a large body
 * the slots are spread over more memory than the caches hold. */
static int merge_repeats(sources_t *s, merge_table_t *kept_table) {
    if (s->count > (Py_ssize_t)UINT32_MAX - 1) {
        PyErr_SetString(PyExc_MemoryError, "scan_json: more than 2**32 - 2 values");
        return -1;
    }
    size_t slots = 64;
    while (slots < (size_t)(2 * s->count)) slots *= 2;
    uint64_t generation;
    uint64_t *table = merge_slots(kept_table, slots, &generation);
    if (table == NULL) return -1;
    size_t mask = slots - 1;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < s->count; i++) {
        /* the slot of a value some places ahead, asked for while this one's is waited for */
        if (i + MERGE_PREFETCH < s->count)
            __builtin_prefetch(&table[(size_t)s->items[i + MERGE_PREFETCH].hash & mask]);
        source_t item = s->items[i];
        uint64_t tag = slot_of(generation, item.hash, -1);
        size_t k = (size_t)item.hash & mask;
        for (; table[k] >> 48 == generation; k = (k + 1) & mask) {
            if ((table[k] & 0xFFFFFFFF00000000u) != tag) continue;
            source_t *old = &s->items[(table[k] & 0xFFFFFFFFu) - 1];
            if (old->hash == item.hash && old->kind == item.kind &&
                old->length == item.length &&
                memo_same_bytes(source_data(s, old), source_data(s, &item),
                                (size_t)(item.length * item.kind))) {
                old->bits |= item.bits;
                break;
            }
        }
        if (table[k] >> 48 != generation) {
            table[k] = slot_of(generation, item.hash, kept);
            s->items[kept++] = item;
        }
    }
    s->count = kept;
    if (table != kept_table->slots) PyMem_Free(table);
    return 0;
}

/* The walk's sink: the field's name, then its value (`add_fields`). */
static int add_pair(void *context, int path_kind, const void *path, Py_ssize_t path_length,
                    const json_text_t *value) {
    sources_t *s = context;
    if (s->names_bit &&
        add_source(s, path_kind, path, path_length, NOT_IN_BODY, s->names_bit) < 0)
        return -1;
    if (s->values_bit &&
        add_source(s, value->kind, value->data, value->length, value->body_at, s->values_bit) < 0)
        return -1;
    return 0;
}

/* How many values apart the stages of a lookup's prefetching run. A large body's lookups read
 * buckets and entries spread over more memory than the L2 cache holds: a stage started four
 * values ahead had not finished when the next needed it (on a 1 MiB body, 8 is 5-10% faster
 * than 4). Where the memory is shared with busy neighbours a read takes longer still: there 16
 * took a tenth off the lookups of 8, and 24 or 32 were no faster than 16. */
#define PREFETCH_DISTANCE 16
/* The memo hashes kept while a value is between its first prefetch and its lookup, by its place
 * modulo this: a power of two above the three stages' span. */
#define MIXED_RING 64
_Static_assert(MIXED_RING > 3 * PREFETCH_DISTANCE && (MIXED_RING & (MIXED_RING - 1)) == 0,
               "MIXED_RING: a power of two above 3 * PREFETCH_DISTANCE");

/* The hash `item` is filed by in the memo, or 0 for one not looked up (empty, or too long to
 * be remembered). */
static inline Py_hash_t mixed_of(const source_t *item) {
    int looked_up = item->length && item->length <= MEMO_MAX_VALUE;
    return looked_up ? memo_mix(item->hash, item->bits) : 0;
}

/* The distinct values of `s` in order, as `scan_sources` scans them, charged to `w`. Returns
 * -1 on error. */
static int scan_in_order(ValueScanner *self, Memo *memo, sources_t *s, work_t *w) {
    scan_walk_t walk = {.room_values = w->room_values - w->values,
                        .room_chars = w->room_chars - w->chars};
    int more = 1, err = -1;
    /* the memo hash of each value from this one to the furthest prefetched (`mixed_of`),
     * computed when its first stage starts, read by each stage and by the lookup */
    const Py_ssize_t lead = 3 * PREFETCH_DISTANCE, ring = MIXED_RING - 1;
    Py_hash_t mixed[MIXED_RING];
    for (Py_ssize_t i = 0; i < lead && i < s->count; i++) mixed[i] = mixed_of(&s->items[i]);
    if (walk_reserve(&walk, s->count) < 0) goto done;
    for (Py_ssize_t i = 0; more == 1 && i < s->count; i++) {
        if (i + lead < s->count) mixed[(i + lead) & ring] = mixed_of(&s->items[i + lead]);
        /* the memo reads of the values a few places ahead, started now (see memo_prefetch) */
        for (int stage = 0; stage < 3; stage++) {
            Py_ssize_t ahead = i + PREFETCH_DISTANCE * (3 - stage);
            if (ahead < s->count && mixed[ahead & ring] != 0)
                memo_prefetch_mixed(memo, mixed[ahead & ring], stage);
        }
        source_t *item = &s->items[i];
        if (item->length == 0) continue;
        memo_text_t text = {item->kind, source_data(s, item), item->length, item->hash};
        memo_entry *e = item->length > MEMO_MAX_VALUE
                            ? NULL
                            : memo_find_text_mixed(memo, text, item->bits, mixed[i & ring]);
        if (e != NULL) {
            if (walk_join_clean(&walk, e->hits, e->values, e->chars)) continue;
            known_t found = {Py_NewRef(e->hits), e->values, e->chars};
            more = walk_known(&walk, &found);
        } else {
            PyObject *value = item->place == BODY_TEXT
                                  ? Py_NewRef(s->text)
                                  : PyUnicode_FromKindAndData(text.kind, text.data, text.length);
            if (value == NULL) goto done;
            more = walk_fresh(self, &walk, value, item->hash, item->bits);
            Py_DECREF(value);
        }
        if (more < 0) goto done;
    }
    err = walk_finish(self, &walk, memo, w);
done:
    walk_free(&walk);
    return err;
}

/* scan_json(hits, memo, body, text, text_bits, names_bit, values_bit, max_values, max_depth,
 *           max_name_chars, room_values, room_chars) -> (status, values, chars, stop) */
PyObject *scan_json_impl(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12 || !PySet_CheckExact(args[0]) || !PyObject_TypeCheck(args[1], &MemoType) ||
        !PyBytes_Check(args[2]) || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_json(hits: set, memo: Memo, body: bytes, text: str, text_bits: int, "
                        "names_bit: int, values_bit: int, max_values: int, max_depth: int, "
                        "max_name_chars: int, room_values: int, room_chars: int)");
        return NULL;
    }
    PyObject *hits = args[0], *body = args[2], *text = args[3];
    Memo *memo = (Memo *)args[1];
    long long text_bits = PyLong_AsLongLong(args[4]);
    sources_t s = {0};
    s.names_bit = PyLong_AsLongLong(args[5]);
    s.values_bit = PyLong_AsLongLong(args[6]);
    Py_ssize_t max_values = PyLong_AsSsize_t(args[7]);
    long max_depth = PyLong_AsLong(args[8]);
    Py_ssize_t max_name_chars = PyLong_AsSsize_t(args[9]);
    Py_ssize_t room_values = PyLong_AsSsize_t(args[10]), room_chars = PyLong_AsSsize_t(args[11]);
    if (PyErr_Occurred()) return NULL;
    if (text_bits < 0 || s.names_bit < 0 || s.values_bit < 0 || max_depth < 0 ||
        max_depth > INT_MAX) {
        PyErr_SetString(PyExc_ValueError,
                        "scan_json: target bits are 0 or more, max_depth a C int of 0 or more");
        return NULL;
    }
    PyObject *out = NULL;
    s.body = PyBytes_AS_STRING(body);
    if (presize(&s, PyBytes_GET_SIZE(body)) < 0)
        goto done;
    if (text_bits && add_text(&s, text, text_bits) < 0)
        goto done;
    int status = json_walk(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), max_values,
                           (int)max_depth, max_name_chars, add_pair, &s);
    work_t w = {hits, room_values, room_chars, 0, 0, STOP_NONE};
    switch (status) {
    case WALK_ERROR:
        goto done;
    case WALK_INVALID:
    case WALK_UNDECIDED:
        break;
    default:
        if (merge_repeats(&s, scanner_merge_table(self)) < 0 ||
            scan_in_order(self, memo, &s, &w) < 0)
            goto done;
    }
    out = Py_BuildValue("(inni)", status, w.values, w.chars, (int)w.stop);
done:
    sources_free(&s);
    return out;
}
