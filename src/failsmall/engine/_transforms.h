/* The decoding transforms compiled apart from the value scanner (`_transforms.c`): each takes
 * a str and returns a new reference to its result (the value itself when it is unchanged), or
 * NULL with an exception set (only when memory runs out). */
#ifndef FAILSMALL_TRANSFORMS_H
#define FAILSMALL_TRANSFORMS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* `transforms.html_entity_decode`: `html.unescape`, then the loose references in any case. */
PyObject *fs_html_entity_decode(PyObject *value);

/* `bytes[:n].decode("utf-8", "replace")`: a new str, NULL with an exception set (only when
 * memory runs out). */
PyObject *fs_utf8_replace(const char *bytes, Py_ssize_t n);

/* `transforms.base64_decode`: standard or URL-safe base64 to UTF-8 text (with replacement
 * characters); a value that is not base64 passes unchanged. */
PyObject *fs_base64_decode(PyObject *value);

/* Whether the ASCII text `s[:n]` holds an `&` that html.unescape may decode without a `;`
 * after it: a numeric reference or a legacy name (`&para`, `&not`, ...), what
 * `transforms._CHARREF_START_NO_SEMICOLON` finds. */
int fs_legacy_reference_in(const unsigned char *s, Py_ssize_t n);

/* `transforms.normalize_path` of text of any kind (`_normpath.c`). */
PyObject *fs_normalize_path(PyObject *value);

/* Read what `str.lower()` makes of each code point from Python, once, before `fs_lowercase`
 * (`_lowercase.c`); -1 with an exception set. */
int fs_lowercase_tables(void);

/* `str.lower()` of text of two or four bytes a character; NULL with `*special` set and no
 * exception when the text holds a code point whose lowercase is not one character of its
 * kind, or depends on its neighbours (the caller asks Python then). */
PyObject *fs_lowercase(PyObject *value, int *special);

#endif
