/* The protobuf codec's hot loops in C: Kubernetes JSON dict <-> protobuf bytes, table driven.
 *
 * Nothing here knows a Kubernetes kind. servicenet/api/pb/native.py builds one plan per message
 * type from the descriptors and the Go tags (the same facts decode.py and encode.py read) and hands
 * them to DecPlan.fill / EncPlan.fill; decode() and encode() walk those tables.
 *
 * The contract is the pure-Python fast paths' (decode.py, encode.py), which stay the reference:
 *  - decode(plan, raw) returns the dict decode.decode_message returns, or raises the Fallback class
 *    given to configure() for anything that is not Go's canonical form (decode.py's rules, exactly),
 *    including truncation, bad UTF-8 and nesting deeper than MAX_DEPTH. Never reads past the buffer.
 *  - encode(plan, obj) returns the bytes encode.encode_message returns, or raises Fallback when a
 *    value does not fit (native.py then runs encode.py, which raises the descriptive error).
 * Rare shapes (Time, Duration, RawExtension, wrappers, float formatting, base64 decoding) call the
 * Python helpers given to configure(), so their rules are written once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MAX_DEPTH 100

/* ---- configuration (Python helpers) ---------------------------------------------------------- */

static PyObject *Fallback;      /* decode.Fallback */
static PyObject *fmt_time;      /* (seconds, nanos, micro) -> str */
static PyObject *fmt_duration;  /* (ns) -> str */
static PyObject *go_float;      /* (float) -> int | float */
static PyObject *json_loads;    /* orjson.loads */
static PyObject *b64decode;     /* (str) -> bytes, strict */
static PyObject *json_dumps;    /* orjson.dumps */
static PyObject *SKIP;          /* a private sentinel: "leave this field out" (never counted) */

static PyObject *
fallback(void)
{
    if (!PyErr_Occurred())
        PyErr_SetNone(Fallback);
    return NULL;
}

/* ---- decoding ------------------------------------------------------------------------------- */

enum { R_UNSUPPORTED, R_INT32, R_INT64, R_BOOL, R_STR, R_BYTES, R_RAW, R_DOUBLE, R_FLOAT, R_MSG,
       R_MAP_SS, R_MAP };
enum { M_SET, M_LIST, M_MAP, M_INLINE, M_OMITZERO };
enum { S_NONE, S_TIME, S_MICRO_TIME, S_DURATION, S_QUANTITY, S_INT_OR_STRING, S_RAW, S_WRAPPER,
       S_UNSUPPORTED };
#define SPECIAL_SLOTS 8

typedef struct DecPlan DecPlan;

typedef struct {
    PyObject *key;     /* JSON key (str); for specials, unused */
    int number;
    int reader;
    int mode;
    int omit;          /* a zero scalar is left out */
    DecPlan *sub;      /* R_MSG: the message; R_MAP: the value's message or NULL */
    int vreader;       /* R_MAP: the value's reader */
    int vtag;          /* R_MAP: the value's full tag */
    PyObject *zero;    /* R_MAP with a scalar value: the value when absent */
} DecField;

struct DecPlan {
    PyObject_HEAD
    int filled;
    int special;
    Py_ssize_t nfields;
    DecField *fields;
    Py_ssize_t ntags;
    int16_t *by_tag;   /* full tag -> index in fields, or -1 */
    Py_ssize_t hint;   /* keys in the last object decoded: its dict is made that size (no regrowth) */
};

static int
rd_varint(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, uint64_t *out)
{
    Py_ssize_t p = *pos;
    uint64_t r = 0;
    int shift = 0;
    for (;;) {
        if (p >= end)
            return -1;
        uint8_t b = d[p++];
        r |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            if (shift == 63 && b > 1)
                return -1;
            *pos = p;
            *out = r;
            return 0;
        }
        shift += 7;
        if (shift > 63)
            return -1;
    }
}

/* the length of a length-delimited payload at *pos; *pos moves past the length */
static int
rd_len(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, Py_ssize_t *n)
{
    uint64_t v;
    if (rd_varint(d, pos, end, &v) < 0)
        return -1;
    if (v > (uint64_t)(end - *pos))
        return -1;
    *n = (Py_ssize_t)v;
    return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static PyObject *
b64_text(const uint8_t *s, Py_ssize_t n)
{
    Py_ssize_t out_len = ((n + 2) / 3) * 4;
    PyObject *out = PyUnicode_New(out_len, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    Py_ssize_t i = 0, j = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        o[j++] = B64[(v >> 18) & 63];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = B64[(v >> 6) & 63];
        o[j++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        o[j++] = B64[(v >> 18) & 63];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = '=';
        o[j++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        o[j++] = B64[(v >> 18) & 63];
        o[j++] = B64[(v >> 12) & 63];
        o[j++] = B64[(v >> 6) & 63];
        o[j++] = '=';
    }
    return out;
}

/* ---- calendar (proleptic Gregorian, days since 1970-01-01) ----------------------------------- */

static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* a Time as RFC 3339 to the second, or NULL without an exception when Python must do it */
static PyObject *
time_text(long long s)
{
    if (s < -62135596800LL || s > 253402300799LL)  /* outside years 1..9999: Python raises */
        return NULL;
    int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
    int64_t rem = s - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1000)  /* strftime does not pad such years: Python's answer */
        return NULL;
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
    return PyUnicode_FromStringAndSize(buf, 20);
}

/* "YYYY-MM-DDTHH:MM:SSZ" (ASCII, no fraction, no offset) as Unix seconds; 0 when it is that, -1
 * when Python must parse it (parse_time's other forms and its errors) */
static int
parse_plain_time(PyObject *v, long long *out)
{
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v) || PyUnicode_GET_LENGTH(v) != 20)
        return -1;
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(v);
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    for (int i = 0; i < 20; i++) {
        if (shape[i] == 'd') {
            if (c[i] < '0' || c[i] > '9')
                return -1;
        } else if (shape[i] == 'T' || shape[i] == 'Z') {
            if ((c[i] | 0x20) != (shape[i] | 0x20))
                return -1;
        } else if (c[i] != shape[i]) {
            return -1;
        }
    }
#define NUM2(i) ((c[i] - '0') * 10 + (c[i + 1] - '0'))
    int y = NUM2(0) * 100 + NUM2(2), mo = NUM2(5), d = NUM2(8), h = NUM2(11), mi = NUM2(14), sec = NUM2(17);
#undef NUM2
    if (y < 1 || mo < 1 || mo > 12)  /* calendar.timegm's own checks (it takes day 31 of any month) */
        return -1;
    *out = (long long)((days_from_civil(y, mo, 1) + d - 1) * 86400 + h * 3600 + mi * 60 + sec);
    return 0;
}

