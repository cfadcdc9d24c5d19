/* `transforms.normalize_path` in C, on text of every kind: backslashes read as slashes, then,
 * when the text holds `/.` or `//` or starts with `.`, `posixpath.normpath` (empty and `.`
 * segments dropped, a `..` segment takes the one before it away) with one leading slash where
 * the text has any, and a trailing slash kept. Tests hold it to the reference on random paths
 * of every kind. */
#include "_transforms.h"

#include "_kind.h"

ALWAYS_INLINE Py_UCS4 path_char(int kind, const void *s, Py_ssize_t i) {
    Py_UCS4 c = text_read(kind, s, i);
    return c == '\\' ? '/' : c;
}

/* Whether the reference normalizes the text (else it only turns backslashes into slashes). */
ALWAYS_INLINE int needs_normpath(int kind, const void *s, Py_ssize_t n) {
    if (n > 0 && text_read(kind, s, 0) == '.') return 1;
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (path_char(kind, s, i) != '/') continue;
        Py_UCS4 next = path_char(kind, s, i + 1);
        if (next == '.' || next == '/') return 1;
    }
    return 0;
}

/* The normalized path of `s[:n]` into `o` (room for n + 2); its length. `starts[j]` is where
 * the j-th kept segment starts in `o`, `up[j]` whether it is `..` (room for n / 2 + 1 each). */
ALWAYS_INLINE Py_ssize_t normpath_into(int kind, const void *s, Py_ssize_t n, void *o,
                                       Py_ssize_t *starts, char *up) {
    int rooted = path_char(kind, s, 0) == '/';
    Py_ssize_t k = 0, kept = 0;
    if (rooted) text_write(kind, o, k++, '/');
    for (Py_ssize_t a = 0; a <= n;) {
        Py_ssize_t b = a;
        while (b < n && path_char(kind, s, b) != '/') b++;
        Py_ssize_t length = b - a;
        int dot = length == 1 && text_read(kind, s, a) == '.';
        int dotdot = length == 2 && text_read(kind, s, a) == '.' && text_read(kind, s, a + 1) == '.';
        if (length == 0 || dot) {
            /* an empty or `.` segment: dropped */
        } else if (!dotdot || (!rooted && kept == 0) || (kept > 0 && up[kept - 1])) {
            if (kept > 0) text_write(kind, o, k++, '/');
            starts[kept] = k;
            up[kept++] = (char)dotdot;
            for (Py_ssize_t i = a; i < b; i++) text_write(kind, o, k++, text_read(kind, s, i));
        } else if (kept > 0) {
            kept--;
            k = kept > 0 ? starts[kept] - 1 : starts[0];
        }
        a = b + 1;
    }
    if (k == 0) text_write(kind, o, k++, '.');
    if (path_char(kind, s, n - 1) == '/' && text_read(kind, o, k - 1) != '/')
        text_write(kind, o, k++, '/');
    return k;
}

ALWAYS_INLINE Py_ssize_t slashes_into(int kind, const void *s, Py_ssize_t n, void *o) {
    for (Py_ssize_t i = 0; i < n; i++) text_write(kind, o, i, path_char(kind, s, i));
    return n;
}

PyObject *fs_normalize_path(PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *s = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int backslash = PyUnicode_FindChar(value, '\\', 0, n, 1) >= 0;
    int normalize = BY_KIND(needs_normpath, kind, s, n);
    if (!backslash && !normalize) return Py_NewRef(value);
    text_out_t t;
    void *o = text_start(&t, value, n + 2);
    if (o == NULL) return NULL;
    if (!normalize) return text_end(&t, value, BY_KIND(slashes_into, kind, s, n, o));
    Py_ssize_t *starts = PyMem_Malloc(((size_t)n / 2 + 1) * sizeof(Py_ssize_t));
    char *up = PyMem_Malloc((size_t)n / 2 + 1);
    if (starts == NULL || up == NULL) {
        PyMem_Free(starts);
        PyMem_Free(up);
        text_drop(&t);
        return PyErr_NoMemory();
    }
    Py_ssize_t k = BY_KIND(normpath_into, kind, s, n, o, starts, up);
    PyMem_Free(starts);
    PyMem_Free(up);
    return text_end(&t, value, k);
}
