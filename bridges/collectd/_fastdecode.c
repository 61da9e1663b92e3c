/* monbus.bridges.collectd._fastdecode: the collectd listener's hot loop in C (optional;
 * network.py has the same walk in Python and uses this only when it was built).
 *
 * walk(datagram: bytes, plans: dict) -> (lines, value_lists, nan_values) | [miss, ...] | None
 * repr_text(v: float) -> str: the walk's float text, repr(v) (for the tests)
 *
 * Walks the parts of one plain datagram of collectd's network protocol (see network.py)
 * and makes the monbus line of every value, straight from the bytes.  Everything that is
 * not text arithmetic stays in Python: `plans` maps a value list's identity (the key
 * below) to its plan, made by NetworkDecoder from LineMaker's plan (write_graphite naming,
 * types.db names, annotations), or to None for "the exact path handles this value list".
 *
 *   key:  for host, plugin, plugin instance, type, type instance: one length byte and the
 *         raw part payload (NUL included; an unset name is the one byte "\0"), then the
 *         value kind bytes, then the interval as the 8 bytes of a C double
 *   plan: (ascii: bool, prefix0: bytes, suffix0: bytes, prefix1, suffix1, ...), one
 *         prefix/suffix pair per value (UTF-8); a value's line is
 *         prefix + value + " " + time + suffix
 *
 * The conservative subset: parts HOST, TIME, PLUGIN, PLUGIN_INSTANCE, TYPE, TYPE_INSTANCE,
 * VALUES, INTERVAL, TIME_HR, INTERVAL_HR only; every length sane (>= 4, inside the
 * datagram, no trailing bytes); name parts 1 to 128 bytes ending in a NUL; numeric parts
 * 12 bytes; VALUES with a count that agrees with the length, known kinds, a non-empty
 * host, plugin and type and a non-zero time that prints as an integer below 2^63 or as a
 * fraction.  Anything else returns None and the caller re-does the whole datagram with the
 * exact Python path, which reports what is wrong.  Value lists whose key is not in `plans`
 * are collected, and if there are any (and nothing else is wrong) the result is the list
 * of them, each (host, plugin, plugin instance, type, type instance: raw bytes, count and
 * kinds: bytes, interval: float, key: bytes): the caller decodes that datagram the exact
 * way and learns their plans.
 *
 * Number text is Python's: counter and absolute values as unsigned, derive as signed
 * 64-bit decimals; a gauge that is an integer in (-1e16, 1e16) as that integer, any other
 * finite gauge as repr(float); NaN and infinite gauges are skipped and counted.  The time:
 * an integral time as an integer, any other as repr(float).  repr(float) is made here for
 * values in [1, 2^53) (fmt_repr_fixed) and by PyOS_double_to_string 'r' with
 * Py_DTSF_ADD_DOT_0 (as float.__repr__) for the rest.  Pure: no I/O, no state between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NAME_MAX_LEN 128          /* DATA_MAX_NAME_LEN, with the NUL */
#define KEY_MAX (5 * (1 + NAME_MAX_LEN) + 65536 / 9 + 8)
#define NUM_MAX 64                /* any number text below */
#define HR (1.0 / 1073741824.0)   /* 2^-30 s */

static inline unsigned rd16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

static inline uint64_t rd64be(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static inline double rd_gauge(const unsigned char *p)  /* little-endian IEEE double */
{
    uint64_t v = 0;
    double d;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    memcpy(&d, &v, sizeof d);
    return d;
}

/* decimal text of v into out (no NUL); returns the length */
static int fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

static int fmt_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(out, (uint64_t)v);
}

/* repr(v) for a v with 1 <= |v| < 2^53 that is not an integer: the common case of a
 * collectd time (a count of 2^-30 s) and of a fractional gauge; returns the length, or 0
 * if v is outside that range.
 *
 * repr() is the shortest decimal that reads back as v (with round-half-even reading) and,
 * of several as short, the nearest to v (a tie between two: the one with the even last
 * digit), Python's dtoa.c mode 0.  In this range repr is in fixed notation (an integer
 * part of 1 to 16 digits, a point, k >= 1 fraction digits: 17 significant digits at most
 * suffice for any double) and v = m / 2^s exactly, with m < 2^53 and 1 <= s <= 52.  So for
 * k = 1, 2, ...: the decimal c / 10^k nearest to v (c = m * 10^k / 2^s rounded half even,
 * in 128-bit integers) is taken at the first k where it reads back as v, i.e. lies within
 * half a unit in the last place of v: |c * 2^s - m * 10^k| < 10^k / 2, or equal to it if
 * m is even.  (The nearest k-digit decimal is within that distance if any k-digit decimal
 * is; a v in this range is never within it of an integer, so k = 0 never is.)
 * tests/bridges/collectd/test_collectd_fastdecode.py compares this with repr(). */
