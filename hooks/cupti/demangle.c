/* A small Itanium C++ ABI demangler for GPU kernel names (see collect.h: ns_demangle).
 *
 * It parses the mangled name into a tree of nodes (names, template arguments, types with their
 * qualifiers, pointers and references, function and array types, literals, a few expressions),
 * keeping the ABI's substitution table and template-parameter references, and prints the tree the
 * way binutils' c++filt does: "void tk<float, 256, true>(float const*, float*)". Anything outside
 * the supported grammar makes the whole parse fail (NULL: the caller keeps the mangled name); it
 * never prints half a name. Inputs are bounded (length, nodes, recursion depth), so a hostile or
 * corrupt name costs little and cannot overflow the stack.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect.h"

#define MAX_INPUT 16384 /* longer names are left mangled */
#define MAX_DEPTH 200   /* parser recursion */

typedef enum {
    N_NAME,     /* s: plain text (identifier, builtin type, "std::string") */
    N_NESTED,   /* a::b */
    N_TEMPLATE, /* a<list> */
    N_QUAL,     /* a with cv-qualifiers (flags: 1 const, 2 volatile, 4 restrict) */
    N_PTR,      /* a* */
    N_LREF,     /* a& */
    N_RREF,     /* a&& */
    N_FUNC,     /* a = return type (may be NULL), list = params, flags = cv, ref in s */
    N_ARRAY,    /* a = element, s = dimension text */
    N_MEMPTR,   /* a = class, b = member type */
    N_VECTOR,   /* a = element, s = count */
    N_LITERAL,  /* s = value as printed (256, 1u, true); a = type printed before it: (char)65 */
    N_UNARY,    /* s = operator, a = operand: op(a) */
    N_BINARY,   /* s = operator, a, b: (a)op(b) */
    N_PACK,     /* list: template argument pack */
    N_EXPAND,   /* a = pattern (Dp): expands the pack it references */
    N_TPARAM,   /* a = the template argument it stands for */
    N_LOCAL,    /* a = enclosing function encoding, b = entity: a::b */
    N_LAMBDA,   /* list = params, s = "#N": {lambda(params)#N} */
    N_DTOR,     /* a = class name: ~name */
    N_ENCODING, /* a = name, b = return type (NULL unless a template function), list = params,
                   flags = cv of a member function; has_type = false for data names */
} node_kind;

typedef struct node node;
struct node {
    node_kind k;
    int flags;
    bool has_type;
    const char *s; /* text, owned by the parser's string arena or static */
    node *a, *b;
    node **list;
    int n;
};

typedef struct {
    const char *p, *end;
    int depth;
    bool fail;
    /* every allocation of the parse, freed at the end */
    void **allocs;
    int n_allocs, cap_allocs;
    node **subs;
    int n_subs, cap_subs;
    node **targs; /* template arguments that T_ refers to */
    int n_targs;
} parser;

typedef struct {
    char *buf;
    size_t len, cap;
    bool fail;
    /* pack expansion in progress: the pack and the element printed */
    const node *pack;
    int pack_index;
} out;

/* ------------------------------------------------------------------ memory */

static void *palloc(parser *p, size_t n) {
    if (p->fail) return NULL;
    if (p->n_allocs == p->cap_allocs) {
        int cap = p->cap_allocs ? p->cap_allocs * 2 : 64;
        void **a = realloc(p->allocs, sizeof *a * (size_t)cap);
        if (!a) {
            p->fail = true;
            return NULL;
        }
        p->allocs = a;
        p->cap_allocs = cap;
    }
    void *m = calloc(1, n);
    if (!m) {
        p->fail = true;
        return NULL;
    }
    p->allocs[p->n_allocs++] = m;
    return m;
}

static node *mk(parser *p, node_kind k) {
    node *n = palloc(p, sizeof *n);
    if (n) n->k = k;
    return n;
}

static char *pstrndup(parser *p, const char *s, size_t len) {
    char *d = palloc(p, len + 1);
    if (d) memcpy(d, s, len);
    return d;
}

static node *mk_name(parser *p, const char *s, size_t len) {
    node *n = mk(p, N_NAME);
    if (n) n->s = pstrndup(p, s, len);
    return n && n->s ? n : NULL;
}

static node *mk_static(parser *p, const char *s) {
    node *n = mk(p, N_NAME);
    if (n) n->s = s;
    return n;
}

static bool list_add(parser *p, node ***list, int *n, int *cap, node *x) {
    if (!x || p->fail) return false;
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 8;
        node **l = palloc(p, sizeof *l * (size_t)c);
        if (!l) return false;
        if (*n) memcpy(l, *list, sizeof *l * (size_t)*n);
        *list = l;
        *cap = c;
    }
    (*list)[(*n)++] = x;
    return true;
}

static void add_sub(parser *p, node *x) {
    if (!x) {
        p->fail = true;
        return;
    }
    list_add(p, &p->subs, &p->n_subs, &p->cap_subs, x);
}

/* ------------------------------------------------------------------ lexing */

static char peek(const parser *p) {
    return p->p < p->end ? *p->p : 0;
}

static char peek2(const parser *p) {
    return p->p + 1 < p->end ? p->p[1] : 0;
}

static bool eat(parser *p, char c) {
    if (peek(p) != c) return false;
    p->p++;
    return true;
}

static bool eat2(parser *p, const char *s) {
    if (peek(p) != s[0] || peek2(p) != s[1]) return false;
    p->p += 2;
    return true;
}