static PyObject *dec_fields(DecPlan *plan, const uint8_t *d, Py_ssize_t pos, Py_ssize_t end, int depth);

/* a sub-message's payload at *pos (its length first) */
static PyObject *
dec_message(DecPlan *plan, const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, int depth)
{
    Py_ssize_t n;
    if (rd_len(d, pos, end, &n) < 0)
        return fallback();
    Py_ssize_t start = *pos;
    *pos = start + n;
    return dec_fields(plan, d, start, start + n, depth + 1);
}

/* one value of reader kind r at *pos (past the tag); returns a new reference, SKIP (not counted)
 * or NULL with an exception set */
static PyObject *
dec_value(int r, int omit, DecPlan *sub, const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, int depth)
{
    uint64_t v;
    Py_ssize_t n;
    switch (r) {
    case R_INT32:
    case R_INT64: {
        if (rd_varint(d, pos, end, &v) < 0)
            return fallback();
        long long x;
        if (r == R_INT32)
            x = (long long)(int32_t)(uint32_t)(v & 0xFFFFFFFFu);
        else
            x = (long long)(int64_t)v;
        if (omit && x == 0)
            return SKIP;
        return PyLong_FromLongLong(x);
    }
    case R_BOOL:
        if (rd_varint(d, pos, end, &v) < 0)
            return fallback();
        if (v)
            Py_RETURN_TRUE;
        if (omit)
            return SKIP;
        Py_RETURN_FALSE;
    case R_STR:
        if (rd_len(d, pos, end, &n) < 0)
            return fallback();
        if (n == 0) {
            if (omit)
                return SKIP;
            return PyUnicode_New(0, 0);
        }
        *pos += n;
        {
            PyObject *s = PyUnicode_DecodeUTF8((const char *)d + *pos - n, n, NULL);
            if (s == NULL)
                return NULL;  /* decode() turns it into Fallback */
            return s;
        }
    case R_BYTES:
        if (rd_len(d, pos, end, &n) < 0)
            return fallback();
        if (n == 0 && omit)
            return SKIP;
        *pos += n;
        return b64_text(d + *pos - n, n);
    case R_RAW:
        if (rd_len(d, pos, end, &n) < 0)
            return fallback();
        *pos += n;
        return PyBytes_FromStringAndSize((const char *)d + *pos - n, n);
    case R_DOUBLE:
    case R_FLOAT: {
        int size = r == R_DOUBLE ? 8 : 4;
        if (end - *pos < size)
            return fallback();
        double x = r == R_DOUBLE ? PyFloat_Unpack8((const char *)d + *pos, 1)
                                 : PyFloat_Unpack4((const char *)d + *pos, 1);
        if (x == -1.0 && PyErr_Occurred())
            return NULL;
        *pos += size;
        if (omit && x == 0.0)
            return SKIP;
        PyObject *f = PyFloat_FromDouble(x);
        if (f == NULL)
            return NULL;
        PyObject *out = PyObject_CallOneArg(go_float, f);
        Py_DECREF(f);
        return out;
    }
    case R_MSG:
        return dec_message(sub, d, pos, end, depth);
    default:
        return fallback();
    }
}

/* a string -> string map entry (labels, annotations, data, selectors); returns 0 or -1 */
static int
dec_ss_entry(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, PyObject **key, PyObject **value)
{
    Py_ssize_t n, p;
    if (rd_len(d, pos, end, &n) < 0)
        return -1;
    Py_ssize_t stop = *pos + n;
    p = *pos;
    *key = *value = NULL;
    if (p < stop && d[p] == 0x0A) {
        p++;
        if (rd_len(d, &p, stop, &n) < 0)
            return -1;
        *key = PyUnicode_DecodeUTF8((const char *)d + p, n, NULL);
        if (*key == NULL)
            return -1;
        p += n;
    }
    if (p < stop && d[p] == 0x12) {
        p++;
        if (rd_len(d, &p, stop, &n) < 0)
            goto fail;
        *value = PyUnicode_DecodeUTF8((const char *)d + p, n, NULL);
        if (*value == NULL)
            goto fail;
        p += n;
    }
    if (p != stop)
        goto fail;
    if (*key == NULL && (*key = PyUnicode_New(0, 0)) == NULL)
        goto fail;
    if (*value == NULL && (*value = PyUnicode_New(0, 0)) == NULL)
        goto fail;
    *pos = stop;
    return 0;
fail:
    Py_CLEAR(*key);
    Py_CLEAR(*value);
    return -1;
}

/* a map entry of any other shape (string key); returns 0 or -1 */
static int
dec_map_entry(DecField *f, const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, int depth,
              PyObject **key, PyObject **value)
{
    Py_ssize_t n, p;
    if (rd_len(d, pos, end, &n) < 0)
        return -1;
    Py_ssize_t stop = *pos + n;
    p = *pos;
    *key = *value = NULL;
    if (p < stop && d[p] == 0x0A) {
        p++;
        *key = dec_value(R_STR, 0, NULL, d, &p, stop, depth);
        if (*key == NULL)
            return -1;
    }
    if (p < stop && d[p] == f->vtag) {
        p++;
        PyObject *v = dec_value(f->vreader, 0, f->sub, d, &p, stop, depth);
        if (v == NULL)
            goto fail;
        *value = v;  /* readers without omit never answer SKIP */
    }
    if (p != stop)
        goto fail;
    if (*key == NULL && (*key = PyUnicode_New(0, 0)) == NULL)
        goto fail;
    if (*value == NULL) {
        if (f->sub != NULL)
            *value = dec_fields(f->sub, d, 0, 0, depth + 1);  /* the empty message */
        else {
            *value = f->zero;
            Py_INCREF(*value);
        }
        if (*value == NULL)
            goto fail;
    }
    *pos = stop;
    return 0;
fail:
    Py_CLEAR(*key);
    Py_CLEAR(*value);
    return -1;
}