static int fmt_repr_fixed(char *out, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63);
    int exp = (int)((bits >> 52) & 0x7ff);
    if (exp < 1023 || exp >= 1023 + 52) return 0;  /* |v| < 1 or >= 2^52: integers too */
    uint64_t m = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
    int s = 1075 - exp;  /* v = m / 2^s, 1 <= s <= 52 */
    if ((m & ((UINT64_C(1) << s) - 1)) == 0) return 0;  /* an integer */
    uint64_t ipart = m >> s;
    int idigits = 0;
    for (uint64_t x = ipart; x; x /= 10) idigits++;
    unsigned __int128 pow10 = 1, mask = ((unsigned __int128)1 << s) - 1;
    unsigned __int128 half = (unsigned __int128)1 << (s - 1);
    for (int k = 1; idigits + k <= 17; k++) {
        pow10 *= 10;
        unsigned __int128 p = (unsigned __int128)m * pow10;  /* < 2^53 * 10^16 < 2^107 */
        unsigned __int128 c = p >> s, r = p & mask;
        if (r > half || (r == half && (c & 1))) c++;
        unsigned __int128 cs = c << s;
        unsigned __int128 dist = cs > p ? cs - p : p - cs;  /* <= 2^(s-1) */
        if (2 * dist < pow10 || (2 * dist == pow10 && !(m & 1))) {
            /* c / 10^k: integer part, point, k digits (c < 10^17 here) */
            uint64_t cc = (uint64_t)c, p10 = (uint64_t)pow10;
            int n = 0;
            if (neg) out[n++] = '-';
            n += fmt_u64(out + n, cc / p10);
            out[n++] = '.';
            uint64_t frac = cc % p10;
            for (int i = k - 1; i >= 0; i--) {
                out[n + i] = (char)('0' + frac % 10);
                frac /= 10;
            }
            return n + k;
        }
    }
    return 0;  /* cannot happen: 17 significant digits always read back */
}

/* repr(v) of a finite double; returns the length, or -1 with an exception set */
static int fmt_repr(char *out, double v)
{
    int fast = fmt_repr_fixed(out, v);
    if (fast) return fast;
    char *s = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) return -1;
    size_t n = strlen(s);
    if (n >= NUM_MAX) {  /* cannot happen: 17 digits, sign, point, exponent */
        PyMem_Free(s);
        PyErr_SetString(PyExc_SystemError, "float repr too long");
        return -1;
    }
    memcpy(out, s, n);
    PyMem_Free(s);
    return (int)n;
}

/* a gauge as LineMaker writes it; returns the length, -1 on error */
static int fmt_gauge(char *out, double v)
{
    if (v == floor(v) && v > -1e16 && v < 1e16)
        return fmt_i64(out, (int64_t)v);
    return fmt_repr(out, v);
}

typedef struct {
    const unsigned char *p;  /* the raw payload, NUL included */
    Py_ssize_t len;
} Name;

static const unsigned char UNSET[1] = {0};