static node *failed(parser *p) {
    p->fail = true;
    return NULL;
}

/* <number> ::= [n] <decimal>; returns false when no digit follows. */
static bool number(parser *p, long *v, bool allow_neg) {
    bool neg = allow_neg && eat(p, 'n');
    if (!isdigit((unsigned char)peek(p))) return false;
    long x = 0;
    while (isdigit((unsigned char)peek(p))) {
        if (x > 100000000L) return false;
        x = x * 10 + (*p->p++ - '0');
    }
    *v = neg ? -x : x;
    return true;
}

/* <seq-id> in base 36 followed by '_'; S_ is 0, S0_ is 1. */
static bool seq_id(parser *p, long *v) {
    if (eat(p, '_')) {
        *v = 0;
        return true;
    }
    long x = 0;
    while (isdigit((unsigned char)peek(p)) || isupper((unsigned char)peek(p))) {
        char c = *p->p++;
        if (x > 10000000L) return false;
        x = x * 36 + (isdigit((unsigned char)c) ? c - '0' : c - 'A' + 10);
    }
    if (!eat(p, '_')) return false;
    *v = x + 1;
    return true;
}

/* ------------------------------------------------------------------ grammar */

static node *type(parser *p);
static node *encoding(parser *p, bool top);
static node *name(parser *p, node **targs_out, int *cv_out);
static node *template_args(parser *p);
static node *expression(parser *p);

static bool enter(parser *p) {
    if (++p->depth > MAX_DEPTH) {
        p->fail = true;
        return false;
    }
    return !p->fail;
}

