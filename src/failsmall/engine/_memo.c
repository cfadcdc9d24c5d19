/* The signature scanner's memo: what values, head parts and whole bodies found and cost.
 *
 * A hash table keyed by (key, kind) -- a value and its target mask, or a raw query part, a raw
 * cookie part, a header pair or a whole body (see `_memo.h`) -- whose entries keep the hits
 * found (a frozenset), the values held and the characters scanned. An entry is one
 * allocation: a str key is kept as its characters inside it, looked up and stored from
 * characters and a hash (no str needs to be made for them). It is bounded by the rough
 * bytes of its keys: each entry costs its size plus a fixed overhead, and when full the oldest
 * entries are forgotten one by one, as many as make room for the new one. So eviction is
 * gradual: a flood of unique values only pushes out the oldest entries.
 *
 * A key is admitted on its second offer: the first only sets its two bits in a Bloom filter of
 * sightings (emptied whenever it has noted an offer per eight of its bits: it stays sparse),
 * and the key is stored when offered with both bits set. A one-off value (a session id, an
 * order's ids) costs two bit writes instead of an allocation, a link and, later, the eviction
 * of an entry no request asks for; a flood of them pushes out nothing the memo holds. Keys
 * seen together do not crowd one another out (as they would in a table of one key per slot):
 * a body sent twice has its values stored the second time.
 *
 * `failsmall.engine.signatures.reference.ReferenceMemo` is the same in Python; tests hold the
 * two to the same entries after the same operations.
 */
#include "_memo.h"

#define MEMO_FIRST_BUCKETS 256

/* What only storing and forgetting an entry read, after its characters. */
typedef struct {
    memo_entry *newer; /* insertion order: the oldest entry goes first */
    PyObject *key;     /* a key that is not a str; NULL for a str's characters */
    Py_ssize_t cost;
} memo_cold;

/* The bytes of `length` characters of `kind`, rounded up to whole words. */
static inline size_t text_room(Py_ssize_t length, int kind) {
    return ((size_t)length * (size_t)kind + 7) & ~(size_t)7;
}

static inline memo_cold *cold_of(const memo_entry *e) {
    return (memo_cold *)(e->text + text_room(e->text_length, e->text_kind));
}

uint64_t memo_text_key[2];

int memo_key_init(void) {
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) return -1;
    PyObject *drawn = PyObject_CallMethod(os, "urandom", "i", (int)sizeof memo_text_key);
    Py_DECREF(os);
    if (drawn == NULL) return -1;
    if (!PyBytes_Check(drawn) || PyBytes_GET_SIZE(drawn) != (Py_ssize_t)sizeof memo_text_key) {
        Py_DECREF(drawn);
        PyErr_SetString(PyExc_RuntimeError, "os.urandom gave no 16 bytes for the memo's key");
        return -1;
    }
    memcpy(memo_text_key, PyBytes_AS_STRING(drawn), sizeof memo_text_key);
    Py_DECREF(drawn);
    return 0;
}

memo_text_t memo_text_of(PyObject *str) {
    Py_ssize_t length = PyUnicode_GET_LENGTH(str);
    int kind = PyUnicode_KIND(str);
    const void *data = PyUnicode_DATA(str);
    return (memo_text_t){kind, data, length, memo_text_hash(kind, data, length)};
}

/* 1 when the entry is of the str of `text` (of mixed hash `hash`) and `kind`. */
static inline int is_text(const memo_entry *e, memo_text_t text, Py_hash_t hash, long long kind) {
    return e->hash == hash && e->kind == kind && e->text_kind == text.kind &&
           e->text_length == text.length &&
           memo_same_bytes(e->text, text.data, (size_t)text.length * (size_t)text.kind);
}

static memo_entry *find_text_hashed(Memo *memo, memo_text_t text, long long kind,
                                    Py_hash_t hash) {
    for (memo_entry *e = memo->buckets[(size_t)hash & memo->mask]; e; e = e->next_in_bucket)
        if (is_text(e, text, hash, kind)) return e;
    return NULL;
}

/* The entry of an object `key` (not a str) of mixed hash `hash`, or NULL (with an exception
 * set when the key could not be compared). */
static memo_entry *find_object_hashed(Memo *memo, PyObject *key, long long kind,
                                      Py_hash_t hash) {
    for (memo_entry *e = memo->buckets[(size_t)hash & memo->mask]; e; e = e->next_in_bucket) {
        if (e->hash != hash || e->kind != kind || e->text_kind != 0) continue;
        PyObject *held = cold_of(e)->key;
        int same = held == key ? 1 : PyObject_RichCompareBool(held, key, Py_EQ);
        if (same < 0) return NULL;
        if (same) return e;
    }
    return NULL;
}

