/* monbus.bridges.graphite._fastrates: `monbus carbon --rates` in C (optional; forward.py's
 * Formatter.lines is the same thing in Python, the reference, and uses this only when built).
 *
 * convert(body: bytes, start: int, state: dict, prefix: bytes, drop_tags: bool,
 *         names: dict | None, name_of, max_rate: float | None, max_series: int)
 *   -> (data: bytes, nlines: int, stop: int, counts: tuple[int, ...])
 *
 * Walks the lines of body[start:] (separated by '\n', empty lines skipped) and, for each,
 * does what Formatter.lines does: the carbon line `<name> <value> <timestamp>\n`, with the
 * value of an mtype=counter/derive line replaced by its per-second rate (RateConverter.feed,
 * on the same `state` dict as RateConverter._last: series -> (value, timestamp), so the
 * Python and C paths can take turns on one state), numbers written like
 * core.line.format_number.  It stops at the first line outside a conservative subset of the
 * grammar, before changing anything for that line, and returns its offset as `stop`
 * (len(body) if it did every line); the caller does that line with the Python path and
 * calls again after it.  So every line done here is one the core codec accepts as it is.
 *
 * The subset: printable ASCII only (no CR, tab, other control bytes or non-ASCII); a series
 * of at most 4096 bytes whose path has >= 2 non-empty components and optional ";key=value"
 * tags (key: not '!', '^', '='; value: not ';', not starting with '~'); value and timestamp
 * [+-](digits[.digits]|.digits)[e[+-]digits] of at most 300 bytes, finite, timestamp >= 0;
 * annotations key=value with key [a-z][a-z0-9_]* (at most 32, no duplicate), no '%XX'
 * escape of a byte >= 0x80 in a value (so unescaping always gives UTF-8), an mtype among the
 * five without '%'; a state entry, if any, that is a tuple of two floats.
 *
 * Names: with `names` None, the carbon name is prefix + series (cut at the first ';' when
 * drop_tags).  Otherwise `names` (series str -> name bytes, or False: excluded by the
 * patterns) is looked up, and for a series not in it name_of(series) is called (it fills
 * `names`); its None means "leave this line to the Python path".
 *
 * counts: (no_rate_lines, unmatched_lines, rates, first, resets, wraps, over_max,
 *          not_advancing, evictions), to add to the Formatter's and RateConverter's stats.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define MAX_SERIES 4096
#define MAX_NUMBER 300
#define MAX_ANN 32

enum { C_NO_RATE, C_UNMATCHED, C_RATES, C_FIRST, C_RESETS, C_WRAPS, C_OVER_MAX,
       C_NOT_ADVANCING, C_EVICTIONS, C_N };

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *np = PyMem_Realloc(b->p, (size_t)cap);
    if (np == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
}

static int is_print(unsigned char c) { return c > 0x20 && c < 0x7f; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* the decimal digits of a non-negative integer < 1e16 */
static int put_uint(Buf *b, unsigned long long u)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (buf_reserve(b, (Py_ssize_t)sizeof tmp - i) < 0)
        return -1;
    buf_put(b, tmp + i, (Py_ssize_t)sizeof tmp - i);
    return 0;
}

/* core.line.format_number: integers in (-1e16, 1e16) as int, everything else as repr().
 * Appends to b; -1 on error. */
static int put_number(Buf *b, double v)
{
    if (isfinite(v) && v == floor(v) && v > -1e16 && v < 1e16) {
        if (v < 0) {
            if (buf_reserve(b, 1) < 0)
                return -1;
            buf_put(b, "-", 1);
            v = -v;
        }
        return put_uint(b, (unsigned long long)v);
    }
    char *s = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL)
        return -1;
    Py_ssize_t n = (Py_ssize_t)strlen(s);
    if (buf_reserve(b, n) < 0) {
        PyMem_Free(s);
        return -1;
    }
    buf_put(b, s, n);
    PyMem_Free(s);
    return 0;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21,
                               1e22};

/* The usual number, read without strtod: -?digits[.digits] with at most 15 significant
 * digits and at most 22 after the point.  Then m (< 10**15 < 2**53) and 10**k are exact
 * doubles and one division m / 10**k is correctly rounded, so *v is what float() reads.
 * *canon is set when the text is exactly format_number(*v): an integer without leading zero
 * (not "-0"), or a decimal without leading or trailing zero and |v| >= 1e-4 (repr's fixed
 * notation; with <= 15 significant digits repr, the shortest text read back as *v, gives
 * the same digits, DBL_DIG being 15).  Returns 0 if p..e is not of this form. */
