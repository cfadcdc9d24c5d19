/* The JSON walk (`_jsonwalk.c`): a body's fields, one by one, to a sink. */
#ifndef FAILSMALL_JSONWALK_H
#define FAILSMALL_JSONWALK_H

#include "_ucs4.h"

/* The statuses: the first four are `failsmall.engine.body.Flattened`'s, the first six
 * `failsmall.engine.body.JsonWalk`'s. */
enum { WALK_COMPLETE = 0, WALK_TOO_MANY = 1, WALK_TOO_DEEP = 2, WALK_TOO_LONG = 3,
       WALK_INVALID = 4, WALK_UNDECIDED = 5, WALK_ERROR = -1 };

/* Text borrowed for one call of a sink: `length` characters of `kind` (a PyUnicode kind) at
 * `data`, not necessarily in the narrowest kind that holds them; `body_at` is where they are in
 * the body's bytes (an ASCII body is walked as its bytes), or NOT_IN_BODY when they are
 * elsewhere (decoded, unescaped or made by the walk), and then live only for the call. */
#define NOT_IN_BODY (-1)
typedef struct {
    int kind;
    const void *data;
    Py_ssize_t length;
    Py_ssize_t body_at;
} json_text_t;

/* Is given each field in document order: its dotted path (`path_length` characters of
 * `path_kind`, a PyUnicode kind, not necessarily the narrowest) and its value (as `json_fields`
 * makes them). Returns 0, or -1 with an exception set to stop the walk. The value comes by
 * address: a 32-byte struct passed by value is copied to the stack in 16-byte loads from the
 * smaller stores that built it, which the processor cannot forward (a stall in every call). */
typedef int (*json_sink_t)(void *context, int path_kind, const void *path,
                           Py_ssize_t path_length, const json_text_t *value);

/* Walk the JSON body `bytes` (as `json_fields` does), giving each field within the limits to
 * `sink`. Returns the walk's status; WALK_ERROR with an exception set (the sink's, or memory).
 * The fields given before INVALID or UNDECIDED are not the body's: the caller drops them. */
int json_walk(const char *bytes, Py_ssize_t length, Py_ssize_t max_values, int max_depth,
              Py_ssize_t max_name_chars, json_sink_t sink, void *context);

#endif