memo_entry *memo_find(Memo *memo, PyObject *key, long long kind) {
    if (PyUnicode_Check(key)) {
        memo_text_t text = memo_text_of(key);
        return memo_find_text(memo, text, kind);
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return NULL;
    return memo_find_object(memo, key, hash, kind);
}

memo_entry *memo_find_object(Memo *memo, PyObject *key, Py_hash_t hash, long long kind) {
    return find_object_hashed(memo, key, kind, memo_mix(hash, kind));
}

memo_entry *memo_find_text(Memo *memo, memo_text_t text, long long kind) {
    return find_text_hashed(memo, text, kind, memo_mix(text.hash, kind));
}

memo_entry *memo_find_text_mixed(Memo *memo, memo_text_t text, long long kind, Py_hash_t mixed) {
    return find_text_hashed(memo, text, kind, mixed);
}

/* The two bits of the filter of sightings of a key of mixed hash `hash`. */
static inline void sighting_bits(const Memo *memo, Py_hash_t hash, size_t *low, size_t *high) {
    *low = (size_t)hash & memo->sighting_mask;
    *high = (size_t)((Py_uhash_t)hash >> 32) & memo->sighting_mask;
}

void memo_prefetch(const Memo *memo, Py_hash_t text_hash, long long kind, int stage) {
    memo_prefetch_mixed(memo, memo_mix(text_hash, kind), stage);
}

void memo_prefetch_mixed(const Memo *memo, Py_hash_t mixed, int stage) {
    memo_entry *const *bucket = &memo->buckets[(size_t)mixed & memo->mask];
    if (stage == 0) {
        __builtin_prefetch(bucket);
    } else if (*bucket != NULL) {
        if (stage == 1) __builtin_prefetch(*bucket);
        else __builtin_prefetch((const char *)*bucket + 64);
    }
}

void memo_prefetch_put(const Memo *memo, Py_hash_t text_hash, long long kind, int stage) {
    Py_hash_t mixed = memo_mix(text_hash, kind);
    if (stage == 0 && memo->sightings != NULL) {
        size_t low, high;
        sighting_bits(memo, mixed, &low, &high);
        __builtin_prefetch(&memo->sightings[low / 64], 1);
        __builtin_prefetch(&memo->sightings[high / 64], 1);
    }
    memo_prefetch_mixed(memo, mixed, stage);
}

int array_reserve(void **items, Py_ssize_t *capacity, Py_ssize_t needed, size_t item) {
    if (needed <= *capacity) return 0;
    Py_ssize_t more = *capacity ? *capacity : 64;
    while (more < needed) more *= 2;
    void *grown = PyMem_Realloc(*items, (size_t)more * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = grown;
    *capacity = more;
    return 0;
}

static void unlink_from_bucket(Memo *memo, memo_entry *entry) {
    memo_entry **link = &memo->buckets[(size_t)entry->hash & memo->mask];
    while (*link != entry) link = &(*link)->next_in_bucket;
    *link = entry->next_in_bucket;
}

static void free_entry(memo_entry *entry, memo_cold *cold) {
    Py_XDECREF(cold->key);
    Py_DECREF(entry->hits);
    PyMem_Free(entry);
}

/* Forget the oldest entry: the first of its bucket's chain (each chain is in insertion order),
 * so unlinking it reads its bucket alone. What forgetting the next one reads is asked for
 * now: its bucket, and the entry after it. */
static void forget_oldest(Memo *memo) {
    memo_entry *oldest = memo->oldest;
    memo_cold *cold = cold_of(oldest);
    unlink_from_bucket(memo, oldest);
    memo->oldest = cold->newer;
    if (memo->oldest == NULL) {
        memo->newest = NULL;
    } else {
        __builtin_prefetch(cold_of(memo->oldest)->newer);
        __builtin_prefetch(&memo->buckets[(size_t)memo->oldest->hash & memo->mask], 1);
    }
    memo->size -= cold->cost;
    memo->count--;
    free_entry(oldest, cold);
}

static int grow(Memo *memo) {
    size_t buckets = (memo->mask + 1) * 2;
    memo_entry **table = PyMem_Calloc(buckets, sizeof(memo_entry *));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* each chain's last link, so entries are added to their chain in insertion order */
    memo_entry ***tails = PyMem_Malloc(buckets * sizeof(memo_entry **));
    if (tails == NULL) {
        PyMem_Free(table);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t b = 0; b < buckets; b++) tails[b] = &table[b];
    PyMem_Free(memo->buckets);
    memo->buckets = table;
    memo->mask = buckets - 1;
    for (memo_entry *e = memo->oldest; e; e = cold_of(e)->newer) {
        size_t b = (size_t)e->hash & memo->mask;
        e->next_in_bucket = NULL;
        *tails[b] = e;
        tails[b] = &e->next_in_bucket;
    }
    PyMem_Free(tails);
    return 0;
}

/* Add an entry of `key` (an object, or NULL for the characters of `text`) of mixed hash
 * `hash`, known not to be there. */
static int add_entry(Memo *memo, PyObject *key, memo_text_t text, long long kind,
                     Py_hash_t hash, PyObject *hits, Py_ssize_t values, Py_ssize_t chars,
                     Py_ssize_t cost) {
    memo->size += cost;
    while (memo->size > memo->max_bytes && memo->oldest != NULL) forget_oldest(memo);
    /* at most one entry per two buckets: a lookup seldom reads an entry not its own */
    if ((size_t)memo->count * 2 > memo->mask && grow(memo) < 0) {
        memo->size -= cost;
        return -1;
    }
    Py_ssize_t length = key == NULL ? text.length : 0;
    int text_kind = key == NULL ? text.kind : 0;
    size_t room = text_room(length, text_kind);
    memo_entry *entry = PyMem_Malloc(sizeof(memo_entry) + room + sizeof(memo_cold));
    if (entry == NULL) {
        memo->size -= cost;
        PyErr_NoMemory();
        return -1;
    }
    *entry = (memo_entry){NULL,  hash, kind, Py_NewRef(hits), values, chars, text_kind,
                          (int32_t)length};
    if (length) memcpy(entry->text, text.data, (size_t)length * (size_t)text_kind);
    *cold_of(entry) = (memo_cold){NULL, Py_XNewRef(key), cost};
    memo_entry **link = &memo->buckets[(size_t)hash & memo->mask];
    while (*link != NULL) link = &(*link)->next_in_bucket; /* just read by the lookup */
    *link = entry;
    if (memo->newest != NULL) cold_of(memo->newest)->newer = entry;
    else memo->oldest = entry;
    memo->newest = entry;
    memo->count++;
    return 0;
}

/* 1 when (a key of mixed hash `hash`), not held, is to be stored now: offered with both of its
 * bits set in the filter of sightings. 0 after setting them. Every offer is noted; the one
 * past an offer per eight bits since the filter was last emptied empties it first. */
static inline int admit(Memo *memo, Py_hash_t hash) {
    memo->offered++;
    size_t low, high;
    sighting_bits(memo, hash, &low, &high);
    uint64_t *a = &memo->sightings[low / 64], *b = &memo->sightings[high / 64];
    uint64_t a_bit = (uint64_t)1 << (low % 64), b_bit = (uint64_t)1 << (high % 64);
    if (++memo->sightings_noted > (Py_ssize_t)((memo->sighting_mask + 1) / 8)) {
        memset(memo->sightings, 0, (memo->sighting_mask + 1) / 8);
        memo->sightings_noted = 1;
    }
    if ((*a & a_bit) && (*b & b_bit)) return 1;
    *a |= a_bit;
    *b |= b_bit;
    return 0;
}

int memo_put_text(Memo *memo, memo_text_t text, long long kind, PyObject *hits,
                  Py_ssize_t values, Py_ssize_t chars, Py_ssize_t size) {
    Py_ssize_t cost = size + MEMO_ENTRY_OVERHEAD;
    Py_hash_t hash = memo_mix(text.hash, kind);
    if (find_text_hashed(memo, text, kind, hash) != NULL || !admit(memo, hash) ||
        cost > memo->max_bytes || text.length > INT32_MAX)
        return 0;
    return add_entry(memo, NULL, text, kind, hash, hits, values, chars, cost);
}

int memo_put(Memo *memo, PyObject *key, long long kind, PyObject *hits, Py_ssize_t values,
             Py_ssize_t chars, Py_ssize_t size) {
    if (PyUnicode_Check(key)) {
        memo_text_t text = memo_text_of(key);
        return memo_put_text(memo, text, kind, hits, values, chars, size);
    }
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return -1;
    return memo_put_object(memo, key, hash, kind, hits, values, chars, size);
}

int memo_put_object(Memo *memo, PyObject *key, Py_hash_t hash, long long kind, PyObject *hits,
                    Py_ssize_t values, Py_ssize_t chars, Py_ssize_t size) {
    Py_ssize_t cost = size + MEMO_ENTRY_OVERHEAD;
    hash = memo_mix(hash, kind);
    if (find_object_hashed(memo, key, kind, hash) != NULL) return 0;
    if (PyErr_Occurred()) return -1;
    if (!admit(memo, hash) || cost > memo->max_bytes) return 0;
    return add_entry(memo, key, (memo_text_t){0}, kind, hash, hits, values, chars, cost);
}

static void memo_clear_all(Memo *memo) {
    while (memo->oldest != NULL) forget_oldest(memo);
    memo->size = 0;
    if (memo->sightings != NULL) memset(memo->sightings, 0, (memo->sighting_mask + 1) / 8);
    memo->sightings_noted = 0;
}

/* Give the memo the filter of sightings a memo of `max_bytes` has (empty), unless it has it. */
static int size_sightings(Memo *memo, Py_ssize_t max_bytes) {
    size_t bits = MEMO_MIN_SIGHTINGS;
    while (bits < (size_t)max_bytes / MEMO_BYTES_PER_SIGHTING) bits *= 2;
    if (memo->sightings != NULL && memo->sighting_mask + 1 == bits) return 0;
    uint64_t *filter = PyMem_Calloc(bits / 64, sizeof(uint64_t));
    if (filter == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(memo->sightings);
    memo->sightings = filter;
    memo->sighting_mask = bits - 1;
    memo->sightings_noted = 0;
    return 0;
}

/* ---- the Python type ------------------------------------------------------------------- */

static int Memo_init(Memo *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"max_bytes", NULL};
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:Memo", kwlist, &max_bytes)) return -1;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "Memo(max_bytes): max_bytes must be 0 or more");
        return -1;
    }
    memo_clear_all(self);
    /* first: a memo with buckets has its sightings (`ready`) */
    if (size_sightings(self, max_bytes) < 0) return -1;
    if (self->buckets == NULL) {
        self->buckets = PyMem_Calloc(MEMO_FIRST_BUCKETS, sizeof(memo_entry *));
        if (self->buckets == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->mask = MEMO_FIRST_BUCKETS - 1;
    }
    self->max_bytes = max_bytes;
    return 0;
}

static void Memo_dealloc(Memo *self) {
    if (self->buckets != NULL) memo_clear_all(self);
    PyMem_Free(self->buckets);
    PyMem_Free(self->sightings);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(Memo *self) {
    if (self->buckets != NULL) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Memo.__init__ was not called");
    return -1;
}

static int parse_kind(PyObject *o, long long *kind) {
    *kind = PyLong_AsLongLong(o);
    return *kind == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *entry_known(memo_entry *e) {
    return Py_BuildValue("(Onn)", e->hits, e->values, e->chars);
}

static PyObject *Memo_get(Memo *self, PyObject *const *args, Py_ssize_t nargs) {
    long long kind;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, kind)");
        return NULL;
    }
    if (ready(self) < 0 || parse_kind(args[1], &kind) < 0) return NULL;
    memo_entry *e = memo_find(self, args[0], kind);
    if (e != NULL) return entry_known(e);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Memo_put(Memo *self, PyObject *const *args, Py_ssize_t nargs) {
    long long kind;
    if (nargs != 6 || !PyFrozenSet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "put(key, kind, hits: frozenset, values: int, chars: int, size: int)");
        return NULL;
    }
    if (ready(self) < 0 || parse_kind(args[1], &kind) < 0) return NULL;
    Py_ssize_t values = PyLong_AsSsize_t(args[3]), chars = PyLong_AsSsize_t(args[4]),
               size = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "put: size must be 0 or more");
        return NULL;
    }
    /* an entry stored is the newest (nothing else changes which one is) */
    memo_entry *newest = self->newest;
    if (memo_put(self, args[0], kind, args[2], values, chars, size) < 0) return NULL;
    return PyBool_FromLong(self->newest != newest);
}

