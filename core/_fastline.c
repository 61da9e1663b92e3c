/* monbus.core._fastline: the sender's hot loop in C (optional; core/line.py has the same
 * thing in Python and uses this only when it was built).
 *
 * group(data: bytes) -> list[(topic: str, body: str, nlines: int)] | None
 * check(data: bytes) -> bool
 *
 * Validates every line of `data` (lines separated by '\n', empty lines skipped) against a
 * conservative subset of the monbus line grammar (docs/line-syntax.md) and groups the lines
 * by bus topic, keeping their order, in order of first appearance.  It returns None as soon
 * as a line is outside the subset, and the caller re-does the whole text with the exact
 * Python decoder; so every line this accepts is one that decoder accepts, unchanged, and
 * the grouping is the same (tests/core/test_fastline.py checks both with hypothesis).
 *
 * The subset: printable ASCII only (no CR, tab or other control bytes); a series of at most
 * 4096 bytes whose path has >= 2 non-empty components (any printable byte but '.' and ';')
 * and optional ";key=value" tags (key: not ';', '!', '^', '='; value: not ';', not starting
 * with '~'); a value [+-]digits[.digits][e[+-]d{1,2}] and a timestamp digits[.digits], each
 * with at most 200 digits (so both are finite; no nan/inf/underscores); annotations
 * key=value with key [a-z][a-z0-9_]*, no duplicate key, no '%' in the value (so nothing to
 * unescape) and an mtype among the five.  Pure: no I/O, no state between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_SERIES 4096
#define MAX_DIGITS 200
#define MAX_ANN 32
#define TABLE_BITS 12
#define TABLE_SIZE (1 << TABLE_BITS)
#define MAX_TOPICS 2048

typedef struct {
    const char *name;     /* points into data */
    Py_ssize_t len;
    int dot;              /* the topic is name[0:len] + "." */
    Py_ssize_t *spans;    /* start, len pairs */
    Py_ssize_t nspans, cap;
    Py_ssize_t bytes;
} Topic;

typedef struct {
    Topic topics[MAX_TOPICS];
    int ntopics;
    int table[TABLE_SIZE]; /* index + 1, 0 = empty */
} Groups;

static int is_print(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* number: [+-]? (digits [. digits*] | . digits) [e [+-]? d{1,2}] when `value`;
 * digits [. digits*] | . digits when timestamp.  Returns 1 if p..e is one. */
static int number_ok(const char *p, const char *e, int value)
{
    int digits = 0;
    if (p == e) return 0;
    if (value && (*p == '+' || *p == '-')) p++;
    while (p < e && *p >= '0' && *p <= '9') { p++; digits++; }
    if (p < e && *p == '.') {
        p++;
        while (p < e && *p >= '0' && *p <= '9') { p++; digits++; }
    }
    if (digits == 0 || digits > MAX_DIGITS) return 0;
    if (p == e) return 1;
    if (!value || (*p != 'e' && *p != 'E')) return 0;
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    int ed = 0;
    while (p < e && *p >= '0' && *p <= '9') { p++; ed++; }
    return p == e && ed >= 1 && ed <= 2;
}

/* series at p..e: returns the topic length (path up to and including its second dot, or the
 * whole two-component path, which gets a dot appended by the caller) or -1. */
static Py_ssize_t series_ok(const char *p, const char *e, int *append_dot)
{
    if (e - p > MAX_SERIES || p == e) return -1;
    const char *s = p;
    int dots = 0;
    Py_ssize_t topic_len = -1;
    int comp = 0; /* length of current component */
    while (p < e && *p != ';') {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (comp == 0) return -1;
            dots++;
            if (dots == 2) topic_len = (p - s) + 1;
            comp = 0;
        } else if (!is_print(c)) {
            return -1;
        } else {
            comp++;
        }
        p++;
    }
    if (comp == 0 || dots == 0) return -1;
    *append_dot = 0;
    if (dots == 1) { topic_len = p - s; *append_dot = 1; }
    /* tags */
    while (p < e) {
        /* at ';' */
        p++;
        const char *k = p;
        while (p < e && *p != '=' && *p != ';') {
            unsigned char c = (unsigned char)*p;
            if (!is_print(c) || c == '!' || c == '^') return -1;
            p++;
        }
        if (p == k || p == e || *p != '=') return -1;
        p++;
        const char *v = p;
        while (p < e && *p != ';') {
            if (!is_print((unsigned char)*p)) return -1;
            p++;
        }
        if (p == v || *v == '~') return -1;
    }
    return topic_len;
}

