/* A strict JSON (RFC 8259) parser producing a small DOM, for safetensors headers.
 *
 * Strict means: one value only, no trailing commas, no comments, no leading zeros, no NaN, no
 * control characters inside strings, strings must be valid UTF-8 and \u escapes must pair
 * surrogates correctly (as serde_json, which the reference safetensors uses, demands). */
#include "io_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t len, pos;
    json_doc *doc;
    size_t nodes_cap, strings_cap;
    char *msg;
    size_t msglen;
    bool oom;
} parser;

static bool fail(parser *p, const char *what) {
    if (p->msg && p->msglen) snprintf(p->msg, p->msglen, "%s at byte %zu", what, p->pos);
    return false;
}

static bool grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *nb = realloc(*buf, c * elem);
    if (!nb) return false;
    *buf = nb;
    *cap = c;
    return true;
}

static int32_t new_node(parser *p, json_type t) {
    json_doc *d = p->doc;
    if (d->n_nodes >= JSON_MAX_NODES) {
        fail(p, "too many JSON values");
        return -1;
    }
    if (!grow((void **)&d->nodes, &p->nodes_cap, (size_t)d->n_nodes + 1, sizeof(json_node))) {
        p->oom = true;
        return -1;
    }
    json_node *n = &d->nodes[d->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = t;
    n->first_child = n->next = -1;
    return d->n_nodes++;
}

static bool put_bytes(parser *p, const char *b, size_t n) {
    json_doc *d = p->doc;
    if (!grow((void **)&d->strings, &p->strings_cap, d->strings_len + n, 1)) {
        p->oom = true;
        return false;
    }
    memcpy(d->strings + d->strings_len, b, n);
    d->strings_len += n;
    return true;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + i]);
        if (h < 0) return fail(p, "invalid hex digit in \\u escape");
        v = (v << 4) | (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static bool put_utf8(parser *p, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    return put_bytes(p, b, n);
}

/* Parses a string at p->pos (the opening quote) and appends its decoded, NUL-terminated text
 * to the string table; *off and *len locate it. */
static bool parse_string(parser *p, size_t *off, size_t *len) {
    p->pos++; /* opening quote */
    size_t start = p->doc->strings_len;
    for (;;) {
        size_t run = p->pos;
        while (p->pos < p->len) {
            unsigned char c = (unsigned char)p->s[p->pos];
            if (c == '"' || c == '\\' || c < 0x20) break;
            p->pos++;
        }
        if (p->pos > run) {
            if (!io_utf8_valid((const unsigned char *)p->s + run, p->pos - run)) {
                p->pos = run;
                return fail(p, "invalid UTF-8 in string");
            }
            if (!put_bytes(p, p->s + run, p->pos - run)) return false;
        }
        if (p->pos >= p->len) return fail(p, "unterminated string");
        char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c != '\\') return fail(p, "control character in string");
        p->pos++;
        if (p->pos >= p->len) return fail(p, "unterminated string");
        char e = p->s[p->pos++];
        char out;
        switch (e) {
        case '"':
            out = '"';
            break;
        case '\\':
            out = '\\';
            break;
        case '/':
            out = '/';
            break;
        case 'b':
            out = '\b';
            break;
        case 'f':
            out = '\f';
            break;
        case 'n':
            out = '\n';
            break;
        case 'r':
            out = '\r';
            break;
        case 't':
            out = '\t';
            break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(p, &cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return fail(p, "lone high surrogate in \\u escape");
                p->pos += 2;
                if (!read_hex4(p, &lo)) return false;
                if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "invalid surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (!put_utf8(p, cp)) return false;
            continue;
        }
        default:
            p->pos--;
            return fail(p, "invalid escape in string");
        }
        if (!put_bytes(p, &out, 1)) return false;
    }
    *off = start;
    *len = p->doc->strings_len - start;
    return put_bytes(p, "", 1);
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool parse_number(parser *p, json_node *n) {
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "invalid number");
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && is_digit(p->s[p->pos])) return fail(p, "leading zero in number");
    } else {
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "invalid number");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "invalid number");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    n->val = (uint32_t)start;
    n->val_len = (uint32_t)(p->pos - start);
    return true;
}

static bool parse_literal(parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->len - p->pos < k || memcmp(p->s + p->pos, word, k) != 0)
        return fail(p, "invalid literal");
    p->pos += k;
    return true;
}

static bool parse_value(parser *p, int depth, int32_t *out);