#define ENTER()                                                                                    \
    do {                                                                                           \
        if (!enter(p)) {                                                                           \
            p->depth--;                                                                            \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)
#define LEAVE(v)                                                                                   \
    do {                                                                                           \
        p->depth--;                                                                                \
        return p->fail ? NULL : (v);                                                               \
    } while (0)

/* <source-name> ::= <length> <identifier> */
static node *source_name(parser *p) {
    long len;
    if (!number(p, &len, false) || len <= 0 || len > p->end - p->p) return failed(p);
    const char *s = p->p;
    p->p += len;
    if (len >= 10 && !strncmp(s, "_GLOBAL__N", 10)) return mk_static(p, "(anonymous namespace)");
    return mk_name(p, s, (size_t)len);
}

typedef struct {
    const char code[3];
    const char *op;
    int arity;
} op_info;

/* Operators as names (operator+) and in expressions. */
static const op_info ops[] = {
    {"nw", "new", 1}, {"na", "new[]", 1}, {"dl", "delete", 1}, {"da", "delete[]", 1},
    {"ps", "+", 1},   {"ng", "-", 1},     {"ad", "&", 1},      {"de", "*", 1},
    {"co", "~", 1},   {"pl", "+", 2},     {"mi", "-", 2},      {"ml", "*", 2},
    {"dv", "/", 2},   {"rm", "%", 2},     {"an", "&", 2},      {"or", "|", 2},
    {"eo", "^", 2},   {"aS", "=", 2},     {"pL", "+=", 2},     {"mI", "-=", 2},
    {"mL", "*=", 2},  {"dV", "/=", 2},    {"rM", "%=", 2},     {"aN", "&=", 2},
    {"oR", "|=", 2},  {"eO", "^=", 2},    {"ls", "<<", 2},     {"rs", ">>", 2},
    {"lS", "<<=", 2}, {"rS", ">>=", 2},   {"eq", "==", 2},     {"ne", "!=", 2},
    {"lt", "<", 2},   {"gt", ">", 2},     {"le", "<=", 2},     {"ge", ">=", 2},
    {"ss", "<=>", 2}, {"nt", "!", 1},     {"aa", "&&", 2},     {"oo", "||", 2},
    {"pp", "++", 1},  {"mm", "--", 1},    {"cm", ",", 2},      {"pm", "->*", 2},
    {"pt", "->", 2},  {"cl", "()", 2},    {"ix", "[]", 2},
};

static const op_info *find_op(const parser *p) {
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (peek(p) == ops[i].code[0] && peek2(p) == ops[i].code[1]) return &ops[i];
    return NULL;
}

/* <operator-name> as the name of a function: "operator+", "operator int". */
static node *operator_name(parser *p) {
    if (eat2(p, "cv")) {
        node *t = type(p);
        if (!t) return failed(p);
        node *n = mk(p, N_UNARY);
        if (!n) return NULL;
        n->s = "operator ";
        n->a = t;
        n->flags = 1; /* print without parentheses */
        return n;
    }
    const op_info *o = find_op(p);
    if (!o) return failed(p);
    p->p += 2;
    size_t len = strlen(o->op);
    char *s = palloc(p, len + 10);
    if (!s) return NULL;
    snprintf(s, len + 10, "operator%s%s", isalpha((unsigned char)o->op[0]) ? " " : "", o->op);
    return mk_static(p, s);
}

/* Closure and unnamed types: Ul <params> E [<number>] _  /  Ut [<number>] _ */
static node *unnamed_type(parser *p) {
    if (eat2(p, "Ut")) {
        long v = -1;
        number(p, &v, false);
        if (!eat(p, '_')) return failed(p);
        char *s = palloc(p, 48);
        if (!s) return NULL;
        snprintf(s, 48, "{unnamed type#%ld}", v + 2);
        return mk_static(p, s);
    }
    if (!eat2(p, "Ul")) return failed(p);
    node *n = mk(p, N_LAMBDA);
    if (!n) return NULL;
    int cap = 0;
    if (peek(p) == 'v' && peek2(p) == 'E')
        p->p++;
    else {
        while (!p->fail && peek(p) != 'E' && peek(p)) list_add(p, &n->list, &n->n, &cap, type(p));
    }
    if (!eat(p, 'E')) return failed(p);
    long v = -1;
    number(p, &v, false);
    if (!eat(p, '_')) return failed(p);
    char *s = palloc(p, 32);
    if (!s) return NULL;
    snprintf(s, 32, "#%ld", v + 2);
    n->s = s;
    return n;
}

/* <unqualified-name>: source name, operator, closure or unnamed type. 'L' (internal linkage)
 * before a source name is skipped, as c++filt does. */
static node *unqualified_name(parser *p) {
    eat(p, 'L');
    char c = peek(p);
    node *n;
    if (isdigit((unsigned char)c))
        n = source_name(p);
    else if (c == 'U')
        n = unnamed_type(p);
    else if (islower((unsigned char)c))
        n = operator_name(p);
    else
        return failed(p);
    while (n && n->k == N_NAME && peek(p) == 'B') { /* ABI tags: name[abi:cxx11] */
        p->p++;
        node *tag = source_name(p);
        if (!tag) return NULL;
        size_t a = strlen(n->s), b = strlen(tag->s);
        char *s = palloc(p, a + b + 8);
        if (!s) return NULL;
        snprintf(s, a + b + 8, "%s[abi:%s]", n->s, tag->s);
        n = mk_static(p, s);
    }
    return n;
}

/* <substitution>: S_, S<seq-id>_ and the std:: abbreviations. */
static node *substitution(parser *p) {
    if (!eat(p, 'S')) return failed(p);
    static const struct {
        char c;
        const char *s;
    } abbr[] = {
        {'a', "std::allocator"},
        {'b', "std::basic_string"},
        {'s', "std::basic_string<char, std::char_traits<char>, std::allocator<char> >"},
        {'i', "std::basic_istream<char, std::char_traits<char> >"},
        {'o', "std::basic_ostream<char, std::char_traits<char> >"},
        {'d', "std::basic_iostream<char, std::char_traits<char> >"},
    };
    for (size_t i = 0; i < sizeof abbr / sizeof abbr[0]; i++)
        if (eat(p, abbr[i].c)) return mk_static(p, abbr[i].s);
    long id;
    if (!seq_id(p, &id) || id >= p->n_subs) return failed(p);
    return p->subs[id];
}

/* <template-param> ::= T_ | T <number> _ ; resolved against the current template arguments. */
static node *template_param(parser *p) {
    if (!eat(p, 'T')) return failed(p);
    long id = 0;
    if (!eat(p, '_')) {
        if (!number(p, &id, false) || !eat(p, '_')) return failed(p);
        id++;
    }
    if (id >= p->n_targs) return failed(p);
    node *n = mk(p, N_TPARAM);
    if (n) n->a = p->targs[id];
    return n;
}

/* Adds a component to a nested name being built. */
static node *nest(parser *p, node *prefix, node *comp) {
    if (!prefix) return comp;
    node *n = mk(p, N_NESTED);
    if (!n) return NULL;
    n->a = prefix;
    n->b = comp;
    return n;
}

/* The identifier of the last component of a name, for constructors and destructors. */
static node *last_component(node *n) {
    while (n && (n->k == N_NESTED || n->k == N_TEMPLATE)) n = n->k == N_NESTED ? n->b : n->a;
    return n;
}

/* The name a constructor or destructor of the class named by prefix prints: the identifier
 * without scope or template arguments ("allocator" for std::allocator<char>). */
static node *class_name(parser *p, node *prefix) {
    node *last = last_component(prefix);
    if (!last || last->k != N_NAME) return NULL;
    const char *s = last->s, *c;
    while ((c = strstr(s, "::")) && (!strchr(s, '<') || c < strchr(s, '<'))) s = c + 2;
    size_t len = strcspn(s, "<");
    return mk_name(p, s, len);
}

/* <nested-name> ::= N [<CV-qualifiers>] [<ref-qualifier>] <prefix> <unqualified-name> E */
static node *nested_name(parser *p, node **targs_out, int *cv_out) {
    ENTER();
    if (!eat(p, 'N')) return failed(p);
    int cv = 0;
    for (;;) {
        if (eat(p, 'r'))
            cv |= 4;
        else if (eat(p, 'V'))
            cv |= 2;
        else if (eat(p, 'K'))
            cv |= 1;
        else
            break;
    }
    if (eat(p, 'R'))
        cv |= 8;
    else if (eat(p, 'O'))
        cv |= 16;
    if (cv_out) *cv_out = cv;
    node *sofar = NULL, *last_args = NULL;
    while (!p->fail && !eat(p, 'E')) {
        char c = peek(p);
        last_args = NULL;
        if (c == 0) {
            failed(p);
            break;
        }
        if (c == 'S' && peek2(p) == 't') {
            p->p += 2;
            sofar = nest(p, sofar, mk_static(p, "std"));
            continue; /* std:: alone is not a substitution candidate */
        } else if (c == 'S') {
            if (sofar) {
                failed(p);
                break;
            }
            sofar = substitution(p);
            continue; /* a substitution is not added again */
        } else if (c == 'T') {
            if (sofar) {
                failed(p);
                break;
            }
            sofar = template_param(p);
        } else if (c == 'I') {
            if (!sofar) {
                failed(p);
                break;
            }
            node *args = template_args(p);
            node *t = mk(p, N_TEMPLATE);
            if (!t || !args) break;
            t->a = sofar;
            t->b = args;
            sofar = t;
            last_args = args;
        } else if (c == 'C' && peek2(p) != 0 && strchr("12345", peek2(p))) {
            p->p += 2;
            node *cls = class_name(p, sofar);
            if (!cls) {
                failed(p);
                break;
            }
            cls->flags = 2; /* a constructor: no return type even with template args */
            sofar = nest(p, sofar, cls);
        } else if (c == 'D' && peek2(p) != 0 && strchr("01245", peek2(p))) {
            p->p += 2;
            node *cls = class_name(p, sofar), *d = mk(p, N_DTOR);
            if (!cls || !d) {
                failed(p);
                break;
            }
            d->a = cls;
            sofar = nest(p, sofar, d);
        } else if (c == 'M') {
            p->p++; /* <data-member-prefix>: the closure's scope, nothing to print */
            continue;
        } else {
            sofar = nest(p, sofar, unqualified_name(p));
        }
        if (!sofar) {
            failed(p);
            break;
        }
        if (peek(p) != 'E') add_sub(p, sofar);
    }
    if (targs_out) *targs_out = last_args;
    LEAVE(sofar);
}

/* <local-name> ::= Z <encoding> E <entity name> [<discriminator>] | Z <encoding> E s [...] */
static node *local_name(parser *p, node **targs_out, int *cv_out) {
    ENTER();
    if (!eat(p, 'Z')) return failed(p);
    node *enc = encoding(p, false);
    if (!enc || !eat(p, 'E')) return failed(p);
    node *ent;
    if (eat(p, 's'))
        ent = mk_static(p, "string literal");
    else if (peek(p) == 'd')
        return failed(p); /* default-argument scopes: not supported */
    else
        ent = name(p, targs_out, cv_out);
    if (!ent) return failed(p);
    /* <discriminator> ::= _ <digit> | __ <number> _ : not printed */
    if (eat(p, '_')) {
        long v;
        if (eat(p, '_')) {
            if (!number(p, &v, false) || !eat(p, '_')) return failed(p);
        } else if (!isdigit((unsigned char)peek(p))) {
            return failed(p);
        } else {
            p->p++;
        }
    }
    node *n = mk(p, N_LOCAL);
    if (n) {
        n->a = enc;
        n->b = ent;
    }
    LEAVE(n);
}

/* <name>; *targs_out receives the template arguments of the last component (NULL if none),
 * *cv_out the qualifiers of a member function (1 const, 2 volatile, 4 restrict, 8 &, 16 &&). */
static node *name(parser *p, node **targs_out, int *cv_out) {
    ENTER();
    node *n = NULL, *args = NULL;
    if (cv_out) *cv_out = 0;
    char c = peek(p);
    if (c == 'N') {
        n = nested_name(p, &args, cv_out);
    } else if (c == 'Z') {
        n = local_name(p, &args, cv_out);
    } else {
        bool from_sub = false;
        if (c == 'S' && peek2(p) == 't') {
            p->p += 2;
            n = nest(p, mk_static(p, "std"), unqualified_name(p));
        } else if (c == 'S') {
            n = substitution(p);
            from_sub = true;
            if (peek(p) != 'I') return failed(p); /* a substitution used as a name is a template */
        } else {
            n = unqualified_name(p);
        }
        if (n && peek(p) == 'I') {
            if (!from_sub) add_sub(p, n); /* <unscoped-template-name> */
            args = template_args(p);
            node *t = mk(p, N_TEMPLATE);
            if (!t || !args) return failed(p);
            t->a = n;
            t->b = args;
            n = t;
        }
    }
    if (targs_out) *targs_out = args;
    LEAVE(n);
}

/* The suffix of an integer literal of builtin type tn (256u), or NULL: printed as (type)v. */
static const char *suffix_of(const char *tn) {
    static const struct {
        const char *type, *suffix;
    } sfx[] = {{"int", ""},         {"unsigned int", "u"},
               {"long", "l"},       {"unsigned long", "ul"},
               {"long long", "ll"}, {"unsigned long long", "ull"}};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (!strcmp(tn, sfx[i].type)) return sfx[i].suffix;
    return NULL;
}

/* <expr-primary> ::= L <type> <value> E | L _Z <encoding> E */
static node *expr_primary(parser *p) {
    ENTER();
    if (!eat(p, 'L')) return failed(p);
    node *n;
    if (eat2(p, "_Z")) {
        n = encoding(p, false);
    } else {
        node *t = type(p);
        if (!t) return failed(p);
        const char *tn = t->k == N_NAME ? t->s : "";
        bool neg = eat(p, 'n');
        const char *v = p->p;
        while (isdigit((unsigned char)peek(p))) p->p++;
        size_t vl = (size_t)(p->p - v);
        if (!vl) {
            if (!strcmp(tn, "decltype(nullptr)")) {
                n = mk_static(p, "nullptr");
                goto done;
            }
            return failed(p); /* floating literals (hex), string literals */
        }
        char *s = palloc(p, vl + strlen(tn) + 8);
        if (!s) return NULL;
        if (!strcmp(tn, "bool") && vl == 1 && (*v == '0' || *v == '1') && !neg) {
            strcpy(s, *v == '1' ? "true" : "false");
        } else {
            const char *suffix = suffix_of(tn);
            if (suffix)
                snprintf(s, vl + strlen(tn) + 8, "%s%.*s%s", neg ? "-" : "", (int)vl, v, suffix);
            else
                snprintf(s, vl + strlen(tn) + 8, "%s%.*s", neg ? "-" : "", (int)vl, v);
        }
        n = mk(p, N_LITERAL);
        if (n) {
            n->s = s;
            if (strcmp(tn, "bool") && !suffix_of(tn)) n->a = t; /* printed as (type)value */
        }
    }
done:
    if (!n || !eat(p, 'E')) return failed(p);
    LEAVE(n);
}

/* <expression>: literals, template parameters and unary/binary operators over them. */
static node *expression(parser *p) {
    ENTER();
    node *n = NULL;
    char c = peek(p);
    if (c == 'L') {
        n = expr_primary(p);
    } else if (c == 'T') {
        n = template_param(p);
    } else {
        const op_info *o = find_op(p);
        static const char *const unsupported[] = {"cl", "ix", "nw", "na", "dl", "da"};
        for (size_t i = 0; o && i < sizeof unsupported / sizeof unsupported[0]; i++)
            if (!strcmp(o->code, unsupported[i])) o = NULL;
        if (!o) return failed(p); /* calls, new/delete, subscripts: not supported */
        p->p += 2;
        if ((!strcmp(o->code, "pp") || !strcmp(o->code, "mm")) && !eat(p, '_'))
            return failed(p); /* postfix forms only as prefix here */
        n = mk(p, o->arity == 1 ? N_UNARY : N_BINARY);
        if (!n) return NULL;
        n->s = o->op;
        n->a = expression(p);
        if (o->arity == 2) n->b = expression(p);
    }
    LEAVE(n);
}

/* <template-arg> ::= <type> | X <expression> E | <expr-primary> | J <template-arg>* E */
static node *template_arg(parser *p) {
    ENTER();
    node *n;
    char c = peek(p);
    if (c == 'X') {
        p->p++;
        n = expression(p);
        if (!eat(p, 'E')) return failed(p);
    } else if (c == 'L') {
        n = expr_primary(p);
    } else if (c == 'J') {
        p->p++;
        n = mk(p, N_PACK);
        int cap = 0;
        while (n && !p->fail && peek(p) && peek(p) != 'E')
            list_add(p, &n->list, &n->n, &cap, template_arg(p));
        if (!eat(p, 'E')) return failed(p);
    } else {
        n = type(p);
    }
    LEAVE(n);
}

/* <template-args> ::= I <template-arg>+ E ; returned as an N_PACK-like list node. */
static node *template_args(parser *p) {
    ENTER();
    if (!eat(p, 'I')) return failed(p);
    node *n = mk(p, N_PACK);
    int cap = 0;
    while (n && !p->fail && peek(p) && peek(p) != 'E')
        list_add(p, &n->list, &n->n, &cap, template_arg(p));
    if (!eat(p, 'E') || !n || n->n == 0) return failed(p);
    LEAVE(n);
}

/* <bare-function-type> into fn (parameters until E, end or '.'). */
static void params(parser *p, node *fn) {
    int cap = 0;
    if (peek(p) == 'v' && (p->p + 1 == p->end || p->p[1] == 'E' || p->p[1] == '.')) {
        p->p++;
        return;
    }
    while (!p->fail && p->p < p->end && peek(p) != 'E' && peek(p) != '.')
        list_add(p, &fn->list, &fn->n, &cap, type(p));
    if (!fn->n) failed(p);
}

static node *builtin(parser *p) {
    static const struct {
        char c;
        const char *s;
    } b1[] = {
        {'v', "void"},        {'w', "wchar_t"},
        {'b', "bool"},        {'c', "char"},
        {'a', "signed char"}, {'h', "unsigned char"},
        {'s', "short"},       {'t', "unsigned short"},
        {'i', "int"},         {'j', "unsigned int"},
        {'l', "long"},        {'m', "unsigned long"},
        {'x', "long long"},   {'y', "unsigned long long"},
        {'n', "__int128"},    {'o', "unsigned __int128"},
        {'f', "float"},       {'d', "double"},
        {'e', "long double"}, {'g', "__float128"},
        {'z', "..."},
    };
    for (size_t i = 0; i < sizeof b1 / sizeof b1[0]; i++)
        if (eat(p, b1[i].c)) return mk_static(p, b1[i].s);
    static const struct {
        const char *c, *s;
    } b2[] = {{"Dh", "half"},          {"Ds", "char16_t"},          {"Di", "char32_t"},
              {"Du", "char8_t"},       {"Dn", "decltype(nullptr)"}, {"Da", "auto"},
              {"Dc", "decltype(auto)"}};
    for (size_t i = 0; i < sizeof b2 / sizeof b2[0]; i++)
        if (eat2(p, b2[i].c)) return mk_static(p, b2[i].s);
    if (eat2(p, "DF")) { /* _FloatN, std::bfloat16_t */
        long bits;
        if (!number(p, &bits, false)) return failed(p);
        char *s = palloc(p, 48);
        if (!s) return NULL;
        if (eat(p, 'b'))
            snprintf(s, 48, "std::bfloat16_t");
        else if (eat(p, '_'))
            snprintf(s, 48, "_Float%ld", bits);
        else
            return failed(p);
        return mk_static(p, s);
    }
    return NULL;
}

/* <type> */
static node *type(parser *p) {
    ENTER();
    node *n = builtin(p);
    if (n || p->fail) LEAVE(n);
    char c = peek(p);
    switch (c) {
    case 'r':
    case 'V':
    case 'K': {
        int cv = 0;
        for (;;) {
            if (eat(p, 'r'))
                cv |= 4;
            else if (eat(p, 'V'))
                cv |= 2;
            else if (eat(p, 'K'))
                cv |= 1;
            else
                break;
        }
        n = mk(p, N_QUAL);
        if (!n) break;
        n->flags = cv;
        n->a = type(p);
        add_sub(p, n);
        break;
    }
    case 'P':
    case 'R':
    case 'O':
        p->p++;
        n = mk(p, c == 'P' ? N_PTR : c == 'R' ? N_LREF : N_RREF);
        if (!n) break;
        n->a = type(p);
        add_sub(p, n);
        break;
    case 'F': {
        p->p++;
        eat(p, 'Y');
        n = mk(p, N_FUNC);
        if (!n) break;
        n->a = type(p);
        params(p, n);
        if (eat(p, 'R'))
            n->s = " &";
        else if (eat(p, 'O'))
            n->s = " &&";
        if (!eat(p, 'E')) return failed(p);
        add_sub(p, n);
        break;
    }
    case 'A': {
        p->p++;
        const char *d = p->p;
        while (isdigit((unsigned char)peek(p))) p->p++;
        size_t dl = (size_t)(p->p - d);
        if (!eat(p, '_')) return failed(p);
        n = mk(p, N_ARRAY);
        if (!n) break;
        n->s = pstrndup(p, d, dl);
        n->a = type(p);
        add_sub(p, n);
        break;
    }
    case 'M':
        p->p++;
        n = mk(p, N_MEMPTR);
        if (!n) break;
        n->a = type(p);
        n->b = type(p);
        add_sub(p, n);
        break;
    case 'T':
        n = template_param(p);
        add_sub(p, n);
        if (n && peek(p) == 'I') {
            node *t = mk(p, N_TEMPLATE);
            if (!t) break;
            t->a = n;
            t->b = template_args(p);
            n = t;
            add_sub(p, n);
        }
        break;
    case 'S':
        if (peek2(p) == 't') {
            n = name(p, NULL, NULL);
            add_sub(p, n);
            break;
        }
        n = substitution(p);
        if (n && peek(p) == 'I') {
            node *t = mk(p, N_TEMPLATE);
            if (!t) break;
            t->a = n;
            t->b = template_args(p);
            n = t;
            add_sub(p, n);
        }
        break;
    case 'D':
        if (eat2(p, "Dp")) {
            n = mk(p, N_EXPAND);
            if (!n) break;
            n->a = type(p);
            add_sub(p, n);
        } else if (eat2(p, "Dv")) {
            const char *d = p->p;
            while (isdigit((unsigned char)peek(p))) p->p++;
            size_t dl = (size_t)(p->p - d);
            if (!dl || !eat(p, '_')) return failed(p);
            n = mk(p, N_VECTOR);
            if (!n) break;
            n->s = pstrndup(p, d, dl);
            n->a = type(p);
            add_sub(p, n);
        } else {
            return failed(p); /* decltype, noexcept and other D types: not supported */
        }
        break;
    case 'u': /* vendor extended type */
        p->p++;
        n = source_name(p);
        add_sub(p, n);
        break;
    case 'N':
    case 'Z':
    case 'U':
    case 'L':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (c == 'U' && peek2(p) != 't' && peek2(p) != 'l') return failed(p); /* vendor quals */
        n = name(p, NULL, NULL);
        add_sub(p, n);
        break;
    default:
        return failed(p);
    }
    LEAVE(n);
}

static bool is_ctor_dtor_or_conv(node *n) {
    while (n && (n->k == N_NESTED || n->k == N_TEMPLATE || n->k == N_LOCAL))
        n = n->k == N_NESTED ? n->b : n->k == N_LOCAL ? n->b : n->a;
    return n && (n->k == N_DTOR || (n->k == N_UNARY && n->flags == 1) ||
                 (n->k == N_NAME && n->flags == 2));
}

/* <encoding> ::= <name> <bare-function-type> | <name> (data) */
static node *encoding(parser *p, bool top) {
    ENTER();
    node **saved = p->targs;
    int saved_n = p->n_targs;
    node *args = NULL;
    int cv = 0;
    node *nm = name(p, &args, &cv);
    if (!nm) return failed(p);
    node *e = mk(p, N_ENCODING);
    if (!e) return NULL;
    e->a = nm;
    e->flags = cv;
    if (args) {
        p->targs = args->list;
        p->n_targs = args->n;
    }
    bool end = p->p == p->end || peek(p) == 'E' || (top && peek(p) == '.');
    if (!end) {
        e->has_type = true;
        if (args && !is_ctor_dtor_or_conv(nm)) e->b = type(p);
        params(p, e);
    }
    if (!top) {
        p->targs = saved;
        p->n_targs = saved_n;
    }
    LEAVE(e);
}

/* ------------------------------------------------------------------ printing */

static void put(out *o, const char *s, size_t n) {
    if (o->fail) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap < o->len + n + 1) cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->fail = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = 0;
}