static PyObject *
finish_special(DecPlan *plan, PyObject **sv)
{
    PyObject *a, *b;
    switch (plan->special) {
    case S_TIME:
    case S_MICRO_TIME: {
        a = sv[1];
        b = sv[2];
        int sz = a == NULL || PyLong_AsLongLong(a) == 0;
        int nz = b == NULL || PyLong_AsLongLong(b) == 0;
        if (sz && nz)
            Py_RETURN_NONE;
        if (plan->special == S_TIME) {  /* the nanoseconds do not show */
            PyObject *t = time_text(a == NULL ? 0 : PyLong_AsLongLong(a));
            if (t != NULL || PyErr_Occurred())
                return t;
        }
        PyObject *zero = NULL;
        if (a == NULL || b == NULL)
            zero = PyLong_FromLong(0);
        if (zero == NULL && (a == NULL || b == NULL))
            return NULL;
        PyObject *out = PyObject_CallFunctionObjArgs(fmt_time, a ? a : zero, b ? b : zero,
                                                     plan->special == S_MICRO_TIME ? Py_True : Py_False,
                                                     NULL);
        Py_XDECREF(zero);
        return out;
    }
    case S_DURATION: {
        if (sv[1] != NULL)
            return PyObject_CallOneArg(fmt_duration, sv[1]);
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL)
            return NULL;
        PyObject *out = PyObject_CallOneArg(fmt_duration, zero);
        Py_DECREF(zero);
        return out;
    }
    case S_QUANTITY:
        if (sv[1] != NULL) {
            Py_INCREF(sv[1]);
            return sv[1];
        }
        return PyUnicode_New(0, 0);
    case S_INT_OR_STRING: {
        long long t = sv[1] == NULL ? 0 : PyLong_AsLongLong(sv[1]);
        if (t == 1) {
            if (sv[3] != NULL) {
                Py_INCREF(sv[3]);
                return sv[3];
            }
            return PyUnicode_New(0, 0);
        }
        if (sv[2] != NULL) {
            Py_INCREF(sv[2]);
            return sv[2];
        }
        return PyLong_FromLong(0);
    }
    case S_RAW:
        if (sv[1] != NULL && PyBytes_Check(sv[1]) && PyBytes_GET_SIZE(sv[1]) > 0)
            return PyObject_CallOneArg(json_loads, sv[1]);
        Py_RETURN_NONE;
    case S_WRAPPER:
        if (sv[1] != NULL) {
            Py_INCREF(sv[1]);
            return sv[1];
        }
        return PyList_New(0);
    default:
        return fallback();
    }
}

static PyObject *
dec_fields(DecPlan *plan, const uint8_t *d, Py_ssize_t pos, Py_ssize_t end, int depth)
{
    if (depth > MAX_DEPTH || !plan->filled)
        return fallback();
    int special = plan->special;
    if (special == S_UNSUPPORTED)
        return fallback();
    PyObject *sv[SPECIAL_SLOTS] = {NULL};
    PyObject *out = NULL;
    if (special == S_NONE && (out = plan->hint > 5 ? _PyDict_NewPresized(plan->hint) : PyDict_New()) == NULL)
        return NULL;
    int last = 0;
    while (pos < end) {
        uint64_t tag = d[pos];
        if (tag < 0x80)
            pos++;
        else if (rd_varint(d, &pos, end, &tag) < 0)
            goto fail;
        if (tag >= (uint64_t)plan->ntags || plan->by_tag[tag] < 0)
            goto fail;  /* unknown field or wrong wire type */
        DecField *f = &plan->fields[plan->by_tag[tag]];
        int mode = f->mode;
        if (f->number <= last && (f->number < last || mode == M_SET || mode == M_INLINE || mode == M_OMITZERO))
            goto fail;  /* out of order, or a singular field twice (merge semantics) */
        last = f->number;
        if (special != S_NONE) {
            PyObject *v = dec_value(f->reader, 0, NULL, d, &pos, end, depth);
            if (v == NULL)
                goto fail;
            if (f->number >= SPECIAL_SLOTS) {
                Py_DECREF(v);
                goto fail;
            }
            if (mode == M_LIST) {
                if (sv[f->number] == NULL && (sv[f->number] = PyList_New(0)) == NULL) {
                    Py_DECREF(v);
                    goto fail;
                }
                int rc = PyList_Append(sv[f->number], v);
                Py_DECREF(v);
                if (rc < 0)
                    goto fail;
            } else {
                Py_XSETREF(sv[f->number], v);
            }
            continue;
        }
        if (mode == M_MAP) {
            PyObject *k, *v;
            int rc = f->reader == R_MAP_SS ? dec_ss_entry(d, &pos, end, &k, &v)
                   : f->reader == R_MAP ? dec_map_entry(f, d, &pos, end, depth, &k, &v) : -1;
            if (rc < 0)
                goto fail;
            PyObject *m = PyDict_GetItemWithError(out, f->key);
            if (m == NULL || m == Py_None) {
                if (PyErr_Occurred() || (m = PyDict_New()) == NULL || PyDict_SetItem(out, f->key, m) < 0) {
                    Py_XDECREF(m);
                    Py_DECREF(k);
                    Py_DECREF(v);
                    goto fail;
                }
                Py_DECREF(m);  /* out holds it */
            } else if (!PyDict_CheckExact(m)) {
                Py_DECREF(k);
                Py_DECREF(v);
                goto fail;
            }
            rc = PyDict_SetItem(m, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0)
                goto fail;
            continue;
        }
        PyObject *v = dec_value(f->reader, f->omit, f->sub, d, &pos, end, depth);
        if (v == NULL)
            goto fail;
        if (v == SKIP)
            continue;
        int rc = 0;
        switch (mode) {
        case M_SET:
            rc = PyDict_SetItem(out, f->key, v);
            break;
        case M_LIST: {
            PyObject *lst = PyDict_GetItemWithError(out, f->key);
            if (lst == NULL || lst == Py_None) {
                if (PyErr_Occurred() || (lst = PyList_New(1)) == NULL) {
                    rc = -1;
                    break;
                }
                Py_INCREF(v);
                PyList_SET_ITEM(lst, 0, v);
                rc = PyDict_SetItem(out, f->key, lst);
                Py_DECREF(lst);
            } else if (PyList_CheckExact(lst)) {
                rc = PyList_Append(lst, v);
            } else {
                rc = -1;
            }
            break;
        }
        case M_INLINE:
            rc = PyDict_CheckExact(v) ? PyDict_Update(out, v) : -1;
            break;
        default: /* M_OMITZERO */
            if (v != Py_None && !(PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0))
                rc = PyDict_SetItem(out, f->key, v);
        }
        Py_DECREF(v);
        if (rc < 0)
            goto fail;
    }
    if (pos != end)
        goto fail;
    if (special != S_NONE) {
        PyObject *res = finish_special(plan, sv);
        for (int i = 0; i < SPECIAL_SLOTS; i++)
            Py_XDECREF(sv[i]);
        return res;
    }
    plan->hint = PyDict_GET_SIZE(out) < 64 ? PyDict_GET_SIZE(out) : 64;
    return out;
fail:
    for (int i = 0; i < SPECIAL_SLOTS; i++)
        Py_XDECREF(sv[i]);
    Py_XDECREF(out);
    return fallback();
}

/* ---- encoding ------------------------------------------------------------------------------- */

enum { E_NONE, E_STR, E_BYTES, E_BOOL, E_DOUBLE, E_FLOAT, E_INT, E_MSG, E_MAP_SS, E_MAP, E_INLINE };
/* E_MSG's shape */
enum { P_PLAIN, P_QUANTITY, P_INT_OR_STRING, P_CALL, P_TIME, P_RAW };

