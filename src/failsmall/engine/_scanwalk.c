/* The values of a request part in order, the remembered ones as found and the fresh ones
 * scanned together (`scan_batch_t`), with the work, the stop and the memo they would have if
 * each fresh value were scanned on its own where it comes (as `scan_sources` reads them).
 *
 * Whether a value fits depends only on its values and characters, which are known before its
 * results are scanned: the walk counts them as values are added and stops adding after the
 * first that does not fit, so no value past the stop is transformed or scanned. The hits are
 * charged afterwards, value by value in the same order, by `work_charge`.
 */
#include "_head.h"

int walk_reserve(scan_walk_t *walk, Py_ssize_t values) {
    return array_reserve((void **)&walk->items, &walk->capacity, walk->count + values,
                         sizeof(struct walk_value));
}

static int walk_push(scan_walk_t *walk, struct walk_value item) {
    if (array_reserve((void **)&walk->items, &walk->capacity, walk->count + 1,
                      sizeof(struct walk_value)) < 0)
        return -1;
    walk->items[walk->count++] = item;
    if (!walk_fits(walk, item.found.values, item.found.chars)) return 0;
    walk->values += item.found.values;
    walk->chars += item.found.chars;
    return 1;
}

int walk_known(scan_walk_t *walk, known_t *found) {
    if (walk_join_clean(walk, found->hits, found->values, found->chars)) {
        Py_CLEAR(found->hits);
        return 1;
    }
    int out = walk_push(walk, (struct walk_value){*found, NULL, 0, 0, -1});
    if (out < 0) Py_CLEAR(found->hits);
    found->hits = NULL;
    return out;
}

int walk_fresh(ValueScanner *self, scan_walk_t *walk, PyObject *value, Py_hash_t hash,
               long long targets) {
    Py_ssize_t chars;
    Py_ssize_t index = batch_add(self, &walk->batch, value, targets, &chars);
    if (index < 0) return -1;
    return walk_push(walk,
                     (struct walk_value){{NULL, 1, chars}, Py_NewRef(value), hash, targets, index});
}

/* How many values apart the stages of a put's prefetching run (see `memo_prefetch_put`). */
#define PUT_PREFETCH_DISTANCE 4

/* Remember the short fresh values of `items[0:count]`, in order (their hits in `found.hits`).
 * Each put first reads its bucket's chain and the filter of sightings, which a walk of many
 * values has long since pushed out of the caches: what it reads is asked for a few values
 * ahead. */
static int remember_fresh(struct walk_value *items, Py_ssize_t count, Memo *memo) {
    for (Py_ssize_t i = 0; i < count; i++) {
        for (int stage = 0; stage < 3; stage++) {
            Py_ssize_t ahead = i + PUT_PREFETCH_DISTANCE * (3 - stage);
            if (ahead < count && items[ahead].found.hits != NULL)
                memo_prefetch_put(memo, items[ahead].hash, items[ahead].targets, stage);
        }
        struct walk_value *item = &items[i];
        if (item->found.hits == NULL) continue;
        Py_ssize_t length = PyUnicode_GET_LENGTH(item->value);
        memo_text_t text = {PyUnicode_KIND(item->value), PyUnicode_DATA(item->value), length,
                            item->hash};
        if (memo_put_text(memo, text, item->targets, item->found.hits, 1, item->found.chars,
                          length) < 0)
            return -1;
    }
    return 0;
}

int walk_finish(ValueScanner *self, scan_walk_t *walk, Memo *memo, work_t *w) {
    if (batch_scan(self, &walk->batch) < 0) return -1;
    Py_ssize_t i = 0;
    for (; i < walk->count; i++) {
        struct walk_value *item = &walk->items[i];
        known_t found = item->found;
        item->found.hits = NULL;
        if (item->value != NULL) {
            found.hits = batch_hits(self, &walk->batch, item->index);
            if (found.hits == NULL) return -1;
            /* kept to remember (a short value) */
            if (PyUnicode_GET_LENGTH(item->value) <= MEMO_MAX_VALUE)
                item->found = (known_t){Py_NewRef(found.hits), 1, found.chars};
        }
        int fit = work_charge(w, &found);
        if (fit < 0) return -1;
        if (fit == 0) {
            i++; /* the value stopped at is remembered too */
            break;
        }
    }
    return remember_fresh(walk->items, i, memo);
}

void walk_free(scan_walk_t *walk) {
    for (Py_ssize_t i = 0; i < walk->count; i++) {
        Py_XDECREF(walk->items[i].found.hits);
        Py_XDECREF(walk->items[i].value);
    }
    PyMem_Free(walk->items);
    batch_free(&walk->batch);
    *walk = (scan_walk_t){0};
}
