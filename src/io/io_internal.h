/* Helpers shared by the io sources (not installed, not part of the public API). */
#ifndef NS_IO_INTERNAL_H
#define NS_IO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats a message into err[errlen] (no-op when err is NULL or errlen is 0); returns false so
 * that callers can write `return io_err(err, errlen, ...)`. */
bool io_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* True when s[0..len) is valid UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
bool io_utf8_valid(const unsigned char *s, size_t len);

/* ---- strict JSON (RFC 8259) DOM --------------------------------------------------------- */

typedef enum {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

/* Node of a parsed document (32 bytes: a header of at most 100 MB fits 32-bit offsets).
 * Children of arrays and objects are chained by index. */
typedef struct json_node {
    json_type type;
    int32_t first_child; /* -1 when none */
    int32_t next;        /* next sibling, -1 when none */
    int32_t count;       /* number of children (arrays, objects) */
    uint32_t key;        /* object members: offset of the decoded key in json_doc.strings */
    uint32_t key_len;    /* object members: key length in bytes */
    uint32_t val;        /* strings: offset of the decoded text in json_doc.strings;
                            numbers: offset of the literal in the source text */
    uint32_t val_len;    /* its length in bytes (a string may contain NUL from \u0000) */
} json_node;

typedef struct json_doc {
    json_node *nodes; /* nodes[0] is the root */
    int32_t n_nodes;
    char *strings; /* decoded strings and keys, each NUL-terminated */
    size_t strings_len;
    const char *src; /* the parsed text (borrowed) */
} json_doc;

/* Parses text[0..len) (len < 2^31) as exactly one JSON value, surrounded by optional
 * whitespace. Nesting is limited to 64 levels and the document to JSON_MAX_NODES values, so a
 * hostile header cannot make the DOM much larger than 128 MB. On failure writes
 * "<reason> at byte <offset>" into msg[msglen]. */
#define JSON_MAX_NODES (1 << 22)
bool json_parse(const char *text, size_t len, json_doc *doc, char *msg, size_t msglen);

/* Releases a document (NULL-safe). */
void json_free(json_doc *doc);

/* Decoded key / string of a node (NUL-terminated). */
const char *json_key(const json_doc *doc, const json_node *n);
const char *json_str(const json_doc *doc, const json_node *n);

/* Reads a number node holding a non-negative integer without fraction or exponent that fits in
 * uint64_t (the values a Rust usize field accepts). */
bool json_u64(const json_doc *doc, const json_node *n, uint64_t *out);

#endif