typedef struct EncPlan EncPlan;

typedef struct {
    int kind;
    int shape;          /* E_MSG */
    uint8_t tag[10];
    int taglen;
    EncPlan *sub;       /* E_MSG, P_PLAIN */
    PyObject *pay;      /* E_MSG, P_CALL: value -> payload bytes */
} EncVal;

typedef struct {
    int slot;
    int repeated;
    EncVal val;
    EncVal mkey, mval;  /* E_MAP: the entry's key (field 1) and value (field 2) */
    PyObject *null;     /* bytes written for a null value, or NULL */
} EncField;

struct EncPlan {
    PyObject_HEAD
    int filled;
    PyObject *keys;          /* JSON key -> index in fields (int) */
    Py_ssize_t nfields;
    EncField *fields;
    Py_ssize_t size;         /* slots */
    Py_ssize_t *slot_field;  /* slot -> index in fields, or -1 for an inlined struct's slot */
    EncPlan **inline_plan;   /* slot -> the inlined struct's plan (or NULL) */
    uint8_t (*inline_tag)[10];
    int *inline_taglen;
};

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *nb = PyMem_Realloc(b->buf, cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->buf = nb;
    b->cap = cap;
    return 0;
}

static inline int
put(Buf *b, const void *p, Py_ssize_t n)
{
    if (buf_grow(b, n) < 0)
        return -1;
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int
vlen(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline int
put_varint(Buf *b, uint64_t v)
{
    if (buf_grow(b, 10) < 0)
        return -1;
    uint8_t *o = (uint8_t *)b->buf + b->len;
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    b->len = (char *)o - b->buf;
    return 0;
}

static inline int
put_len_field(Buf *b, const EncVal *e, const char *p, Py_ssize_t n)
{
    if (buf_grow(b, e->taglen + 10 + n) < 0)
        return -1;
    memcpy(b->buf + b->len, e->tag, e->taglen);
    b->len += e->taglen;
    put_varint(b, (uint64_t)n);
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    return 0;
}

/* a length-delimited field whose payload is written by the caller: start with open_len, which keeps
 * one byte for the length, and close_len, which moves the payload if the length needs more */
static inline int
open_len(Buf *b, const uint8_t *tag, int taglen, Py_ssize_t *mark)
{
    if (buf_grow(b, taglen + 1) < 0)
        return -1;
    memcpy(b->buf + b->len, tag, taglen);
    b->len += taglen + 1;
    *mark = b->len;
    return 0;
}

static inline int
close_len(Buf *b, Py_ssize_t mark)
{
    Py_ssize_t n = b->len - mark;
    if (n < 0x80) {
        b->buf[mark - 1] = (char)n;
        return 0;
    }
    int extra = vlen((uint64_t)n) - 1;
    if (buf_grow(b, extra) < 0)
        return -1;
    memmove(b->buf + mark + extra, b->buf + mark, n);
    uint8_t *o = (uint8_t *)b->buf + mark - 1;
    uint64_t v = (uint64_t)n;
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o = (uint8_t)v;
    b->len += extra;
    return 0;
}

static int enc_message(EncPlan *plan, PyObject *obj, Buf *b, int depth);

static const EncVal FIELD1_STR = {E_STR, 0, {0x0A}, 1, NULL, NULL};  /* Quantity.string */
static const EncVal FIELD3_STR = {E_STR, 0, {0x1A}, 1, NULL, NULL};  /* IntOrString.strVal */

static int
put_str(Buf *b, const EncVal *e, PyObject *v)
{
    if (PyUnicode_IS_ASCII(v))
        return put_len_field(b, e, (const char *)PyUnicode_1BYTE_DATA(v), PyUnicode_GET_LENGTH(v));
    /* not PyUnicode_AsUTF8AndSize: it would keep a UTF-8 copy inside the caller's string */
    PyObject *u = PyUnicode_AsUTF8String(v);
    if (u == NULL)
        return -1;
    int rc = put_len_field(b, e, PyBytes_AS_STRING(u), PyBytes_GET_SIZE(u));
    Py_DECREF(u);
    return rc;
}

static int
int_payload(PyObject *v, uint64_t *out)
{
    if (PyLong_CheckExact(v)) {
        *out = (uint64_t)PyLong_AsUnsignedLongLongMask(v);
        return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
    }
    if (PyFloat_Check(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!isfinite(x) || floor(x) != x)
            return -1;
        PyObject *i = PyLong_FromDouble(x);
        if (i == NULL)
            return -1;
        *out = (uint64_t)PyLong_AsUnsignedLongLongMask(i);
        Py_DECREF(i);
        return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
    }
    return -1;
}

/* one value (tag included); -1 when it does not fit (the caller raises Fallback) */
static int
enc_value(const EncVal *e, PyObject *v, Buf *b, int depth)
{
    switch (e->kind) {
    case E_STR:
        if (!PyUnicode_CheckExact(v))
            return -1;
        return put_str(b, e, v);
    case E_BYTES: {
        if (!PyUnicode_Check(v))
            return -1;
        PyObject *raw = PyObject_CallOneArg(b64decode, v);
        if (raw == NULL)
            return -1;
        int rc = PyBytes_Check(raw) ? put_len_field(b, e, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)) : -1;
        Py_DECREF(raw);
        return rc;
    }
    case E_BOOL:
        if (!PyBool_Check(v))
            return -1;
        if (put(b, e->tag, e->taglen) < 0)
            return -1;
        return put(b, v == Py_True ? "\x01" : "\x00", 1);
    case E_DOUBLE:
    case E_FLOAT: {
        if (PyBool_Check(v) || !(PyLong_Check(v) || PyFloat_Check(v)))
            return -1;
        double x = PyFloat_AsDouble(v);
        if (x == -1.0 && PyErr_Occurred())
            return -1;
        int size = e->kind == E_DOUBLE ? 8 : 4;
        if (buf_grow(b, e->taglen + size) < 0)
            return -1;
        memcpy(b->buf + b->len, e->tag, e->taglen);
        int rc = e->kind == E_DOUBLE ? PyFloat_Pack8(x, b->buf + b->len + e->taglen, 1)
                                     : PyFloat_Pack4(x, b->buf + b->len + e->taglen, 1);
        if (rc < 0)
            return -1;
        b->len += e->taglen + size;
        return 0;
    }
    case E_INT: {
        uint64_t u;
        if (int_payload(v, &u) < 0)
            return -1;
        if (put(b, e->tag, e->taglen) < 0)
            return -1;
        return put_varint(b, u);
    }
    case E_MSG: {
        Py_ssize_t mark;
        switch (e->shape) {
        case P_PLAIN:
            if (!PyDict_CheckExact(v))
                return -1;
            if (open_len(b, e->tag, e->taglen, &mark) < 0 || enc_message(e->sub, v, b, depth + 1) < 0)
                return -1;
            return close_len(b, mark);
        case P_QUANTITY: {
            if (!PyUnicode_CheckExact(v))
                break;  /* numbers: Python's str() of them */
            if (open_len(b, e->tag, e->taglen, &mark) < 0 || put_str(b, &FIELD1_STR, v) < 0)
                return -1;
            return close_len(b, mark);
        }
        case P_INT_OR_STRING:
            if (PyUnicode_CheckExact(v)) {
                if (open_len(b, e->tag, e->taglen, &mark) < 0 || put(b, "\x08\x01", 2) < 0
                    || put_str(b, &FIELD3_STR, v) < 0)
                    return -1;
                return close_len(b, mark);
            }
            if (PyLong_CheckExact(v)) {
                uint64_t u = (uint64_t)PyLong_AsUnsignedLongLongMask(v);
                if ((u == (uint64_t)-1 && PyErr_Occurred()) || open_len(b, e->tag, e->taglen, &mark) < 0
                    || put(b, "\x08\x00\x10", 3) < 0 || put_varint(b, u) < 0)
                    return -1;
                return close_len(b, mark);
            }
            return -1;
        case P_TIME: {
            long long secs;
            if (parse_plain_time(v, &secs) < 0)
                break;  /* other forms, and the errors: Python's */
            if (open_len(b, e->tag, e->taglen, &mark) < 0 || put(b, "\x08", 1) < 0
                || put_varint(b, (uint64_t)secs) < 0 || put(b, "\x10\x00", 2) < 0)
                return -1;
            return close_len(b, mark);
        }
        case P_RAW: {
            PyObject *j = PyObject_CallOneArg(json_dumps, v);
            if (j == NULL)
                return -1;
            int rc = open_len(b, e->tag, e->taglen, &mark) < 0 || put(b, "\x0a", 1) < 0
                     || put_varint(b, (uint64_t)PyBytes_GET_SIZE(j)) < 0
                     || put(b, PyBytes_AS_STRING(j), PyBytes_GET_SIZE(j)) < 0 || close_len(b, mark) < 0;
            Py_DECREF(j);
            return rc ? -1 : 0;
        }
        default:
            break;
        }
        PyObject *p = PyObject_CallOneArg(e->pay, v);
        if (p == NULL)
            return -1;
        int rc = PyBytes_Check(p) ? put_len_field(b, e, PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p)) : -1;
        Py_DECREF(p);
        return rc;
    }
    default:
        return -1;
    }
}

