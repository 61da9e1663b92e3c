/* monbus.bridges.nagios._fastspool: `monbus nagios spool`'s hot loop in C (optional;
 * perfdata.py LineMaker.feed does the same in Python and uses this only when it was built).
 *
 * run(text, pos, end, plan, checks, now_ts)
 *     -> (pos, records, lines, [(topic, body, nlines)], key | None) | None
 *
 * Turns the records (lines) of text[pos:end] into monbus lines, exactly as the Python fast
 * way of LineMaker._feed_window does for a record of a known check whose perfdata matches
 * the check's learnt skeleton (LineMaker._learn), and stops at the first record it does not
 * handle that way: it returns where that record starts (`end` when all were handled), the
 * records and lines made so far, the lines grouped by topic (order kept within a topic,
 * joined by '\n': Sender.add_body's argument), and the record's check key if the record had
 * the plan's shape.  The caller (perfdata.py, the reference) does that record the general
 * way and calls again after it.  None: the text is not of one-byte kind (the caller then
 * slices it into windows, or does it in Python).
 *
 * plan: (field prefixes `KEY::` in the template's order, DATATYPE wanted, and the field
 * indices (-1: absent) of DATATYPE, HOSTNAME, SERVICEDESC, perfdata, state, state type,
 * output, long output, TIMET); checks: {check key: LineMaker check list}, where
 * check[0] = line prefix, check[1] = topic, check[2] = label Namer (its `generation`),
 * check[5] = the generation the skeleton was learnt at, check[7] = the skeleton for C, one
 * bytes object (perfdata.py _c_skeleton: a record then reads one object, not ~20 scattered
 * ones: the cache misses cost more than the work): item count, prefix, topic, literal 0,
 * then per item its head, tail, scaled flag, decimal shift, binary factor and the literal
 * after it; or None (then only records without perfdata are made here).
 *
 * The conservative subset (anything else is "not handled"): exactly the plan's fields in
 * order; DATATYPE equal to the wanted one; a known check; state among 0-3 / OK / WARNING /
 * CRITICAL / UNKNOWN / UP / DOWN / UNREACHABLE; state type empty, 0, 1, SOFT or HARD; TIMET
 * empty, `0` or [1-9] and at most 14 more digits; a non-empty output of printable ASCII of
 * at most 1024 characters; no long output; perfdata empty or the skeleton's literals with a
 * number ([+-](digits[.digits]|.digits)[e[+-]digits], at most 63 characters) between each
 * two, each literal after a number not starting with a character a number may hold (so the
 * number's extent is the one the skeleton regex finds), every converted number finite; all
 * the names and annotations ASCII.  Each number is written as format_number(float(text))
 * (or of the unit-scaled value) writes it: the skeleton regex's copied text is that text
 * (tests/bridges/nagios/test_nagios_records_fast.py).  Pure: no I/O, no state between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

#define MAX_FIELDS 64
#define MAX_OUTPUT 1024
#define MAX_NUM 63

enum { P_DTYPE, P_HOST, P_SERVICE, P_PERF, P_STATE, P_STYPE, P_OUTPUT, P_LONG, P_TIMET, P_N };

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    char *n = PyMem_Realloc(b->buf, (size_t)cap);
    if (n == NULL) { PyErr_NoMemory(); return -1; }
    b->buf = n;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->buf + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* the UTF-8 (= ASCII) text of an ASCII str, or NULL (not an ASCII str) */
static inline const char *ascii_of(PyObject *o, Py_ssize_t *n)
{
    if (!PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o)) return NULL;
    *n = PyUnicode_GET_LENGTH(o);
    return (const char *)PyUnicode_1BYTE_DATA(o);
}

typedef struct {
    const char *topic;    /* points into a str or bytes object alive during the call */
    Py_ssize_t topiclen;
    size_t hash;
    Buf body;
    Py_ssize_t nlines;
} Group;

typedef struct {
    Group *groups;
    Py_ssize_t n, cap;
    Py_ssize_t *table;    /* group index + 1, 0: empty; size mask + 1 */
    size_t mask;
} Groups;