static void puts_(out *o, const char *s) {
    put(o, s, strlen(s));
}

static char last_char(const out *o) {
    return o->len ? o->buf[o->len - 1] : 0;
}

static void print(out *o, const node *n);

static void print_quals(out *o, int cv) {
    if (cv & 1) puts_(o, " const");
    if (cv & 2) puts_(o, " volatile");
    if (cv & 4) puts_(o, " restrict");
    if (cv & 8) puts_(o, " &");
    if (cv & 16) puts_(o, " &&");
}

/* Writes ", " unless it is the first element; returns the length to roll back to when the
 * element turns out to print nothing (an empty pack). */
static size_t separator(out *o, bool first) {
    size_t mark = o->len;
    if (!first) puts_(o, ", ");
    return mark;
}

static void rollback(out *o, size_t mark, size_t after, bool *first) {
    if (o->fail) return;
    if (o->len == after) {
        o->len = mark;
        if (o->buf) o->buf[mark] = 0;
    } else {
        *first = false;
    }
}

/* Elements of a list, flattening packs (empty ones print nothing), separated by ", ". */
static void print_list(out *o, node *const *list, int n) {
    bool first = true;
    for (int i = 0; i < n; i++) {
        const node *x = list[i];
        while (x->k == N_TPARAM && x->a && x->a->k == N_PACK && o->pack != x->a) x = x->a;
        if (x->k == N_EXPAND) {
            /* find the pack the pattern refers to and print the pattern once per element */
            const node *pk = x->a;
            while (pk && pk->k != N_TPARAM) pk = pk->a;
            const node *pack = pk ? pk->a : NULL;
            if (!pack || pack->k != N_PACK) {
                o->fail = true;
                return;
            }
            for (int j = 0; j < pack->n; j++) {
                size_t mark = separator(o, first), after = o->len;
                const node *sp = o->pack;
                int si = o->pack_index;
                o->pack = pack;
                o->pack_index = j;
                print(o, x->a);
                o->pack = sp;
                o->pack_index = si;
                rollback(o, mark, after, &first);
            }
            continue;
        }
        size_t mark = separator(o, first), after = o->len;
        if (x->k == N_PACK)
            print_list(o, x->list, x->n);
        else
            print(o, x);
        rollback(o, mark, after, &first);
    }
}