static PyObject *Memo_discard(Memo *self, PyObject *const *args, Py_ssize_t nargs) {
    long long kind;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "discard(key, kind)");
        return NULL;
    }
    if (ready(self) < 0 || parse_kind(args[1], &kind) < 0) return NULL;
    memo_entry *entry = memo_find(self, args[0], kind);
    if (entry == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    unlink_from_bucket(self, entry);
    memo_entry **link = &self->oldest;
    memo_entry *before = NULL;
    while (*link != entry) {
        before = *link;
        link = &cold_of(*link)->newer;
    }
    memo_cold *cold = cold_of(entry);
    *link = cold->newer;
    if (self->newest == entry) self->newest = before;
    self->size -= cold->cost;
    self->count--;
    free_entry(entry, cold);
    Py_RETURN_NONE;
}

static PyObject *Memo_items(Memo *self, PyObject *unused) {
    if (ready(self) < 0) return NULL;
    PyObject *items = PyList_New(0);
    if (items == NULL) return NULL;
    for (memo_entry *e = self->oldest, *newer; e; e = newer) {
        memo_cold *cold = cold_of(e);
        newer = cold->newer;
        PyObject *key = cold->key != NULL ? Py_NewRef(cold->key)
                                          : PyUnicode_FromKindAndData(e->text_kind, e->text,
                                                                      e->text_length);
        PyObject *row = key == NULL ? NULL
                                    : Py_BuildValue("(NL(Onn)n)", key, e->kind, e->hits,
                                                    e->values, e->chars, cold->cost);
        if (row == NULL || PyList_Append(items, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(row);
    }
    return items;
}

static PyObject *Memo_clear(Memo *self, PyObject *unused) {
    memo_clear_all(self);
    Py_RETURN_NONE;
}

static Py_ssize_t Memo_len(Memo *self) { return self->count; }

static PyObject *Memo_get_size(Memo *self, void *closure) { return PyLong_FromSsize_t(self->size); }

static PyObject *Memo_get_offered(Memo *self, void *closure) {
    return PyLong_FromSsize_t(self->offered);
}

static PyObject *Memo_get_sighting_bits(Memo *self, void *closure) {
    return PyLong_FromSize_t(self->sightings == NULL ? 0 : self->sighting_mask + 1);
}

static PyObject *Memo_get_max_bytes(Memo *self, void *closure) {
    return PyLong_FromSsize_t(self->max_bytes);
}

static int Memo_set_max_bytes(Memo *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "max_bytes cannot be deleted");
        return -1;
    }
    Py_ssize_t max_bytes = PyLong_AsSsize_t(value);
    if (max_bytes == -1 && PyErr_Occurred()) return -1;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "max_bytes must be 0 or more");
        return -1;
    }
    if (ready(self) < 0 || size_sightings(self, max_bytes) < 0) return -1;
    self->max_bytes = max_bytes;
    while (self->size > self->max_bytes && self->oldest != NULL) forget_oldest(self);
    return 0;
}