static void groups_free(Groups *g)
{
    for (Py_ssize_t i = 0; i < g->n; i++) PyMem_Free(g->groups[i].body.buf);
    PyMem_Free(g->groups);
    PyMem_Free(g->table);
}

static size_t hash_text(const char *s, Py_ssize_t n)
{
    size_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* the group of a topic (its text), made if new; NULL on error */
static Group *group_for(Groups *g, const char *topic, Py_ssize_t len)
{
    size_t h = hash_text(topic, len);
    if (g->table != NULL) {
        for (size_t i = h & g->mask;; i = (i + 1) & g->mask) {
            Py_ssize_t k = g->table[i];
            if (k == 0) break;
            Group *gr = &g->groups[k - 1];
            if (gr->hash == h && gr->topiclen == len && memcmp(gr->topic, topic, (size_t)len) == 0)
                return gr;
        }
    }
    if (g->n == g->cap) {
        Py_ssize_t cap = g->cap ? g->cap * 2 : 64;
        Group *n = PyMem_Realloc(g->groups, (size_t)cap * sizeof(Group));
        if (n == NULL) { PyErr_NoMemory(); return NULL; }
        g->groups = n;
        g->cap = cap;
    }
    if (g->table == NULL || (size_t)(g->n + 1) * 2 > g->mask + 1) {
        size_t size = g->table == NULL ? 128 : (g->mask + 1) * 2;
        Py_ssize_t *t = PyMem_Calloc(size, sizeof(Py_ssize_t));
        if (t == NULL) { PyErr_NoMemory(); return NULL; }
        for (Py_ssize_t k = 0; k < g->n; k++)
            for (size_t i = g->groups[k].hash & (size - 1);; i = (i + 1) & (size - 1))
                if (t[i] == 0) { t[i] = k + 1; break; }
        PyMem_Free(g->table);
        g->table = t;
        g->mask = size - 1;
    }
    Group *gr = &g->groups[g->n++];
    gr->topic = topic;
    gr->topiclen = len;
    gr->hash = h;
    gr->body.buf = NULL;
    gr->body.len = gr->body.cap = 0;
    gr->nlines = 0;
    for (size_t i = h & g->mask;; i = (i + 1) & g->mask)
        if (g->table[i] == 0) { g->table[i] = g->n; break; }
    return gr;
}

/* reading a check's skeleton (bytes, LineMaker._c_skeleton): bounds-checked */
typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} Rd;

static int rd_bytes(Rd *r, const unsigned char **s, Py_ssize_t len)
{
    if (len < 0 || r->n < len) return 0;
    *s = r->p;
    r->p += len;
    r->n -= len;
    return 1;
}

static int rd_u32(Rd *r, Py_ssize_t *v)
{
    const unsigned char *s;
    if (!rd_bytes(r, &s, 4)) return 0;
    *v = (Py_ssize_t)((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16
                      | (uint32_t)s[3] << 24);
    return 1;
}

static int rd_str(Rd *r, const unsigned char **s, Py_ssize_t *len)
{
    return rd_u32(r, len) && rd_bytes(r, s, *len);
}

static int is_num_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* the extent of the number at p (the regex [-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
 * taken greedily); 0 if none.  *exp_at: where its [eE] is, or -1. */
static Py_ssize_t number_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t *exp_at)
{
    Py_ssize_t i = 0;
    *exp_at = -1;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    if (i < n && p[i] >= '0' && p[i] <= '9') {
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i < n && p[i] == '.') {
            i++;
            while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        }
    } else if (i + 1 < n && p[i] == '.' && p[i + 1] >= '0' && p[i + 1] <= '9') {
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    } else {
        return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        Py_ssize_t j = i + 1;
        if (j < n && (p[j] == '+' || p[j] == '-')) j++;
        if (j < n && p[j] >= '0' && p[j] <= '9') {
            while (j < n && p[j] >= '0' && p[j] <= '9') j++;
            *exp_at = i;
            i = j;
        }
    }
    return i;
}