static void print_params(out *o, const node *fn) {
    puts_(o, "(");
    print_list(o, fn->list, fn->n);
    puts_(o, ")");
}

/* The node a template parameter stands for (the element being expanded for a pack). */
static const node *resolve(const out *o, const node *n) {
    while (n && n->k == N_TPARAM) {
        n = n->a;
        if (n && n->k == N_PACK && o->pack == n) n = n->list[o->pack_index];
    }
    return n;
}

static bool is_ref(const node *n) {
    return n->k == N_LREF || n->k == N_RREF;
}

typedef struct {
    node_kind k;
    int cv;
} mod;

static void print_mods(out *o, const mod *mods, int nm) {
    for (int i = nm - 1; i >= 0; i--) {
        if (mods[i].k == N_QUAL)
            print_quals(o, mods[i].cv);
        else
            puts_(o, mods[i].k == N_PTR ? "*" : mods[i].k == N_LREF ? "&" : "&&");
    }
}

/* A type with its declarator. Modifiers (pointer, reference, cv; mods[] from outer to inner)
 * around a function, array or member-function-pointer type print inside parentheses:
 * void (*)(int), float const (&) [10]. As template arguments are substituted, references to
 * references collapse (T&& with T = U& is U&) and repeated cv-qualifiers merge. */