static int
enc_field(const EncField *f, PyObject *v, Buf *b, int depth)
{
    const EncVal *e = &f->val;
    if (e->kind == E_MAP_SS || e->kind == E_MAP) {
        if (!PyDict_CheckExact(v))
            return -1;
        Py_ssize_t i = 0;
        PyObject *k, *item;
        while (PyDict_Next(v, &i, &k, &item)) {
            if (item == Py_None)
                continue;
            Py_ssize_t mark;
            if (open_len(b, e->tag, e->taglen, &mark) < 0)
                return -1;
            if (e->kind == E_MAP_SS) {
                if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(item))
                    return -1;
                if (put_str(b, &f->mkey, k) < 0 || put_str(b, &f->mval, item) < 0)
                    return -1;
            } else {
                Py_INCREF(k);  /* a Python helper could change the dict */
                Py_INCREF(item);
                int rc = enc_value(&f->mkey, k, b, depth) < 0 || enc_value(&f->mval, item, b, depth) < 0;
                Py_DECREF(k);
                Py_DECREF(item);
                if (rc)
                    return -1;
            }
            if (close_len(b, mark) < 0)
                return -1;
        }
        return 0;
    }
    if (!f->repeated)
        return enc_value(e, v, b, depth);
    if (!PyList_CheckExact(v))
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        PyObject *item = PyList_GET_ITEM(v, i);
        int rc;
        if (item == Py_None) {
            if (e->kind != E_MSG)
                continue;
            rc = put(b, e->tag, e->taglen) < 0 ? -1 : put(b, "\x00", 1);
        } else {
            Py_INCREF(item);  /* a Python helper could change the list */
            rc = enc_value(e, item, b, depth);
            Py_DECREF(item);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

#define NULL_MARK ((PyObject *)&_Py_NoneStruct)

static int
enc_message(EncPlan *plan, PyObject *obj, Buf *b, int depth)
{
    if (depth > MAX_DEPTH || !plan->filled)
        return -1;
    Py_ssize_t size = plan->size;
    PyObject *stack_vals[32];
    PyObject **vals = size <= 32 ? stack_vals : PyMem_Calloc(size, sizeof(PyObject *));
    if (vals == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (size <= 32)
        memset(vals, 0, sizeof(PyObject *) * size);
    int rc = 0;
    Py_ssize_t i = 0;
    PyObject *k, *v;
    /* vals[slot]: a new reference to the value, Py_None for a null, a dict of keys for an inlined slot */
    while (PyDict_Next(obj, &i, &k, &v)) {
        PyObject *idx = PyDict_GetItemWithError(plan->keys, k);
        if (idx == NULL) {
            if (PyErr_Occurred()) {
                rc = -1;
                break;
            }
            continue;
        }
        const EncField *f = &plan->fields[PyLong_AS_LONG(idx)];
        Py_ssize_t slot = f->slot;
        if (f->val.kind == E_INLINE) {
            if (vals[slot] == NULL && (vals[slot] = PyDict_New()) == NULL) {
                rc = -1;
                break;
            }
            if (PyDict_SetItem(vals[slot], k, v) < 0) {
                rc = -1;
                break;
            }
            continue;
        }
        if (v == Py_None && f->null == NULL) {
            Py_CLEAR(vals[slot]);
            continue;
        }
        Py_INCREF(v);
        Py_XSETREF(vals[slot], v);
    }
    for (Py_ssize_t s = 0; s < size && rc == 0; s++) {
        PyObject *val = vals[s];
        if (val == NULL)
            continue;
        Py_ssize_t fi = plan->slot_field[s];
        if (fi < 0) {
            Py_ssize_t mark;
            if (open_len(b, plan->inline_tag[s], plan->inline_taglen[s], &mark) < 0
                || enc_message(plan->inline_plan[s], val, b, depth + 1) < 0 || close_len(b, mark) < 0)
                rc = -1;
            continue;
        }
        const EncField *f = &plan->fields[fi];
        if (val == Py_None) {
            if (put(b, PyBytes_AS_STRING(f->null), PyBytes_GET_SIZE(f->null)) < 0)
                rc = -1;
            continue;
        }
        if (enc_field(f, val, b, depth) < 0)
            rc = -1;
    }
    for (Py_ssize_t s = 0; s < size; s++)
        Py_XDECREF(vals[s]);
    if (vals != stack_vals)
        PyMem_Free(vals);
    return rc;
}

/* ---- plan objects --------------------------------------------------------------------------- */

static PyTypeObject DecPlanType;
static PyTypeObject EncPlanType;

static void
dec_clear_fields(DecPlan *p)
{
    for (Py_ssize_t i = 0; i < p->nfields; i++) {
        Py_XDECREF(p->fields[i].key);
        Py_XDECREF((PyObject *)p->fields[i].sub);
        Py_XDECREF(p->fields[i].zero);
    }
    PyMem_Free(p->fields);
    PyMem_Free(p->by_tag);
    p->fields = NULL;
    p->by_tag = NULL;
    p->nfields = p->ntags = 0;
    p->filled = 0;
}

static void
DecPlan_dealloc(DecPlan *p)
{
    dec_clear_fields(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

PyDoc_STRVAR(DecPlan_fill_doc,
"fill(special, fields): fields are (tag, number, key, reader, mode, omit, sub, vreader, vtag, zero).");

static PyObject *
DecPlan_fill(DecPlan *self, PyObject *args)
{
    int special;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "iO!", &special, &PyList_Type, &fields))
        return NULL;
    if (self->fields != NULL) {  /* a decode paused in a Python helper may be reading these tables */
        PyErr_SetString(PyExc_RuntimeError, "a plan is filled once");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(fields);
    self->fields = PyMem_Calloc(n ? n : 1, sizeof(DecField));
    if (self->fields == NULL)
        return PyErr_NoMemory();
    long max_tag = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long tag;
        int number, reader, mode, omit, vreader, vtag;
        PyObject *key, *sub, *zero;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, i), "liOiipOiiO", &tag, &number, &key, &reader, &mode,
                              &omit, &sub, &vreader, &vtag, &zero))
            goto fail;
        if (tag < 0 || tag > 0x7FFF || (sub != Py_None && !PyObject_TypeCheck(sub, &DecPlanType))) {
            PyErr_SetString(PyExc_ValueError, "bad field");
            goto fail;
        }
        DecField *f = &self->fields[i];
        f->number = number;
        f->reader = reader;
        f->mode = mode;
        f->omit = omit;
        f->vreader = vreader;
        f->vtag = vtag;
        Py_INCREF(key);
        f->key = key;
        Py_INCREF(zero);
        f->zero = zero;
        if (sub != Py_None) {
            Py_INCREF(sub);
            f->sub = (DecPlan *)sub;
        }
        self->nfields = i + 1;
        if (tag > max_tag)
            max_tag = tag;
    }
    self->ntags = max_tag + 1;
    self->by_tag = PyMem_Malloc(sizeof(int16_t) * self->ntags);
    if (self->by_tag == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t t = 0; t < self->ntags; t++)
        self->by_tag[t] = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        self->by_tag[PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(fields, i), 0))] = (int16_t)i;
    self->special = special;
    self->filled = 1;
    Py_RETURN_NONE;