static PyMethodDef Memo_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Memo_get, METH_FASTCALL,
     "get(key, kind) -> (hits, values, chars) | None: what (key, kind) found and cost, if "
     "remembered."},
    {"put", (PyCFunction)(void (*)(void))Memo_put, METH_FASTCALL,
     "put(key, kind, hits, values, chars, size) -> bool: remember it at a cost of size plus the "
     "entry overhead, forgetting the oldest entries as needed, when offered again; whether it "
     "was stored now."},
    {"discard", (PyCFunction)(void (*)(void))Memo_discard, METH_FASTCALL,
     "discard(key, kind): forget (key, kind) if remembered."},
    {"items", (PyCFunction)Memo_items, METH_NOARGS,
     "items() -> [(key, kind, (hits, values, chars), cost)], oldest first."},
    {"clear", (PyCFunction)Memo_clear, METH_NOARGS, "clear(): forget everything."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Memo_getset[] = {
    {"size", (getter)Memo_get_size, NULL, "The bytes of the entries held.", NULL},
    {"offered", (getter)Memo_get_offered, NULL,
     "How many keys not held were ever offered to put: unchanged across a scan when nothing "
     "it read was new.",
     NULL},
    {"sighting_bits", (getter)Memo_get_sighting_bits, NULL,
     "The bits of the filter of keys offered once (a key is stored on its second offer).",
     NULL},
    {"max_bytes", (getter)Memo_get_max_bytes, (setter)Memo_set_max_bytes,
     "The bytes the entries may take; lowering it forgets the oldest at once.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Memo_as_sequence = {.sq_length = (lenfunc)Memo_len};

PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "failsmall.engine._native.Memo",
    .tp_basicsize = sizeof(Memo),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memo(max_bytes): what values, head parts and bodies found and cost, keyed by "
              "(key, kind), forgetting its oldest entries when full.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Memo_init,
    .tp_dealloc = (destructor)Memo_dealloc,
    .tp_methods = Memo_methods,
    .tp_getset = Memo_getset,
    .tp_as_sequence = &Memo_as_sequence,
};