static int plain_number(const char *p, const char *e, double *v, int *canon)
{
    int neg = 0, sig = 0, lead = 0, flen = 0, dot = 0;
    unsigned long long m = 0;
    const char *d = p;
    if (p < e && *p == '-') {
        neg = 1;
        d = ++p;
    }
    if (p == e || !is_digit(*p))
        return 0;
    while (p < e && is_digit(*p)) {
        if (m || *p != '0') {
            m = m * 10 + (unsigned)(*p - '0');
            if (++sig > 15)
                return 0;
        }
        p++;
    }
    Py_ssize_t dlen = p - d;
    if (p < e && *p == '.') {
        dot = 1;
        p++;
        while (p < e && is_digit(*p)) {
            if (m || *p != '0') {
                m = m * 10 + (unsigned)(*p - '0');
                if (++sig > 15)
                    return 0;
            } else {
                lead++;
            }
            if (++flen > 22)
                return 0;
            p++;
        }
    }
    if (p != e)
        return 0;
    double x = flen ? (double)m / POW10[flen] : (double)m;
    *v = neg ? -x : x;
    if (!dot)
        *canon = (dlen == 1 && *d == '0') ? !neg : *d != '0';
    else
        *canon = flen > 0 && e[-1] != '0' && (dlen == 1 && *d == '0' ? lead <= 3 : *d != '0');
    return 1;
}


/* p..e is [+-](digits[.digits]|.digits)[e[+-]digits] (core.line's _NUMBER_RE) */
static int number_ok(const char *p, const char *e)
{
    int digits = 0;
    if (e - p < 1 || e - p > MAX_NUMBER)
        return 0;
    if (*p == '+' || *p == '-')
        p++;
    while (p < e && is_digit(*p)) { p++; digits++; }
    if (p < e && *p == '.') {
        p++;
        while (p < e && is_digit(*p)) { p++; digits++; }
    }
    if (!digits)
        return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e)
            return 0;
        while (p < e && is_digit(*p))
            p++;
    }
    return p == e;
}

/* the number p..e (checked by number_ok; the byte at e is ' ', '\n' or the bytes' NUL), as
 * float() reads it; 0 if it is not finite */