fail:
    dec_clear_fields(self);
    return NULL;
}

static PyMethodDef DecPlan_methods[] = {
    {"fill", (PyCFunction)DecPlan_fill, METH_VARARGS, DecPlan_fill_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "servicenet.api.pb._cpb.DecPlan",
    .tp_basicsize = sizeof(DecPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "How to decode one message type (filled by native.py).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)DecPlan_dealloc,
    .tp_methods = DecPlan_methods,
};

static void
encval_clear(EncVal *e)
{
    Py_CLEAR(e->sub);
    Py_CLEAR(e->pay);
}

static void
enc_clear_fields(EncPlan *p)
{
    for (Py_ssize_t i = 0; i < p->nfields; i++) {
        encval_clear(&p->fields[i].val);
        encval_clear(&p->fields[i].mkey);
        encval_clear(&p->fields[i].mval);
        Py_XDECREF(p->fields[i].null);
    }
    if (p->inline_plan != NULL)
        for (Py_ssize_t s = 0; s < p->size; s++)
            Py_XDECREF((PyObject *)p->inline_plan[s]);
    PyMem_Free(p->fields);
    PyMem_Free(p->slot_field);
    PyMem_Free(p->inline_plan);
    PyMem_Free(p->inline_tag);
    PyMem_Free(p->inline_taglen);
    Py_CLEAR(p->keys);
    p->fields = NULL;
    p->slot_field = NULL;
    p->inline_plan = NULL;
    p->inline_tag = NULL;
    p->inline_taglen = NULL;
    p->nfields = p->size = 0;
    p->filled = 0;
}

static void
EncPlan_dealloc(EncPlan *p)
{
    enc_clear_fields(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int
set_tag(uint8_t *dst, int *len, PyObject *tag)
{
    if (!PyBytes_Check(tag) || PyBytes_GET_SIZE(tag) > 10) {
        PyErr_SetString(PyExc_ValueError, "bad tag");
        return -1;
    }
    memcpy(dst, PyBytes_AS_STRING(tag), PyBytes_GET_SIZE(tag));
    *len = (int)PyBytes_GET_SIZE(tag);
    return 0;
}

/* (kind, shape, tag bytes, sub plan or None, payload callable or None), or None */
static int
parse_encval(PyObject *spec, EncVal *e)
{
    if (spec == Py_None)
        return 0;
    int kind, shape;
    PyObject *tag, *sub, *pay;
    if (!PyArg_ParseTuple(spec, "iiOOO", &kind, &shape, &tag, &sub, &pay))
        return -1;
    if (sub != Py_None && !PyObject_TypeCheck(sub, &EncPlanType)) {
        PyErr_SetString(PyExc_ValueError, "bad sub-plan");
        return -1;
    }
    if (set_tag(e->tag, &e->taglen, tag) < 0)
        return -1;
    e->kind = kind;
    e->shape = shape;
    if (sub != Py_None) {
        Py_INCREF(sub);
        e->sub = (EncPlan *)sub;
    }
    if (pay != Py_None) {
        Py_INCREF(pay);
        e->pay = pay;
    }
    if (kind == E_MSG && ((shape == P_PLAIN && e->sub == NULL) || (shape != P_PLAIN && e->pay == NULL))) {
        PyErr_SetString(PyExc_ValueError, "a message value needs its plan or its payload function");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(EncPlan_fill_doc,
"fill(keys, size, fields, inlines): keys maps a JSON key to an index in fields; a field is\n"
"(slot, repeated, value spec, map key spec, map value spec, null bytes or None); inlines are\n"
"(slot, tag bytes, plan).");

static PyObject *
EncPlan_fill(EncPlan *self, PyObject *args)
{
    PyObject *keys, *fields, *inlines;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "O!nO!O!", &PyDict_Type, &keys, &size, &PyList_Type, &fields,
                          &PyList_Type, &inlines))
        return NULL;
    if (self->fields != NULL) {  /* an encode paused in a Python helper may be reading these tables */
        PyErr_SetString(PyExc_RuntimeError, "a plan is filled once");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(fields);
    self->size = size;
    self->fields = PyMem_Calloc(n ? n : 1, sizeof(EncField));
    self->slot_field = PyMem_Calloc(size ? size : 1, sizeof(Py_ssize_t));
    self->inline_plan = PyMem_Calloc(size ? size : 1, sizeof(EncPlan *));
    self->inline_tag = PyMem_Calloc(size ? size : 1, 10);
    self->inline_taglen = PyMem_Calloc(size ? size : 1, sizeof(int));
    if (!self->fields || !self->slot_field || !self->inline_plan || !self->inline_tag || !self->inline_taglen) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t s = 0; s < size; s++)
        self->slot_field[s] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t slot;
        int repeated;
        PyObject *val, *mkey, *mval, *null;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, i), "npOOOO", &slot, &repeated, &val, &mkey, &mval, &null))
            goto fail;
        self->nfields = i + 1;
        EncField *f = &self->fields[i];
        if (slot < 0 || slot >= size || (null != Py_None && !PyBytes_Check(null))) {
            PyErr_SetString(PyExc_ValueError, "bad field");
            goto fail;
        }
        f->slot = (int)slot;
        f->repeated = repeated;
        if (parse_encval(val, &f->val) < 0 || parse_encval(mkey, &f->mkey) < 0 || parse_encval(mval, &f->mval) < 0)
            goto fail;
        if (null != Py_None) {
            Py_INCREF(null);
            f->null = null;
        }
        if (f->val.kind != E_INLINE)
            self->slot_field[slot] = i;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(inlines); i++) {
        Py_ssize_t slot;
        PyObject *tag, *plan;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(inlines, i), "nO!O!", &slot, &PyBytes_Type, &tag, &EncPlanType, &plan))
            goto fail;
        if (slot < 0 || slot >= size || self->inline_plan[slot] != NULL) {
            PyErr_SetString(PyExc_ValueError, "bad inline slot");
            goto fail;
        }
        if (set_tag(self->inline_tag[slot], &self->inline_taglen[slot], tag) < 0)
            goto fail;
        Py_INCREF(plan);
        self->inline_plan[slot] = (EncPlan *)plan;
    }
    for (Py_ssize_t i = 0; i < n; i++) {  /* every inlined key's slot has its plan */
        EncField *f = &self->fields[i];
        if (f->val.kind == E_INLINE && self->inline_plan[f->slot] == NULL) {
            PyErr_SetString(PyExc_ValueError, "an inlined key without its plan");
            goto fail;
        }
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(keys, &pos, &k, &v)) {
        long idx = PyLong_Check(v) ? PyLong_AsLong(v) : -1;
        if (idx < 0 || idx >= n) {
            PyErr_SetString(PyExc_ValueError, "bad key index");
            goto fail;
        }
    }
    Py_INCREF(keys);
    self->keys = keys;
    self->filled = 1;
    Py_RETURN_NONE;