static const char *MTYPE_NAMES[] = {"gauge", "counter", "derive", "absolute", "state", NULL};

/* annotations at p..e (the text after the timestamp's following space) */
static int annotations_ok(const char *p, const char *e)
{
    const char *keys[MAX_ANN];
    Py_ssize_t klen[MAX_ANN];
    int n = 0;
    for (;;) {
        const char *k = p;
        if (p == e || *p < 'a' || *p > 'z') return 0;
        while (p < e && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) p++;
        if (p == e || *p != '=') return 0;
        Py_ssize_t kl = p - k;
        if (n == MAX_ANN) return 0;
        for (int i = 0; i < n; i++)
            if (klen[i] == kl && memcmp(keys[i], k, kl) == 0) return 0;
        keys[n] = k; klen[n] = kl; n++;
        p++;
        const char *v = p;
        while (p < e && *p != ' ') {
            unsigned char c = (unsigned char)*p;
            if (!is_print(c) || c == '%') return 0;
            p++;
        }
        if (kl == 5 && memcmp(k, "mtype", 5) == 0) {
            Py_ssize_t vl = p - v;
            int found = 0;
            for (int i = 0; MTYPE_NAMES[i]; i++)
                if ((Py_ssize_t)strlen(MTYPE_NAMES[i]) == vl && memcmp(MTYPE_NAMES[i], v, vl) == 0)
                    found = 1;
            if (!found) return 0;
        }
        if (p == e) return 1;
        p++; /* the space: another annotation must follow */
    }
}

static void groups_free(Groups *g)
{
    for (int i = 0; i < g->ntopics; i++) PyMem_Free(g->topics[i].spans);
}

/* 1 ok, 0 not in subset, -1 memory error.  A topic is `topic[0:tlen]` plus a '.' when
 * `dot` (a two-component path "a.b" has the topic "a.b.", the same as "a.b.c"); two topics
 * are equal when their texts before the final dot are. */
static int add_line(Groups *g, const char *topic, Py_ssize_t tlen, int dot, Py_ssize_t start,
                    Py_ssize_t len)
{
    Py_ssize_t key = dot ? tlen : tlen - 1;  /* the bytes before the trailing dot */
    unsigned long h = 2166136261u;
    for (Py_ssize_t i = 0; i < key; i++) h = (h ^ (unsigned char)topic[i]) * 16777619u;
    unsigned long slot = h & (TABLE_SIZE - 1);
    Topic *t = NULL;
    for (;;) {
        int idx = g->table[slot];
        if (idx == 0) {
            if (g->ntopics == MAX_TOPICS) return 0;
            t = &g->topics[g->ntopics];
            t->name = topic; t->len = tlen; t->dot = dot; t->spans = NULL; t->nspans = 0;
            t->cap = 0; t->bytes = 0;
            g->ntopics++;
            g->table[slot] = g->ntopics;
            break;
        }
        Topic *c = &g->topics[idx - 1];
        Py_ssize_t ckey = c->dot ? c->len : c->len - 1;
        if (ckey == key && memcmp(c->name, topic, key) == 0) { t = c; break; }
        slot = (slot + 1) & (TABLE_SIZE - 1);
    }
    if (t->nspans == t->cap) {
        Py_ssize_t cap = t->cap ? t->cap * 2 : 64;
        Py_ssize_t *n = PyMem_Realloc(t->spans, sizeof(Py_ssize_t) * 2 * cap);
        if (!n) return -1;
        t->spans = n; t->cap = cap;
    }
    t->spans[2 * t->nspans] = start;
    t->spans[2 * t->nspans + 1] = len;
    t->nspans++;
    t->bytes += len + 1;
    return 1;
}