/* float() of a NUL-terminated number text; 0 if it is not wholly one (or on error) */
static int to_double(const char *s, double *v)
{
    char *endp;
    double d = PyOS_string_to_double(s, &endp, NULL);
    if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    if (*endp != '\0') return 0;
    *v = d;
    return 1;
}

/* The decimals whose text is their line text, format_number(float(text)) (the skeleton
 * regex's _TEXT_NUM, perfdata.py): `0`, an integer of at most 15 digits without leading
 * zeros, a decimal of at most 8 + 7 digits, or 0.<at most 3 zeros><at most 14 digits>;
 * trailing zeros (and '.') dropped, an optional '-'.  Such a decimal of at most 15
 * significant digits reads as the double nearest to it, whose repr() is those digits.
 * Appends that text and returns 1, or returns 0 (not such a number: compute it). */
static int copy_text_number(Buf *out, const unsigned char *p, Py_ssize_t len)
{
    Py_ssize_t i = 0, is, il, fs, fl = 0;
    int neg = 0;
    if (len > 0 && p[0] == '-') { neg = 1; i = 1; }
    is = i;
    while (i < len && p[i] >= '0' && p[i] <= '9') i++;
    il = i - is;
    fs = i;
    if (i < len) {
        if (p[i] != '.') return 0;
        fs = ++i;
        while (i < len && p[i] >= '0' && p[i] <= '9') i++;
        if (i != len) return 0;
        fl = len - fs;
        while (fl > 0 && p[fs + fl - 1] == '0') fl--;
    }
    if (il == 0) return 0;
    if (il == 1 && p[is] == '0') {
        if (fl == 0) return buf_add(out, "0", 1) < 0 ? -1 : 1;  /* 0, -0, 0.000: "0" */
        Py_ssize_t z = 0;
        while (p[fs + z] == '0') z++;
        if (z > 3 || fl - z > 14) return 0;
    } else {
        if (p[is] == '0') return 0;
        if (fl == 0 ? il > 15 : (il > 8 || fl > 7)) return 0;
    }
    if (buf_reserve(out, 2 + il + fl) < 0) return -1;
    char *o = out->buf + out->len;
    if (neg) *o++ = '-';
    memcpy(o, p + is, (size_t)il);
    o += il;
    if (fl) {
        *o++ = '.';
        memcpy(o, p + fs, (size_t)fl);
        o += fl;
    }
    out->len = o - out->buf;
    return 1;
}

