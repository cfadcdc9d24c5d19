/* NFKC in C for the value scanner (`_nfkc.c`): what `unicodedata.normalize("NFKC", value)`
 * returns, computed without normalizing the whole value. */
#ifndef FAILSMALL_NFKC_H
#define FAILSMALL_NFKC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The NFKC form of `value`: a new reference, `value` itself when NFKC leaves it as it is, or
 * NULL with an exception set. `normalize` is `unicodedata.normalize` and `form` the string
 * "NFKC": what pieces with combining characters are handed to. */
PyObject *fs_nfkc(PyObject *value, PyObject *normalize, PyObject *form);

/* Fill the look-up tables of `fs_nfkc` for Latin-1 characters; once, when the module loads,
 * before any call of `fs_nfkc`. */
void fs_nfkc_tables(void);

#endif