/* Appends child to parent's list; *last tracks the previous sibling. */
static void link_child(parser *p, int32_t parent, int32_t *last, int32_t child) {
    json_node *nodes = p->doc->nodes;
    if (*last < 0) {
        nodes[parent].first_child = child;
    } else {
        nodes[*last].next = child;
    }
    *last = child;
    nodes[parent].count++;
}

static bool parse_array(parser *p, int depth, int32_t self) {
    p->pos++; /* [ */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return true;
    }
    int32_t last = -1;
    for (;;) {
        int32_t child;
        if (!parse_value(p, depth + 1, &child)) return false;
        link_child(p, self, &last, child);
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, "unterminated array");
        char c = p->s[p->pos++];
        if (c == ']') return true;
        if (c != ',') {
            p->pos--;
            return fail(p, "expected ',' or ']' in array");
        }
    }
}

static bool parse_object(parser *p, int depth, int32_t self) {
    p->pos++; /* { */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return true;
    }
    int32_t last = -1;
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a string key");
        size_t koff, klen;
        if (!parse_string(p, &koff, &klen)) return false;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "expected ':' after key");
        p->pos++;
        int32_t child;
        if (!parse_value(p, depth + 1, &child)) return false;
        p->doc->nodes[child].key = (uint32_t)koff;
        p->doc->nodes[child].key_len = (uint32_t)klen;
        link_child(p, self, &last, child);
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, "unterminated object");
        char c = p->s[p->pos++];
        if (c == '}') return true;
        if (c != ',') {
            p->pos--;
            return fail(p, "expected ',' or '}' in object");
        }
    }
}

static bool parse_value(parser *p, int depth, int32_t *out) {
    if (depth > JSON_MAX_DEPTH) return fail(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of input");
    char c = p->s[p->pos];
    json_type t;
    switch (c) {
    case '{':
        t = JSON_OBJECT;
        break;
    case '[':
        t = JSON_ARRAY;
        break;
    case '"':
        t = JSON_STRING;
        break;
    case 't':
        t = JSON_TRUE;
        break;
    case 'f':
        t = JSON_FALSE;
        break;
    case 'n':
        t = JSON_NULL;
        break;
    default:
        if (c == '-' || is_digit(c)) {
            t = JSON_NUMBER;
            break;
        }
        return fail(p, "unexpected character");
    }
    int32_t self = new_node(p, t);
    if (self < 0) return false;
    *out = self;
    switch (t) {
    case JSON_OBJECT:
        return parse_object(p, depth, self);
    case JSON_ARRAY:
        return parse_array(p, depth, self);
    case JSON_STRING: {
        size_t off, len;
        if (!parse_string(p, &off, &len)) return false;
        p->doc->nodes[self].val = (uint32_t)off;
        p->doc->nodes[self].val_len = (uint32_t)len;
        return true;
    }
    case JSON_TRUE:
        return parse_literal(p, "true");
    case JSON_FALSE:
        return parse_literal(p, "false");
    case JSON_NULL:
        return parse_literal(p, "null");
    case JSON_NUMBER:
        return parse_number(p, &p->doc->nodes[self]);
    }
    return false;
}

bool json_parse(const char *text, size_t len, json_doc *doc, char *msg, size_t msglen) {
    assert(len < ((size_t)1 << 31));
    memset(doc, 0, sizeof *doc);
    doc->src = text;
    parser p = {.s = text, .len = len, .doc = doc, .msg = msg, .msglen = msglen};
    int32_t root;
    bool ok = parse_value(&p, 0, &root);
    if (ok) {
        skip_ws(&p);
        if (p.pos != len) ok = fail(&p, "unexpected data after the JSON value");
    }
    if (p.oom) {
        if (msg && msglen) snprintf(msg, msglen, "out of memory parsing JSON");
        ok = false;
    }
    if (!ok) {
        json_free(doc);
        doc->src = NULL;
    }
    return ok;
}

void json_free(json_doc *doc) {
    if (!doc) return;
    free(doc->nodes);
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

const char *json_key(const json_doc *doc, const json_node *n) {
    return doc->strings + n->key;
}

const char *json_str(const json_doc *doc, const json_node *n) {
    return doc->strings + n->val;
}

bool json_u64(const json_doc *doc, const json_node *n, uint64_t *out) {
    if (n->type != JSON_NUMBER) return false;
    const char *s = doc->src + n->val;
    uint64_t v = 0;
    for (size_t i = 0; i < n->val_len; i++) {
        if (!is_digit(s[i])) return false; /* '-', '.', 'e' */
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