/* decimal text of n at o (at least 21 bytes); returns its length */
static int format_long(char *o, long long n)
{
    char t[24];
    int k = 0, len = 0;
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do { t[k++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (n < 0) o[len++] = '-';
    while (k) o[len++] = t[--k];
    return len;
}

/* The number at p[0:len] in the line's text (format_number), appended to out: 1 done,
 * 0 not handled (overflow, too long), -1 error. */
static int write_number(Buf *out, const unsigned char *p, Py_ssize_t len, Py_ssize_t exp_at,
                        int scaled, long shift, double factor)
{
    char s[MAX_NUM + 32];
    double v;
    if (len > MAX_NUM) return 0;
    if (!scaled && exp_at < 0) {
        int r = copy_text_number(out, p, len);
        if (r != 0) return r;
    }
    if (!scaled) {
        memcpy(s, p, (size_t)len);
        s[len] = '\0';
        if (!to_double(s, &v)) return 0;
    } else {
        /* _number_texts: float(num + "e<shift>") * factor, or with an exponent in the
         * text, float(mant + "e" + str(int(exp) + shift)) (* factor unless it is 1.0) */
        if (shift < -100 || shift > 100) return 0;
        if (exp_at < 0) {
            memcpy(s, p, (size_t)len);
            if (shift) {
                s[len] = 'e';
                s[len + 1 + format_long(s + len + 1, shift)] = '\0';
            } else {
                s[len] = '\0';
            }
            if (!to_double(s, &v)) return 0;
            v = v * factor;
        } else {
            /* the exponent as an int: at most 9 digits, else not handled */
            Py_ssize_t j = exp_at + 1;
            int neg = 0;
            long e = 0;
            if (p[j] == '+' || p[j] == '-') { neg = p[j] == '-'; j++; }
            if (len - j > 9) return 0;
            for (; j < len; j++) e = e * 10 + (p[j] - '0');
            if (neg) e = -e;
            memcpy(s, p, (size_t)exp_at);
            if (shift) {
                s[exp_at] = 'e';
                s[exp_at + 1 + format_long(s + exp_at + 1, e + shift)] = '\0';
            } else {
                memcpy(s + exp_at, p + exp_at, (size_t)(len - exp_at));
                s[len] = '\0';
            }
            if (!to_double(s, &v)) return 0;
            if (factor != 1.0) v = v * factor;
        }
    }
    if (v - v != 0.0) return 0;
    if (v > -1e16 && v < 1e16 && v == (double)(long long)v) {
        if (buf_reserve(out, 24) < 0) return -1;
        out->len += format_long(out->buf + out->len, (long long)v);
        return 1;
    }
    char *r = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL) return -1;
    int rc = buf_add(out, r, (Py_ssize_t)strlen(r)) < 0 ? -1 : 1;
    PyMem_Free(r);
    return rc;
}

static const char *state_text(const unsigned char *s, Py_ssize_t n)
{
#define IS(lit) (n == (Py_ssize_t)(sizeof(lit) - 1) && memcmp(s, lit, sizeof(lit) - 1) == 0)
    if (n == 1 && s[0] >= '0' && s[0] <= '3') {
        static const char *d[] = {"0", "1", "2", "3"};
        return d[s[0] - '0'];
    }
    if (IS("OK") || IS("UP")) return "0";
    if (IS("WARNING") || IS("DOWN")) return "1";
    if (IS("CRITICAL") || IS("UNREACHABLE")) return "2";
    if (IS("UNKNOWN")) return "3";
    return NULL;
}

static const char *state_type_suffix(const unsigned char *s, Py_ssize_t n)
{
    if (n == 0) return "";
    if (IS("0") || IS("SOFT")) return " state_type=soft";
    if (IS("1") || IS("HARD")) return " state_type=hard";
    return NULL;
#undef IS
}

typedef struct {
    Py_ssize_t nfields;
    const char *key[MAX_FIELDS];   /* `KEY::` of each field */
    Py_ssize_t keylen[MAX_FIELDS];
    Py_ssize_t ix[P_N];
    const char *want;
    Py_ssize_t wantlen;
    PyObject *checks, *now_ts;
    const char *now;
    Py_ssize_t nowlen;
} Plan;

static PyObject *generation_str;

/* The lines of one record (line[0:len]) onto the end of its topic's body: 1 done, 0 not
 * handled (nothing added), -1 error.  *key_out: the check key (new reference) once known. */
static int do_record(const unsigned char *line, Py_ssize_t len, const Plan *pl, Groups *g,
                     PyObject **key_out)
{
    const unsigned char *fs[MAX_FIELDS];
    Py_ssize_t fl[MAX_FIELDS];
    Py_ssize_t start = 0, f = 0;
    const Py_ssize_t *ix = pl->ix;
    /* split at tabs; each field must start with its `KEY::` */
    for (;;) {
        const unsigned char *tab = memchr(line + start, '\t', (size_t)(len - start));
        Py_ssize_t stop = tab ? tab - line : len;
        if (f >= pl->nfields) return 0;
        Py_ssize_t kl = pl->keylen[f];
        if (stop - start < kl || memcmp(line + start, pl->key[f], (size_t)kl) != 0) return 0;
        fs[f] = line + start + kl;
        fl[f] = stop - start - kl;
        f++;
        if (tab == NULL) break;
        start = stop + 1;
    }
    if (f != pl->nfields) return 0;
#define FIELD(w, p, n) do { if (ix[w] < 0) { p = (const unsigned char *)""; n = 0; } \
                            else { p = fs[ix[w]]; n = fl[ix[w]]; } } while (0)
    const unsigned char *dt, *host, *svc, *perf, *st, *stype, *out, *lo, *tt;
    Py_ssize_t dtn, hostn, svcn, perfn, stn, stypen, outn, lon, ttn;
    FIELD(P_DTYPE, dt, dtn);
    FIELD(P_HOST, host, hostn);
    FIELD(P_SERVICE, svc, svcn);
    FIELD(P_PERF, perf, perfn);
    FIELD(P_STATE, st, stn);
    FIELD(P_STYPE, stype, stypen);
    FIELD(P_OUTPUT, out, outn);
    FIELD(P_LONG, lo, lon);
    FIELD(P_TIMET, tt, ttn);
#undef FIELD
    (void)lo;
    /* the check key: `host` or `host\tSERVICEDESC::service` (the text between) */
    Py_ssize_t keyn = ix[P_SERVICE] >= 0 ? (svc + svcn) - host : hostn;
    PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, host, keyn);
    if (key == NULL) return -1;
    *key_out = key;
    if (dtn != pl->wantlen || memcmp(dt, pl->want, (size_t)dtn) != 0) return 0;
    PyObject *c = PyDict_GetItemWithError(pl->checks, key);
    if (c == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyList_Check(c) || PyList_GET_SIZE(c) < 8) return 0;
    const char *state = state_text(st, stn);
    const char *sfx = state_type_suffix(stype, stypen);
    if (state == NULL || sfx == NULL) return 0;
    /* TIMET: plain Unix seconds are their own text; empty: now */
    const char *ts;
    Py_ssize_t tsn;
    if (ttn == 0) {
        ts = pl->now;
        tsn = pl->nowlen;
    } else {
        if (ttn > 15 || (tt[0] == '0' && ttn > 1)) return 0;
        for (Py_ssize_t i = 0; i < ttn; i++)
            if (tt[i] < '0' || tt[i] > '9') return 0;
        ts = (const char *)tt;
        tsn = ttn;
    }
    if (outn == 0 || outn > MAX_OUTPUT || lon != 0) return 0;
    for (Py_ssize_t i = 0; i < outn; i++)
        if (out[i] < 0x20 || out[i] > 0x7e) return 0;
    /* prefix and topic: from the skeleton, or (a check without perfdata) the check's */
    const unsigned char *prefix, *topic;
    Py_ssize_t pn, tn, n = 0;
    PyObject *sk = PyList_GET_ITEM(c, 7);
    Rd rd = {NULL, 0};
    if (PyBytes_Check(sk)) {
        rd.p = (const unsigned char *)PyBytes_AS_STRING(sk);
        rd.n = PyBytes_GET_SIZE(sk);
        if (!rd_u32(&rd, &n) || !rd_str(&rd, &prefix, &pn) || !rd_str(&rd, &topic, &tn))
            return 0;
        if (perfn) {
            /* the skeleton is for the namer's current generation only */
            PyObject *gen = PyObject_GetAttr(PyList_GET_ITEM(c, 2), generation_str);
            if (gen == NULL) return -1;
            int same = PyObject_RichCompareBool(gen, PyList_GET_ITEM(c, 5), Py_EQ);
            Py_DECREF(gen);
            if (same < 0) return -1;
            if (!same) return 0;
        }
    } else {
        if (perfn) return 0;
        prefix = (const unsigned char *)ascii_of(PyList_GET_ITEM(c, 0), &pn);
        topic = (const unsigned char *)ascii_of(PyList_GET_ITEM(c, 1), &tn);
        if (prefix == NULL || topic == NULL) return 0;
    }
    Group *gr = group_for(g, (const char *)topic, tn);
    if (gr == NULL) return -1;
    Buf *rec = &gr->body;
    Py_ssize_t mark = rec->len, nl = 1;
    if (mark && buf_add(rec, "\n", 1) < 0) return -1;
    if (perfn) {
        /* skeleton: literal 0, then per item: head, tail, scaled (1 byte), decimal shift
         * (4 bytes), binary factor (8 bytes), the literal after it */
        const unsigned char *lp, *h, *t, *cv;
        Py_ssize_t ln, hn, tln, at = 0;
        if (n == 0 || !rd_str(&rd, &lp, &ln)) goto not_handled;
        if (perfn < ln || memcmp(perf, lp, (size_t)ln) != 0) goto not_handled;
        at = ln;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!rd_str(&rd, &h, &hn) || !rd_str(&rd, &t, &tln) || !rd_bytes(&rd, &cv, 13)
                    || !rd_str(&rd, &lp, &ln))
                goto not_handled;
            Py_ssize_t exp_at;
            Py_ssize_t k = number_at(perf + at, perfn - at, &exp_at);
            if (k == 0) goto not_handled;
            /* (after a number: never a character it could hold, see the top) */
            if (ln == 0 ? i < n - 1 : is_num_char(lp[0])) goto not_handled;
            if (perfn - at - k < ln || memcmp(perf + at + k, lp, (size_t)ln) != 0)
                goto not_handled;
            int32_t shift = (int32_t)((uint32_t)cv[1] | (uint32_t)cv[2] << 8
                                      | (uint32_t)cv[3] << 16 | (uint32_t)cv[4] << 24);
            double factor;
            memcpy(&factor, cv + 5, 8);
            if (buf_add(rec, (const char *)h, hn) < 0) return -1;
            int r = write_number(rec, perf + at, k, exp_at, cv[0] != 0, shift, factor);
            if (r < 0) return -1;
            if (r == 0) goto not_handled;
            if (buf_reserve(rec, tsn + tln + 2) < 0) return -1;
            char *o = rec->buf + rec->len;
            *o++ = ' ';
            memcpy(o, ts, (size_t)tsn);
            o += tsn;
            memcpy(o, t, (size_t)tln);
            o += tln;
            *o++ = '\n';
            rec->len = o - rec->buf;
            at += k + ln;
        }
        if (at != perfn || rd.n != 0) goto not_handled;
        nl = n + 1;
    }
    /* the state line: quote()'s printable-ASCII way (% space = escaped) */
    if (buf_reserve(rec, pn + tsn + 64 + outn * 3) < 0) return -1;
    char *o = rec->buf + rec->len;
    memcpy(o, prefix, (size_t)pn); o += pn;
    memcpy(o, "state ", 6); o += 6;
    *o++ = state[0];
    *o++ = ' ';
    memcpy(o, ts, (size_t)tsn); o += tsn;
    memcpy(o, " mtype=state", 12); o += 12;
    size_t sl = strlen(sfx);
    memcpy(o, sfx, sl); o += sl;
    memcpy(o, " output=", 8); o += 8;
    for (Py_ssize_t i = 0; i < outn; i++) {
        unsigned char ch = out[i];
        if (ch == '%') { memcpy(o, "%25", 3); o += 3; }
        else if (ch == ' ') { memcpy(o, "%20", 3); o += 3; }
        else if (ch == '=') { memcpy(o, "%3D", 3); o += 3; }
        else *o++ = (char)ch;
    }
    rec->len = o - rec->buf;
    gr->nlines += nl;
    return (int)nl;