static void print_type(out *o, const node *n) {
    mod mods[64];
    int nm = 0;
    const node *base = n;
    for (;;) {
        if (!base) break;
        if (base->k == N_TPARAM) {
            const node *t = resolve(o, base);
            if (!t || t->k == N_NAME || t->k == N_TEMPLATE || t->k == N_NESTED || t->k == N_PACK ||
                t->k == N_LITERAL || t->k == N_LOCAL)
                break;
            base = t;
            continue;
        }
        if (base->k != N_PTR && !is_ref(base) && base->k != N_QUAL) break;
        if (nm == 64) {
            o->fail = true;
            return;
        }
        if (is_ref(base) && nm && (mods[nm - 1].k == N_LREF || mods[nm - 1].k == N_RREF)) {
            if (base->k == N_LREF) mods[nm - 1].k = N_LREF; /* an lvalue reference wins */
        } else if (base->k == N_QUAL && nm && mods[nm - 1].k == N_QUAL) {
            mods[nm - 1].cv |= base->flags;
        } else {
            mods[nm].k = base->k;
            mods[nm++].cv = base->k == N_QUAL ? base->flags : 0;
        }
        base = base->a;
    }
    if (!base) {
        o->fail = true;
        return;
    }
    /* cv directly on a function type qualifies it like a member function (after the params);
     * on an array type it qualifies the element */
    int inner_cv = 0;
    if (base->k == N_FUNC || base->k == N_ARRAY)
        while (nm && mods[nm - 1].k == N_QUAL) inner_cv |= mods[--nm].cv;
    const node *fn = base->k == N_FUNC                             ? base
                     : base->k == N_MEMPTR && base->b->k == N_FUNC ? base->b
                                                                   : NULL;
    if (fn) {
        print(o, fn->a);
        puts_(o, " ");
        if (nm || base->k == N_MEMPTR) {
            puts_(o, "(");
            if (base->k == N_MEMPTR) {
                print(o, base->a);
                puts_(o, "::*");
            }
            print_mods(o, mods, nm);
            puts_(o, ")");
        }
        print_params(o, fn);
        print_quals(o, inner_cv | fn->flags);
        if (fn->s) puts_(o, fn->s);
        return;
    }
    if (base->k == N_ARRAY) {
        const node *elem = base;
        while (elem->k == N_ARRAY) elem = elem->a;
        print(o, elem);
        print_quals(o, inner_cv);
        puts_(o, " ");
        if (nm) {
            puts_(o, "(");
            print_mods(o, mods, nm);
            puts_(o, ") ");
        }
        for (const node *a = base; a->k == N_ARRAY; a = a->a) {
            puts_(o, "[");
            puts_(o, a->s);
            puts_(o, "]");
        }
        return;
    }
    if (base->k == N_MEMPTR) {
        print(o, base->b);
        puts_(o, " ");
        print(o, base->a);
        puts_(o, "::*");
    } else {
        print(o, base);
    }
    print_mods(o, mods, nm);
}