fail:
    enc_clear_fields(self);
    return NULL;
}

static PyMethodDef EncPlan_methods[] = {
    {"fill", (PyCFunction)EncPlan_fill, METH_VARARGS, EncPlan_fill_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "servicenet.api.pb._cpb.EncPlan",
    .tp_basicsize = sizeof(EncPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "How to encode one message type (filled by native.py).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)EncPlan_dealloc,
    .tp_methods = EncPlan_methods,
};

/* ---- module functions ----------------------------------------------------------------------- */

static int
configured(void)
{
    if (Fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "servicenet.api.pb._cpb.configure() was not called");
        return 0;
    }
    return 1;
}

static PyObject *
cpb_decode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &DecPlanType)) {
        PyErr_SetString(PyExc_TypeError, "decode(plan: DecPlan, raw: bytes-like)");
        return NULL;
    }
    if (!configured())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = dec_fields((DecPlan *)args[0], view.buf, 0, view.len, 0);
    PyBuffer_Release(&view);
    if (out != NULL && !PyDict_CheckExact(out)) {
        Py_DECREF(out);
        out = NULL;
    }
    if (out == NULL && !PyErr_ExceptionMatches(Fallback)) {
        /* whatever else went wrong (bad UTF-8, a helper's error): the Python paths decide */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        PyObject *fb = PyObject_CallNoArgs(Fallback);
        if (fb != NULL) {
            if (value != NULL)
                PyException_SetCause(fb, value);  /* steals value */
            PyErr_SetObject(Fallback, fb);
            Py_DECREF(fb);
        } else {
            Py_XDECREF(value);
        }
    }
    return out;
}

static PyObject *
cpb_encode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &EncPlanType)) {
        PyErr_SetString(PyExc_TypeError, "encode(plan: EncPlan, obj: dict)");
        return NULL;
    }
    if (!configured())
        return NULL;
    if (!PyDict_Check(args[1])) {
        PyErr_SetNone(Fallback);
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    if (enc_message((EncPlan *)args[0], args[1], &b, 0) < 0) {
        PyMem_Free(b.buf);
        PyErr_Clear();  /* encode.py raises the descriptive error */
        PyErr_SetNone(Fallback);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(b.buf ? b.buf : "", b.len);
    PyMem_Free(b.buf);
    return out;
}

/* a string field's payload at *pos (past its tag) as str; NULL without an exception when it is not
 * there in one piece or not UTF-8 */
static PyObject *
env_str(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end)
{
    Py_ssize_t n;
    if (rd_len(d, pos, end, &n) < 0)
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)d + *pos, n, NULL);
    if (s == NULL)
        PyErr_Clear();
    *pos += n;
    return s;
}