static int number_value(const char *p, const char *e, double *out)
{
    char *end = NULL;
    double v = PyOS_string_to_double(p, &end, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != e || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* core.line._check_series for a printable-ASCII series s..e; 1 if valid */
static int series_ok(const char *s, const char *e, const char **tags)
{
    Py_ssize_t n = e - s;
    const char *p = s;
    int dots = 0;
    if (n < 1 || n > MAX_SERIES)
        return 0;
    /* path: non-empty components separated by '.' */
    const char *comp = p;
    while (p < e && *p != ';') {
        if (*p == '.') {
            if (p == comp)
                return 0;
            dots++;
            comp = p + 1;
        }
        p++;
    }
    if (p == comp || dots == 0)
        return 0;
    *tags = p;
    /* tags: ;key=value, key not empty and without '!^=', value not empty, not '~' first */
    while (p < e) {
        p++;                              /* the ';' */
        const char *k = p;
        while (p < e && *p != ';' && *p != '=') {
            if (*p == '!' || *p == '^')
                return 0;
            p++;
        }
        if (p == e || *p != '=' || p == k)
            return 0;
        p++;                              /* the '=' */
        if (p == e || *p == ';' || *p == '~')
            return 0;
        while (p < e && *p != ';')
            p++;
    }
    return 1;
}

static int hex_high(char c)
{
    return (c >= '8' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* the annotations p..e (after the timestamp's ' '); sets *mtype: 0 none/gauge/absolute/state,
 * 1 counter, 2 derive.  1 if they are in the subset. */
static int annotations_ok(const char *p, const char *e, int *mtype)
{
    const char *keys[MAX_ANN];
    Py_ssize_t klen[MAX_ANN];
    int nk = 0;
    *mtype = 0;
    for (;;) {
        const char *k = p;
        if (p == e || !(*p >= 'a' && *p <= 'z'))
            return 0;
        p++;
        while (p < e && ((*p >= 'a' && *p <= 'z') || is_digit(*p) || *p == '_'))
            p++;
        if (p == e || *p != '=')
            return 0;
        Py_ssize_t kl = p - k;
        for (int i = 0; i < nk; i++)
            if (klen[i] == kl && memcmp(keys[i], k, (size_t)kl) == 0)
                return 0;
        if (nk == MAX_ANN)
            return 0;
        keys[nk] = k;
        klen[nk++] = kl;
        p++;                              /* the '=' */
        const char *v = p;
        while (p < e && *p != ' ') {
            if (*p == '%' && e - p > 2 && is_hex(p[1]) && is_hex(p[2]) && hex_high(p[1]))
                return 0;
            p++;
        }
        if (kl == 5 && memcmp(k, "mtype", 5) == 0) {
            Py_ssize_t vl = p - v;
#define IS(word) (vl == (Py_ssize_t)sizeof(word) - 1 && memcmp(v, word, sizeof(word) - 1) == 0)
            if (IS("counter"))
                *mtype = 1;
            else if (IS("derive"))
                *mtype = 2;
            else if (!(IS("gauge") || IS("absolute") || IS("state")))
                return 0;
#undef IS
        }
        if (p == e)
            return 1;
        p++;                              /* the ' ' */
    }
}

/* RateConverter.feed.  Returns 1 with *rate set, 0 for no rate, 2 if the state entry is not
 * (float, float) (the line goes to the Python path; nothing changed), -1 on error. */
static int feed(PyObject *state, PyObject *key, double value, double ts, int counter,
                int has_max, double max_rate, Py_ssize_t max_series, Py_ssize_t *counts,
                double *rate)
{
    PyObject *last = PyDict_GetItemWithError(state, key);
    if (last == NULL && PyErr_Occurred())
        return -1;
    double lv = 0, lt = 0;
    if (last != NULL) {
        if (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 2
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(last, 0))
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(last, 1)))
            return 2;
        lv = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(last, 0));
        lt = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(last, 1));
    }
    if (last == NULL && PyDict_GET_SIZE(state) >= max_series) {
        PyDict_Clear(state);
        counts[C_EVICTIONS]++;
    }
    double dt = ts - lt;
    if (last != NULL && dt <= 0) {
        counts[C_NOT_ADVANCING]++;
        return 0;
    }
    PyObject *entry = Py_BuildValue("(dd)", value, ts);
    if (entry == NULL)
        return -1;
    int r = PyDict_SetItem(state, key, entry);
    Py_DECREF(entry);
    if (r < 0)
        return -1;
    if (last == NULL) {
        counts[C_FIRST]++;
        return 0;
    }
    /* `last` may be gone now (replaced in the dict); lv, lt are copies */
    double delta = value - lv;
    if (delta < 0) {
        int wrapped = 0;
        if (counter && !(lv < 0 || value < 0) && lv < 18446744073709551616.0) {
            double width = lv < 4294967296.0 ? 4294967296.0 : 18446744073709551616.0;
            double d = width - lv + value;
            if (!(d >= width / 2) && !(has_max && d / dt > max_rate)) {
                delta = d;
                wrapped = 1;
            }
        }
        if (!wrapped) {
            counts[C_RESETS]++;
            return 0;
        }
        counts[C_WRAPS]++;
    }
    double rt = delta / dt;
    if (has_max && rt > max_rate) {
        counts[C_OVER_MAX]++;
        return 0;
    }
    counts[C_RATES]++;
    *rate = rt;
    return 1;
}

static PyObject *convert(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *body, *state, *names, *name_of, *max_rate_obj;
    Py_ssize_t start, max_series;
    const char *prefix;
    Py_ssize_t prefix_len;
    int drop_tags;
    if (!PyArg_ParseTuple(args, "O!nO!y#pOOOn:convert", &PyBytes_Type, &body, &start,
                          &PyDict_Type, &state, &prefix, &prefix_len, &drop_tags, &names,
                          &name_of, &max_rate_obj, &max_series))
        return NULL;
    if (names != Py_None && !PyDict_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "names must be a dict or None");
        return NULL;
    }
    int has_max = max_rate_obj != Py_None;
    double max_rate = 0;
    if (has_max) {
        max_rate = PyFloat_AsDouble(max_rate_obj);
        if (max_rate == -1.0 && PyErr_Occurred())
            return NULL;
    }
    const char *data = PyBytes_AS_STRING(body);
    Py_ssize_t n = PyBytes_GET_SIZE(body);
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    Py_ssize_t counts[C_N] = {0};
    Py_ssize_t nlines = 0;
    Buf b = {NULL, 0, 0};
    Py_ssize_t pos = start;
    while (pos < n) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', (size_t)(n - pos));
        const char *end = nl ? nl : data + n;
        Py_ssize_t next = nl ? (nl - data) + 1 : n;
        if (end == line) {
            pos = next;
            continue;
        }
        /* fields: series ' ' value ' ' timestamp [' ' annotations] */
        const char *p = line;
        while (p < end && is_print((unsigned char)*p))
            p++;
        const char *s_end = p;
        if (p == end || *p != ' ')
            break;
        const char *v = ++p;
        while (p < end && is_print((unsigned char)*p))
            p++;
        const char *v_end = p;
        if (p == end || *p != ' ')
            break;
        const char *t = ++p;
        while (p < end && is_print((unsigned char)*p))
            p++;
        const char *t_end = p;
        int mtype = 0;
        if (p < end) {
            if (*p != ' ')
                break;
            const char *a = ++p;
            while (p < end && (*p == ' ' || is_print((unsigned char)*p)))
                p++;
            if (p != end || !annotations_ok(a, end, &mtype))
                break;
        }
        const char *tags = NULL;
        double value, ts;
        int v_canon = 0, t_canon = 0;
        if (!series_ok(line, s_end, &tags))
            break;
        if (!plain_number(v, v_end, &value, &v_canon)
            && !(number_ok(v, v_end) && number_value(v, v_end, &value)))
            break;
        if (!plain_number(t, t_end, &ts, &t_canon)
            && !(number_ok(t, t_end) && number_value(t, t_end, &ts)))
            break;
        if (ts < 0)
            break;
        /* the carbon name */
        PyObject *key = NULL;
        PyObject *name = NULL;       /* a new reference where name_owned */
        int name_owned = 0;
        if (names != Py_None) {
            key = PyUnicode_DecodeASCII(line, s_end - line, NULL);
            if (key == NULL)
                goto error;
            name = PyDict_GetItemWithError(names, key);
            if (name == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(key);
                    goto error;
                }
                name = PyObject_CallOneArg(name_of, key);
                if (name == NULL) {
                    Py_DECREF(key);
                    goto error;
                }
            } else {
                Py_INCREF(name);         /* kept while state changes below */
            }
            name_owned = 1;
            if (name == Py_False) {
                counts[C_UNMATCHED]++;
                Py_DECREF(key);
                if (name_owned)
                    Py_DECREF(name);
                pos = next;
                continue;
            }
            if (!PyBytes_Check(name)) {   /* None: the Python path does this line */
                Py_DECREF(key);
                if (name_owned)
                    Py_DECREF(name);
                break;
            }
        }
        if (mtype) {
            if (key == NULL) {
                key = PyUnicode_DecodeASCII(line, s_end - line, NULL);
                if (key == NULL)
                    goto error;
            }
            double rate = 0;
            int r = feed(state, key, value, ts, mtype == 1, has_max, max_rate, max_series,
                         counts, &rate);
            if (r != 1) {
                Py_DECREF(key);
                if (name_owned)
                    Py_DECREF(name);
                if (r < 0)
                    goto error;
                if (r == 2)
                    break;
                counts[C_NO_RATE]++;
                pos = next;
                continue;
            }
            value = rate;
            v_canon = 0;
        }
        Py_XDECREF(key);
        const char *nm;
        Py_ssize_t nml;
        if (name != NULL) {
            nm = PyBytes_AS_STRING(name);
            nml = PyBytes_GET_SIZE(name);
        } else {
            nm = line;
            nml = (drop_tags ? tags : s_end) - line;
        }
        if (buf_reserve(&b, prefix_len + nml + 2) < 0) {
            if (name_owned)
                Py_DECREF(name);
            goto error;
        }
        if (name == NULL)
            buf_put(&b, prefix, prefix_len);
        buf_put(&b, nm, nml);
        if (name_owned)
            Py_DECREF(name);
        buf_put(&b, " ", 1);
        if (v_canon) {             /* the text is already what format_number writes */
            if (buf_reserve(&b, v_end - v) < 0)
                goto error;
            buf_put(&b, v, v_end - v);
        } else if (put_number(&b, value) < 0) {
            goto error;
        }
        if (buf_reserve(&b, 1) < 0)
            goto error;
        buf_put(&b, " ", 1);
        if (t_canon) {
            if (buf_reserve(&b, t_end - t) < 0)
                goto error;
            buf_put(&b, t, t_end - t);
        } else if (put_number(&b, ts) < 0) {
            goto error;
        }
        if (buf_reserve(&b, 1) < 0)
            goto error;
        buf_put(&b, "\n", 1);
        nlines++;
        pos = next;
    }
    PyObject *out = PyBytes_FromStringAndSize(b.p ? b.p : "", b.len);
    PyMem_Free(b.p);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nnn(nnnnnnnnn))", out, nlines, pos, counts[0], counts[1],
                         counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
                         counts[8]);
error:
    PyMem_Free(b.p);
    return NULL;
}

static PyMethodDef methods[] = {
    {"convert", convert, METH_VARARGS,
     "convert(body, start, state, prefix, drop_tags, names, name_of, max_rate, max_series)"
     " -> (data, nlines, stop, counts): carbon lines with per-second rates (see the source)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastrates", NULL, -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__fastrates(void) { return PyModule_Create(&module); }