static void print(out *o, const node *n) {
    if (!n || o->fail) {
        o->fail = true;
        return;
    }
    switch (n->k) {
    case N_NAME:
        puts_(o, n->s);
        break;
    case N_LITERAL:
        if (n->a) {
            puts_(o, "(");
            print(o, n->a);
            puts_(o, ")");
        }
        puts_(o, n->s);
        break;
    case N_NESTED:
        print(o, n->a);
        puts_(o, "::");
        print(o, n->b);
        break;
    case N_TEMPLATE:
        print(o, n->a);
        if (last_char(o) == '<') puts_(o, " "); /* operator<< <T> */
        puts_(o, "<");
        print_list(o, n->b->list, n->b->n);
        if (last_char(o) == '>') puts_(o, " ");
        puts_(o, ">");
        break;
    case N_QUAL:
    case N_PTR:
    case N_LREF:
    case N_RREF:
    case N_MEMPTR:
    case N_FUNC:
    case N_ARRAY:
        print_type(o, n);
        break;
    case N_VECTOR:
        print(o, n->a);
        puts_(o, " __vector(");
        puts_(o, n->s);
        puts_(o, ")");
        break;
    case N_UNARY:
        puts_(o, n->s);
        if (n->flags == 1) { /* conversion operator name */
            print(o, n->a);
            break;
        }
        if (n->a->k == N_ENCODING && !n->a->has_type) { /* &Class::member */
            print(o, n->a);
            break;
        }
        puts_(o, "(");
        print(o, n->a);
        puts_(o, ")");
        break;
    case N_BINARY:
        puts_(o, "(");
        print(o, n->a);
        puts_(o, ")");
        puts_(o, n->s);
        puts_(o, "(");
        print(o, n->b);
        puts_(o, ")");
        break;
    case N_PACK:
        print_list(o, n->list, n->n);
        break;
    case N_EXPAND:
        print_list(o, (node *const *)&n, 1);
        break;
    case N_TPARAM:
        print(o, resolve(o, n));
        break;
    case N_LOCAL: /* the enclosing function prints without its return type */
        print(o, n->a->a);
        if (n->a->has_type) {
            print_params(o, n->a);
            print_quals(o, n->a->flags);
        }
        puts_(o, "::");
        print(o, n->b);
        break;
    case N_LAMBDA:
        puts_(o, "{lambda(");
        print_list(o, n->list, n->n);
        puts_(o, ")");
        puts_(o, n->s);
        puts_(o, "}");
        break;
    case N_DTOR:
        puts_(o, "~");
        print(o, n->a);
        break;
    case N_ENCODING:
        if (n->b) {
            print(o, n->b);
            puts_(o, " ");
        }
        print(o, n->a);
        if (n->has_type) {
            print_params(o, n);
            print_quals(o, n->flags);
        }
        break;
    }
}