/* one line into `lines`: prefix + num + " " + ts + suffix; 0, or -1 with an exception */
static int add_line(PyObject *lines, PyObject *pre, const char *num, int nlen,
                    const char *ts, int tlen, PyObject *suf, int ascii, char **buf,
                    Py_ssize_t *cap)
{
    Py_ssize_t plen = PyBytes_GET_SIZE(pre), slen = PyBytes_GET_SIZE(suf);
    Py_ssize_t len = plen + nlen + 1 + tlen + slen;
    PyObject *line = NULL;
    char *d;
    if (ascii) {
        line = PyUnicode_New(len, 127);
        if (line == NULL) return -1;
        d = (char *)PyUnicode_1BYTE_DATA(line);
    } else {
        if (len > *cap) {
            char *nb = PyMem_Realloc(*buf, (size_t)len);
            if (nb == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            *buf = nb;
            *cap = len;
        }
        d = *buf;
    }
    memcpy(d, PyBytes_AS_STRING(pre), (size_t)plen);
    memcpy(d + plen, num, (size_t)nlen);
    d[plen + nlen] = ' ';
    memcpy(d + plen + nlen + 1, ts, (size_t)tlen);
    memcpy(d + plen + nlen + 1 + tlen, PyBytes_AS_STRING(suf), (size_t)slen);
    if (!ascii) {
        line = PyUnicode_DecodeUTF8(d, len, "strict");
        if (line == NULL) return -1;
    }
    int r = PyList_Append(lines, line);
    Py_DECREF(line);
    return r;
}

static PyObject *miss_record(Name *names, const unsigned char *counted, Py_ssize_t ncounted,
                             double interval, const char *key, Py_ssize_t klen)
{
    return Py_BuildValue("(y#y#y#y#y#y#dy#)",
                         (const char *)names[0].p, names[0].len,
                         (const char *)names[1].p, names[1].len,
                         (const char *)names[2].p, names[2].len,
                         (const char *)names[3].p, names[3].len,
                         (const char *)names[4].p, names[4].len,
                         (const char *)counted, ncounted, interval, key, klen);
}

static PyObject *fast_walk(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data, *plans;
    if (!PyArg_ParseTuple(args, "O!O!:walk", &PyBytes_Type, &data, &PyDict_Type, &plans))
        return NULL;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data), pos = 0;
    /* names[]: host, plugin, plugin instance, type, type instance (part types 0, 2-5) */
    Name names[5];
    for (int i = 0; i < 5; i++) {
        names[i].p = UNSET;
        names[i].len = 1;
    }
    static const int slot[6] = {0, -1, 1, 2, 3, 4};
    double time = 0.0, interval = 0.0, ts_of = 0.0;
    char ts[NUM_MAX];
    int tlen = -1;  /* ts is the text of ts_of; -1: not made yet */
    char num[NUM_MAX];
    char key[KEY_MAX];
    char *lbuf = NULL;
    Py_ssize_t lcap = 0;
    long nvl = 0, nan = 0;
    /* plan: the plan of the value list at hand, held (a strong reference) */
    PyObject *lines = PyList_New(0), *misses = NULL, *result = NULL, *plan = NULL;
    if (lines == NULL) return NULL;

    while (end - pos >= 4) {
        unsigned ptype = rd16(buf + pos), plen = rd16(buf + pos + 2);
        if (plen < 4 || (Py_ssize_t)plen > end - pos) goto fallback;
        const unsigned char *p = buf + pos + 4;
        Py_ssize_t n = (Py_ssize_t)plen - 4;  /* payload length */
        if (ptype <= 5 && ptype != 1) {
            /* a name: what PacketParser._string accepts */
            if (n == 0 || n > NAME_MAX_LEN || p[n - 1] != 0) goto fallback;
            names[slot[ptype]].p = p;
            names[slot[ptype]].len = n;
        } else if (ptype == 1 || (ptype >= 7 && ptype <= 9)) {
            if (plen != 12) goto fallback;
            uint64_t v = rd64be(p);
            if (ptype == 8) time = (double)v * HR;
            else if (ptype == 1) time = (double)v;
            else if (ptype == 9) interval = (double)v * HR;
            else interval = (double)v;
        } else if (ptype == 6) {
            if (plen < 6) goto fallback;
            Py_ssize_t count = rd16(p);
            if (count == 0 || (Py_ssize_t)plen != 6 + 9 * count) goto fallback;
            const unsigned char *kinds = p + 2, *vals = p + 2 + count;
            for (Py_ssize_t i = 0; i < count; i++)
                if (kinds[i] > 3) goto fallback;
            if (names[0].p[0] == 0 || names[1].p[0] == 0 || names[3].p[0] == 0 || time == 0.0)
                goto fallback;  /* an incomplete value list: reported by the exact path */
            /* the key */
            Py_ssize_t k = 0;
            for (int i = 0; i < 5; i++) {
                key[k++] = (char)names[i].len;
                memcpy(key + k, names[i].p, (size_t)names[i].len);
                k += names[i].len;
            }
            memcpy(key + k, kinds, (size_t)count);
            k += count;
            memcpy(key + k, &interval, sizeof interval);
            k += sizeof interval;
            PyObject *kobj = PyBytes_FromStringAndSize(key, k);
            if (kobj == NULL) goto done;
            Py_CLEAR(plan);
            plan = PyDict_GetItemWithError(plans, kobj);
            if (plan == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(kobj);
                    goto done;
                }
                if (misses == NULL && (misses = PyList_New(0)) == NULL) {
                    Py_DECREF(kobj);
                    goto done;
                }
                PyObject *m = miss_record(names, p, 2 + count, interval, key, k);
                Py_DECREF(kobj);
                if (m == NULL) goto done;
                int r = PyList_Append(misses, m);
                Py_DECREF(m);
                if (r < 0) goto done;
                pos += plen;
                continue;
            }
            Py_INCREF(plan);
            Py_DECREF(kobj);
            if (plan == Py_None) goto fallback;
            if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 1 + 2 * count) {
                PyErr_SetString(PyExc_TypeError, "collectd fast decode: malformed plan");
                goto done;
            }
            for (Py_ssize_t i = 1; i <= 2 * count; i++) {
                if (!PyBytes_Check(PyTuple_GET_ITEM(plan, i))) {
                    PyErr_SetString(PyExc_TypeError, "collectd fast decode: malformed plan");
                    goto done;
                }
            }
            nvl++;
            if (misses != NULL) {  /* the exact path decodes this datagram anyway */
                pos += plen;
                continue;
            }
            if (tlen < 0 || time != ts_of) {
                ts_of = time;
                if (time == floor(time)) {
                    if (!(time < 9223372036854775807.0)) goto fallback;
                    tlen = fmt_i64(ts, (int64_t)time);
                } else {
                    tlen = fmt_repr(ts, time);
                    if (tlen < 0) goto done;
                }
            }
            int ascii = PyObject_IsTrue(PyTuple_GET_ITEM(plan, 0));
            if (ascii < 0) goto done;
            for (Py_ssize_t i = 0; i < count; i++) {
                const unsigned char *v = vals + 8 * i;
                int nlen;
                switch (kinds[i]) {
                case 1: {
                    double g = rd_gauge(v);
                    if (!isfinite(g)) {  /* NaN (collectd's "U") or infinite */
                        nan++;
                        continue;
                    }
                    nlen = fmt_gauge(num, g);
                    if (nlen < 0) goto done;
                    break;
                }
                case 2:
                    nlen = fmt_i64(num, (int64_t)rd64be(v));
                    break;
                default:  /* 0 COUNTER, 3 ABSOLUTE */
                    nlen = fmt_u64(num, rd64be(v));
                }
                if (add_line(lines, PyTuple_GET_ITEM(plan, 1 + 2 * i), num, nlen, ts, tlen,
                             PyTuple_GET_ITEM(plan, 2 + 2 * i), ascii, &lbuf, &lcap) < 0)
                    goto done;
            }
        } else {
            goto fallback;  /* notifications, Sign/Encrypt, unknown parts */
        }
        pos += plen;
    }
    if (pos != end) goto fallback;  /* trailing bytes */
    if (misses != NULL) {
        result = misses;
        misses = NULL;
    } else {
        result = Py_BuildValue("(Oll)", lines, nvl, nan);
    }
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(plan);
    Py_XDECREF(misses);
    Py_DECREF(lines);
    PyMem_Free(lbuf);
    return result;
}

static PyObject *fast_repr(PyObject *self, PyObject *arg)
{
    (void)self;
    char out[NUM_MAX];
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred()) return NULL;
    if (!isfinite(v)) {
        PyErr_SetString(PyExc_ValueError, "not a finite number");
        return NULL;
    }
    int n = fmt_repr(out, v);
    if (n < 0) return NULL;
    return PyUnicode_FromStringAndSize(out, n);
}

static PyMethodDef methods[] = {
    {"repr_text", fast_repr, METH_O,
     "repr_text(v: float) -> str: repr(v) as the walk writes it (for the tests)."},
    {"walk", fast_walk, METH_VARARGS,
     "walk(datagram: bytes, plans: dict) -> (lines, value_lists, nan_values), or a list of "
     "value lists without a plan, or None if the datagram needs the exact path (see "
     "bridges/collectd/network.py NetworkDecoder)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monbus.bridges.collectd._fastdecode",
    "collectd network datagrams to monbus lines in C (see network.py NetworkDecoder).", -1,
    methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__fastdecode(void) { return PyModule_Create(&module); }