static PyObject *
cpb_split_envelope(PyObject *mod, PyObject *body)
{
    if (!PyBytes_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "split_envelope(body: bytes)");
        return NULL;
    }
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(body);
    Py_ssize_t end = PyBytes_GET_SIZE(body), pos = 4, n;
    PyObject *av = NULL, *kind = NULL, *raw = NULL;
    if (end < 4 || memcmp(d, "k8s\0", 4) != 0)
        Py_RETURN_NONE;
    if (pos < end && d[pos] == 0x0A) {  /* typeMeta */
        pos++;
        if (rd_len(d, &pos, end, &n) < 0)
            Py_RETURN_NONE;
        Py_ssize_t stop = pos + n;
        if (pos < stop && d[pos] == 0x0A) {
            pos++;
            if ((av = env_str(d, &pos, stop)) == NULL)
                goto odd;
        }
        if (pos < stop && d[pos] == 0x12) {
            pos++;
            if ((kind = env_str(d, &pos, stop)) == NULL)
                goto odd;
        }
        if (pos != stop)
            goto odd;
    }
    if (pos < end && d[pos] == 0x12) {  /* raw */
        pos++;
        if (rd_len(d, &pos, end, &n) < 0)
            goto odd;
        if ((raw = PyBytes_FromStringAndSize((const char *)d + pos, n)) == NULL)
            goto fail;
        pos += n;
    }
    if (pos + 1 < end && d[pos] == 0x1A && d[pos + 1] == 0)  /* contentEncoding "" */
        pos += 2;
    if (pos + 1 < end && d[pos] == 0x22 && d[pos + 1] == 0)  /* contentType "" */
        pos += 2;
    /* anything else (other fields or orders, a content type, no kind): the message-object path decides */
    if (pos != end || kind == NULL || PyUnicode_GET_LENGTH(kind) == 0)
        goto odd;
    if (av == NULL && (av = PyUnicode_New(0, 0)) == NULL)
        goto fail;
    if (raw == NULL && (raw = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        goto fail;
    PyObject *out = PyTuple_Pack(3, av, kind, raw);
    Py_DECREF(av);
    Py_DECREF(kind);
    Py_DECREF(raw);
    return out;
odd:
    Py_XDECREF(av);
    Py_XDECREF(kind);
    Py_XDECREF(raw);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(av);
    Py_XDECREF(kind);
    Py_XDECREF(raw);
    return NULL;
}

/* ---- JSON trees (servicenet/api/jsontree.py) ---------------------------------------------- */

/* a copy of a JSON tree (exact dicts and lists, copied; str, int, float, bool and None, shared: they
 * are immutable), for handing out a kept tree without parsing its text again; TypeError for any
 * other type, RecursionError past MAX_DEPTH */
static PyObject *
copy_tree(PyObject *v, int depth)
{
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_RecursionError, "JSON tree nested too deeply to copy");
        return NULL;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *out = PyDict_Copy(v);  /* keys and leaves shared; containers replaced below */
        if (out == NULL)
            return NULL;
        Py_ssize_t i = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &i, &k, &x)) {
            if (PyDict_CheckExact(x) || PyList_CheckExact(x)) {
                PyObject *c = copy_tree(x, depth + 1);
                if (c == NULL || PyDict_SetItem(out, k, c) < 0) {
                    Py_XDECREF(c);
                    Py_DECREF(out);
                    return NULL;
                }
                Py_DECREF(c);
            } else if (!(PyUnicode_CheckExact(x) || PyLong_CheckExact(x) || PyFloat_CheckExact(x)
                         || PyBool_Check(x) || x == Py_None)) {
                PyErr_Format(PyExc_TypeError, "not a JSON value: %.100s", Py_TYPE(x)->tp_name);
                Py_DECREF(out);
                return NULL;
            }
        }
        return out;
    }
    if (PyList_CheckExact(v)) {
        Py_ssize_t n = PyList_GET_SIZE(v);
        PyObject *out = PyList_New(n);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *c = copy_tree(PyList_GET_ITEM(v, i), depth + 1);
            if (c == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, i, c);
        }
        return out;
    }
    if (PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v)
        || v == Py_None) {
        Py_INCREF(v);
        return v;
    }
    PyErr_Format(PyExc_TypeError, "not a JSON value: %.100s", Py_TYPE(v)->tp_name);
    return NULL;
}

static PyObject *
cpb_copy_json(PyObject *mod, PyObject *v)
{
    return copy_tree(v, 0);
}

/* whether bytes hold b"null" (memmem: several times faster than bytes.__contains__ for this needle) */
static PyObject *
cpb_has_null(PyObject *mod, PyObject *v)
{
    if (!PyBytes_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "has_null() takes bytes");
        return NULL;
    }
    if (memmem(PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v), "null", 4) != NULL)
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyObject *
cpb_configure(PyObject *mod, PyObject *args)
{
    PyObject *fb, *ft, *fd, *gf, *jl, *bd, *jd;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &fb, &ft, &fd, &gf, &jl, &bd, &jd))
        return NULL;
    if (!PyExceptionClass_Check(fb)) {
        PyErr_SetString(PyExc_TypeError, "the first argument is the Fallback exception class");
        return NULL;
    }
    Py_INCREF(fb);
    Py_XSETREF(Fallback, fb);
    Py_INCREF(ft);
    Py_XSETREF(fmt_time, ft);
    Py_INCREF(fd);
    Py_XSETREF(fmt_duration, fd);
    Py_INCREF(gf);
    Py_XSETREF(go_float, gf);
    Py_INCREF(jl);
    Py_XSETREF(json_loads, jl);
    Py_INCREF(bd);
    Py_XSETREF(b64decode, bd);
    Py_INCREF(jd);
    Py_XSETREF(json_dumps, jd);
    Py_RETURN_NONE;
}

static PyMethodDef cpb_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))cpb_decode, METH_FASTCALL,
     "decode(plan, raw) -> dict: the message's JSON object; raises Fallback unless raw is canonical."},
    {"encode", (PyCFunction)(void (*)(void))cpb_encode, METH_FASTCALL,
     "encode(plan, obj) -> bytes: the message's bytes; raises Fallback when a value does not fit."},
    {"split_envelope", cpb_split_envelope, METH_O,
     "split_envelope(body) -> (apiVersion, kind, raw) of a canonical k8s\\0 envelope, else None."},
    {"copy_json", cpb_copy_json, METH_O,
     "copy_json(tree) -> a copy: dicts and lists copied, str/int/float/bool/None shared; TypeError otherwise."},
    {"has_null", cpb_has_null, METH_O, "has_null(b: bytes) -> bool: whether b holds b'null'."},
    {"configure", cpb_configure, METH_VARARGS,
     "configure(Fallback, fmt_time, format_duration, go_float, json_loads, b64decode, json_dumps)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cpb_module = {
    PyModuleDef_HEAD_INIT, "_cpb",
    "The protobuf codec's table-driven loops in C (see servicenet/api/pb/native.py), and two JSON-tree "
    "helpers (servicenet/api/jsontree.py).", -1, cpb_methods,
};

PyMODINIT_FUNC
PyInit__cpb(void)
{
    if (PyType_Ready(&DecPlanType) < 0 || PyType_Ready(&EncPlanType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&cpb_module);
    if (m == NULL)
        return NULL;
    SKIP = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (SKIP == NULL || PyModule_AddObjectRef(m, "DecPlan", (PyObject *)&DecPlanType) < 0
        || PyModule_AddObjectRef(m, "EncPlan", (PyObject *)&EncPlanType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