char *ns_demangle(const char *mangled) {
    if (!mangled || strncmp(mangled, "_Z", 2)) return NULL;
    size_t len = strlen(mangled);
    if (len > MAX_INPUT) return NULL;
    parser p = {.p = mangled + 2, .end = mangled + len};
    node *root = encoding(&p, true);
    char *result = NULL;
    /* vendor suffixes (.constprop.0, .isra.1) print as c++filt does */
    const char *suffix = p.p < p.end && *p.p == '.' ? p.p : NULL;
    if (root && !p.fail && (p.p == p.end || suffix)) {
        out o = {0};
        print(&o, root);
        /* each clone is "." letters, then any number of "." digits groups */
        const char *q = suffix;
        while (q && *q) {
            const char *start = q++;
            while (isalpha((unsigned char)*q) || *q == '_') q++;
            while (q[0] == '.' && isdigit((unsigned char)q[1])) {
                q++;
                while (isdigit((unsigned char)*q)) q++;
            }
            if (*q && *q != '.') q += strlen(q); /* not the usual shape: one clone */
            puts_(&o, " [clone ");
            put(&o, start, (size_t)(q - start));
            puts_(&o, "]");
        }
        if (!o.fail && o.buf)
            result = o.buf;
        else
            free(o.buf);
    }
    for (int i = 0; i < p.n_allocs; i++) free(p.allocs[i]);
    free(p.allocs);
    return result;
}
