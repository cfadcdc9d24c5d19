/* What the cache reads of an origin response's headers, in one pass in C: the response phase
 * (`CachePolicy.on_response`) runs for most GETs, and most responses carry none of the headers
 * it reads. Tests hold it to the Python reference on random names, spellings and values. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Whether `name` (bytes of `length`) is `lowercase` once its ASCII letters are lowercased, as
 * `bytes.lower` does. */
static int is_name(const char *name, Py_ssize_t length, const char *lowercase) {
    if ((size_t)length != strlen(lowercase)) return 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lowercase[i]) return 0;
    }
    return 1;
}

static PyObject *NOTHING_READ; /* ((), (), None, False), made once */

/* cache_headers(headers) -> (cache_control, vary, expires, sets_cookie): see the method table. */
static PyObject *cache_headers(PyObject *module, PyObject *headers) {
    PyObject *seq = PySequence_Fast(headers, "cache_headers(headers: a sequence of (bytes, bytes))");
    if (seq == NULL) return NULL;
    PyObject *cache_control = NULL, *vary = NULL, *expires = NULL, *out = NULL;
    int sets_cookie = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "cache_headers: each header is a (name, value) of bytes");
            goto done;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        const char *s = PyBytes_AS_STRING(name);
        Py_ssize_t length = PyBytes_GET_SIZE(name);
        PyObject **into = NULL;
        if (is_name(s, length, "set-cookie")) {
            sets_cookie = 1;
            continue;
        } else if (is_name(s, length, "cache-control")) {
            into = &cache_control;
        } else if (is_name(s, length, "vary")) {
            into = &vary;
        } else if (is_name(s, length, "expires")) {
            if (expires != NULL) continue; /* the first is read */
            expires = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
            if (expires == NULL) goto done;
            continue;
        } else {
            continue;
        }
        if (*into == NULL && (*into = PyList_New(0)) == NULL) goto done;
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
        if (text == NULL) goto done;
        int err = PyList_Append(*into, text);
        Py_DECREF(text);
        if (err < 0) goto done;
    }
    if (cache_control == NULL && vary == NULL && expires == NULL && !sets_cookie) {
        out = Py_NewRef(NOTHING_READ);
        goto done;
    }
    PyObject *control = cache_control ? PyList_AsTuple(cache_control) : PyTuple_New(0);
    PyObject *varies = vary ? PyList_AsTuple(vary) : PyTuple_New(0);
    if (control != NULL && varies != NULL)
        out = PyTuple_Pack(4, control, varies, expires ? expires : Py_None,
                           sets_cookie ? Py_True : Py_False);
    Py_XDECREF(control);
    Py_XDECREF(varies);
done:
    Py_XDECREF(cache_control);
    Py_XDECREF(vary);
    Py_XDECREF(expires);
    Py_DECREF(seq);
    return out;
}

int cache_headers_init(void) {
    NOTHING_READ = Py_BuildValue("(()()OO)", Py_None, Py_False);
    return NOTHING_READ == NULL ? -1 : 0;
}

PyMethodDef cache_headers_methods[] = {
    {"cache_headers", cache_headers, METH_O,
     "cache_headers(headers) -> (cache_control, vary, expires, sets_cookie): of an origin "
     "response's headers, as (bytes, bytes) pairs, named in any case: the Cache-Control values "
     "and the Vary values in order, latin-1 decoded; the first Expires value, or None; whether "
     "one is Set-Cookie."},
    {NULL, NULL, 0, NULL},
};