/* Walk every line of data[0:size]; with `g`, group the lines too.  1 all in the subset,
 * 0 not, -1 memory error. */
static int walk(const char *data, Py_ssize_t size, Groups *g)
{
    int ok = 1;
    Py_ssize_t pos = 0;
    while (pos <= size && ok == 1) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', size - pos);
        const char *end = nl ? nl : data + size;
        Py_ssize_t len = end - line;
        if (len > 0) {
            const char *f1 = memchr(line, ' ', len);
            if (!f1) { ok = 0; break; }
            const char *f2 = memchr(f1 + 1, ' ', end - f1 - 1);
            if (!f2) { ok = 0; break; }
            const char *f3 = memchr(f2 + 1, ' ', end - f2 - 1);
            const char *tsend = f3 ? f3 : end;
            int append_dot = 0;
            Py_ssize_t tlen = series_ok(line, f1, &append_dot);
            if (tlen < 0 || !number_ok(f1 + 1, f2, 1) || !number_ok(f2 + 1, tsend, 0) ||
                (f3 && !annotations_ok(f3 + 1, end))) {
                ok = 0;
                break;
            }
            if (g) ok = add_line(g, line, tlen, append_dot, pos, len);
        }
        if (!nl) break;
        pos = (nl - data) + 1;
    }
    return ok;
}

static PyObject *fast_check(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int ok = walk(view.buf, view.len, NULL);
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok == 1);
}

static PyObject *fast_group(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *data = view.buf;
    Groups *g = PyMem_Calloc(1, sizeof(Groups));
    if (!g) { PyBuffer_Release(&view); return PyErr_NoMemory(); }
    PyObject *result = NULL;
    int ok = walk(data, view.len, g);
    if (ok == -1) { PyErr_NoMemory(); goto done; }
    if (ok == 0) { result = Py_NewRef(Py_None); goto done; }
    result = PyList_New(g->ntopics);
    if (!result) goto done;
    for (int i = 0; i < g->ntopics; i++) {
        Topic *t = &g->topics[i];
        Py_ssize_t blen = t->bytes - 1;
        PyObject *body = PyUnicode_New(blen, 127);
        PyObject *topic = PyUnicode_New(t->len + t->dot, 127);
        if (topic) {
            memcpy(PyUnicode_DATA(topic), t->name, t->len);
            if (t->dot) ((char *)PyUnicode_DATA(topic))[t->len] = '.';
        }
        if (!body || !topic) { Py_XDECREF(body); Py_XDECREF(topic); Py_CLEAR(result); goto done; }
        char *out = (char *)PyUnicode_DATA(body);
        for (Py_ssize_t j = 0; j < t->nspans; j++) {
            Py_ssize_t st = t->spans[2 * j], ln = t->spans[2 * j + 1];
            memcpy(out, data + st, ln);
            out += ln;
            if (j + 1 < t->nspans) *out++ = '\n';
        }
        PyObject *tup = Py_BuildValue("(NNn)", topic, body, t->nspans);
        if (!tup) { Py_CLEAR(result); goto done; }
        PyList_SET_ITEM(result, i, tup);
    }
done:
    groups_free(g);
    PyMem_Free(g);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"group", fast_group, METH_O,
     "group(data: bytes) -> [(topic, body, nlines)] in first-seen order, or None if any line "
     "is outside the fast subset (then use core.line.group_by_topic)."},
    {"check", fast_check, METH_O,
     "check(data: bytes) -> bool: True if every line is in the fast subset (so valid); False "
     "says nothing (use the exact decoder)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monbus.core._fastline",
    "The sender's line validation and grouping in C (see core/line.py group_chunk).", -1, methods
};

PyMODINIT_FUNC PyInit__fastline(void) { return PyModule_Create(&module); }