not_handled:
    rec->len = mark;
    return 0;
}

static PyObject *run(PyObject *self, PyObject *args)
{
    PyObject *text, *plan, *checks, *now_ts;
    Py_ssize_t pos, end;
    Plan pl = {0};
    if (!PyArg_ParseTuple(args, "UnnO!O!U:run", &text, &pos, &end, &PyTuple_Type, &plan,
                          &PyDict_Type, &checks, &now_ts))
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) Py_RETURN_NONE;
    Py_ssize_t tlen = PyUnicode_GET_LENGTH(text);
    if (pos < 0 || end > tlen || pos > end) {
        PyErr_SetString(PyExc_ValueError, "bad range");
        return NULL;
    }
    if (PyTuple_GET_SIZE(plan) != 2 + P_N) goto bad_plan;
    PyObject *prefixes = PyTuple_GET_ITEM(plan, 0), *want = PyTuple_GET_ITEM(plan, 1);
    if (!PyTuple_Check(prefixes) || PyTuple_GET_SIZE(prefixes) > MAX_FIELDS
            || PyTuple_GET_SIZE(prefixes) < 1) goto bad_plan;
    pl.nfields = PyTuple_GET_SIZE(prefixes);
    for (Py_ssize_t i = 0; i < pl.nfields; i++) {
        pl.key[i] = ascii_of(PyTuple_GET_ITEM(prefixes, i), &pl.keylen[i]);
        if (pl.key[i] == NULL) goto bad_plan;
    }
    pl.want = ascii_of(want, &pl.wantlen);
    pl.now = ascii_of(now_ts, &pl.nowlen);
    if (pl.want == NULL || pl.now == NULL) goto bad_plan;
    for (int i = 0; i < P_N; i++) {
        pl.ix[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 + i));
        if (pl.ix[i] == -1 && PyErr_Occurred()) return NULL;
        if (pl.ix[i] < -1 || pl.ix[i] >= pl.nfields) goto bad_plan;
    }
    if (pl.ix[P_HOST] < 0 || (pl.ix[P_SERVICE] >= 0 && pl.ix[P_SERVICE] != pl.ix[P_HOST] + 1))
        goto bad_plan;
    pl.checks = checks;
    pl.now_ts = now_ts;
    const unsigned char *data = PyUnicode_1BYTE_DATA(text);
    Groups g = {NULL, 0, 0, NULL, 0};
    PyObject *key = NULL, *result = NULL, *bodies = NULL;
    Py_ssize_t records = 0, nlines = 0;
    while (pos < end) {
        const unsigned char *nl = memchr(data + pos, '\n', (size_t)(end - pos));
        Py_ssize_t le = nl ? nl - data : end;
        Py_CLEAR(key);
        int r = le == pos ? 0 : do_record(data + pos, le - pos, &pl, &g, &key);
        if (r < 0) goto done;
        if (r == 0) break;
        nlines += r;
        records++;
        pos = le + 1;
    }
    if (pos > end) pos = end;
    Py_ssize_t used = 0;
    for (Py_ssize_t i = 0; i < g.n; i++) used += g.groups[i].nlines > 0;
    bodies = PyList_New(used);
    if (bodies == NULL) goto done;
    for (Py_ssize_t i = 0, j = 0; i < g.n; i++) {
        Group *gr = &g.groups[i];
        if (gr->nlines == 0) continue;  /* (its only record was not handled) */
        /* (ASCII, as the skeletons are: a skeleton of other bytes is an error) */
        PyObject *body = PyUnicode_DecodeASCII(gr->body.buf, gr->body.len, "strict");
        if (body == NULL) goto done;
        PyObject *topic = PyUnicode_DecodeASCII(gr->topic, gr->topiclen, "strict");
        if (topic == NULL) { Py_DECREF(body); goto done; }
        PyObject *item = Py_BuildValue("(NNn)", topic, body, gr->nlines);
        if (item == NULL) goto done;
        PyList_SET_ITEM(bodies, j++, item);
    }
    result = Py_BuildValue("(nnnOO)", pos, records, nlines, bodies,
                           pos < end && key != NULL ? key : Py_None);
done:
    Py_XDECREF(bodies);
    Py_XDECREF(key);
    groups_free(&g);
    return result;
bad_plan:
    PyErr_SetString(PyExc_ValueError, "bad plan");
    return NULL;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS,
     "run(text, pos, end, plan, checks, now_ts) -> (pos, records, lines, bodies, key) | None"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastspool",
    "The C fast way of monbus nagios spool (see bridges/nagios/_fastspool.c).", -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__fastspool(void)
{
    generation_str = PyUnicode_InternFromString("generation");
    if (generation_str == NULL) return NULL;
    return PyModule_Create(&module);
}
