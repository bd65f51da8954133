/* statewall._fastpath: the compiled fast path for established IPv4 TCP and UDP connections.
 *
 * What a firewall's fast path is (the ASA's "fast path" after the session management path, netfilter's
 * flowtable): once a connection is set up, the packets that change nothing but counters and windows
 * are forwarded by a lookup and a rewrite. statewall.fastpath decides which connections qualify and
 * copies their state into a Flow; FlowTable.offer() then handles their packets exactly as the Python
 * path (statewall.engine.forward.established) would, or returns None *before changing anything*, and the
 * Python path takes the packet after statewall.fastpath copied the Flow's state back. The Python path
 * stays the only definition of behaviour; this file repeats its common case and is checked against it
 * packet for packet (tests/test_fastpath.py).
 *
 * Per packet, in the order the Python path decides it:
 *   plain IPv4 (IHL 5, not a fragment) carrying TCP (flags ACK or ACK|PSH, no reserved bits, options
 *   none or NOP NOP timestamp) or UDP, lengths as statewall.packet.decode accepts them; the Flow found
 *   by the packet's tuple, arriving on the interface it expects;
 *   TCP: the tcp-map checks of statewall.normalizer.check that apply to such a segment (TTL evasion,
 *   exceed-mss, the next-expected sequence and the out-of-order queue) and netfilter's window tracking
 *   for ESTABLISHED -> ESTABLISHED (statewall.tcptrack.TcpTracker.packet's written-out case), the
 *   closing rows, SYN_SENT -> SYN_RECV for the responder's SYN-ACK answering the SYN plainly (a
 *   connection offloaded at its SYN: synack_take, with its options, the tcp-map's SYN-ACK checks and
 *   sysopt connection tcpmss's rewrite of its MSS), and SYN_RECV -> ESTABLISHED for the initiator's ACK
 *   acknowledging exactly the SYN-ACK (the handshake's last ACK; its idle timer through bind()'s
 *   established);
 *   TTL > 1 and the size within the egress MTU (gso_size for super-packets);
 *   TTL decrement and NAT with the precomputed RFC 1624 deltas (Packet.forward_nat4), then the
 *   sequence randomization offsets (SeqShift.adjust), checksums updated incrementally, one step per
 *   field as the Python path does so that the bytes are identical;
 *   conn.last, conn.bytes and conn.data_seen written on the Connection, fw.stats' packets_in and forwarded
 *   and fw.now as Firewall.receive counts them (without a lookup or a new int per packet: see "the Python
 *   objects a forwarded packet touches" below).
 * Anything else returns None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define KEYLEN 13 /* src(4) dst(4) sport(2) dport(2) proto(1) */

/* TcpTracker constants (statewall.tcptrack) */
#define F_DATA_UNACKNOWLEDGED 0x10u
#define F_MAXACK_SET 0x20u
#define F_FIN_SEEN 0x100u
#define F_FIN_ACKED 0x200u
#define MAXACKWINCONST 66000u

typedef struct {
    PyObject_HEAD
    PyObject *conn;
    /* iface[d]: where direction d's packets arrive, and where the other direction's leave */
    PyObject *iface[2];
    /* What the Python path needs besides the fields below to rebuild the connection's tracker,
     * normalizer and randomization objects when they are not kept (statewall.fastpath: one tuple shared
     * by every connection with the same values), or None while the connection keeps them. */
    PyObject *shared;
    /* NAT per direction: final addresses and ports, the RFC 1624 deltas (addresses; addresses and
     * ports), whether an address changes (moved), whether the half rewrites at all (rewrites).
     * The deltas are kept modulo 65535: the one's complement sums they change see nothing else. */
    unsigned int nsrc[2], ndst[2];
    unsigned short nsport[2], ndport[2];
    unsigned short da[2], dl4[2];
    unsigned short mtu[2]; /* at most 65535: a larger one is taken as 65535 (the Python path then) */
    unsigned short adv_mss1; /* the MSS the responder's SYN-ACK advertised, when taken here (mss1) */
    /* TCP tracker (trk.seen[d] and the connection-wide retransmission fields; its timeouts are the
     * table's, one set per firewall) */
    double timeout;
    unsigned int td_end[2], td_maxend[2], td_maxwin[2], td_maxack[2], pflags[2];
    unsigned int last_seq, last_ack, last_end, last_win;
    int retrans;
    /* sequence randomization offsets per direction */
    unsigned int offs[2];
    /* normalizer: next expected sequence per direction, the MSS limits (-1: none known) */
    unsigned int nxt[2];
    int mss_limit[2];
    unsigned long long packets;
    /* the two halves' keys, inline: the packet's src(4) dst(4) sport(2) dport(2) proto(1) */
    unsigned char key[2][KEYLEN];
    /* the small fields, one byte each (memory: the record of every offloaded connection) */
    unsigned char keyed; /* fill() set the keys */
    unsigned char proto;
    unsigned char moved[2], rewrites[2];
    unsigned char seen_mark[2]; /* conn.data_seen[d] already True */
    unsigned char td_scale[2], last_dir;
    unsigned char norm, n_ttl, n_queue, n_exceed_drop, n_no_options, nxt_set[2], ttl_low[2];
    unsigned char ttl_dec; /* 1: the TTL is lowered (Linux; the ASA's set connection decrement-ttl) */
    /* The close (issue 18): the tracker's state (ESTABLISHED at the offload, then the closing rows:
     * FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT), the index of the last segment the fast path took
     * (tcptrack I_FIN 2, I_ACK 3), each side's FIN end once the fast path saw the FIN (fin_set bit d),
     * and 1 + the direction of the first FIN it forwarded (fin_dir, 0: none). */
    unsigned char state, last_index, fin_set, fin_dir;
    unsigned int fin_end[2];
    /* The handshake (a flow offloaded at its SYN, state SYN_SENT): 1 + whether the responder's SYN-ACK,
     * taken here, carried an MSS option (0: not taken here; adv_mss1 is its value), and which of its
     * options the tcp-map lets through unchanged (bit 0 window scale, 1 SACK-permitted, 2 timestamps;
     * fastpath.offload sets it). */
    unsigned char mss1, synack_opts;
} Flow;

/* The object references of each type, for the collector's traverse and clear. */
#define FLOW_REFS(X) X(conn) X(iface[0]) X(iface[1]) X(shared)
#define TABLE_REFS(X) X(fw) X(stats) X(result_type) X(half_closed) X(fins_closed) X(established) X(closing) X(spare)
#define VISIT_REF(name) Py_VISIT(self->name);
#define CLEAR_REF(name) Py_CLEAR(self->name);
#define GC_FUNCTIONS(Type, REFS)                                                                    \
    static int Type##_traverse(Type *self, visitproc visit, void *arg) {                           \
        REFS(VISIT_REF) return 0;                                                                   \
    }                                                                                               \
    static int Type##_clear(Type *self) {                                                           \
        REFS(CLEAR_REF) return 0;                                                                   \
    }                                                                                               \
    static void Type##_dealloc(Type *self) {                                                        \
        PyObject_GC_UnTrack(self);                                                                  \
        Type##_clear(self);                                                                         \
        Py_TYPE(self)->tp_free((PyObject *)self);                                                   \
    }

GC_FUNCTIONS(Flow, FLOW_REFS)

/* What Python reads of a Flow directly (fill() and tcp_state() carry the rest). */
static PyMemberDef Flow_members[] = {
    {"conn", T_OBJECT_EX, offsetof(Flow, conn), 0, "the Connection (None once taken back)"},
    {"shared", T_OBJECT, offsetof(Flow, shared), 0,
     "None, or the shared rest of the objects the connection does not keep (statewall.fastpath)"},
    {"proto", T_UBYTE, offsetof(Flow, proto), READONLY, NULL},
    {"offs0", T_UINT, offsetof(Flow, offs), READONLY, "the ORIGINAL direction's randomization offset"},
    {"offs1", T_UINT, offsetof(Flow, offs) + sizeof(unsigned int), READONLY, "the REPLY direction's"},
    {"norm", T_UBYTE, offsetof(Flow, norm), READONLY, "1 when the tcp-map's checks are copied in"},
    {"packets", T_ULONGLONG, offsetof(Flow, packets), READONLY, "packets the fast path forwarded"},
    {"ttl_dec", T_UBYTE, offsetof(Flow, ttl_dec), 0, "1 when the TTL is lowered (0: the ASA's default)"},
    {"state", T_UBYTE, offsetof(Flow, state), READONLY, "the tracker's state (tcptrack.TcpState)"},
    {"last_index", T_UBYTE, offsetof(Flow, last_index), READONLY,
     "the tracker's index of the last segment the fast path took"},
    {"fin_set", T_UBYTE, offsetof(Flow, fin_set), READONLY, "bit d: fin_end[d] is the fast path's"},
    {"fin_dir", T_UBYTE, offsetof(Flow, fin_dir), READONLY,
     "0, or 1 + the direction of the first FIN the fast path forwarded"},
    {"fin_end0", T_UINT, offsetof(Flow, fin_end), READONLY, "the ORIGINAL side's FIN end (seq + len + 1)"},
    {"fin_end1", T_UINT, offsetof(Flow, fin_end) + sizeof(unsigned int), READONLY, "the REPLY side's"},
    {"td_scale0", T_UBYTE, offsetof(Flow, td_scale), READONLY, "the ORIGINAL side's window scale"},
    {"td_scale1", T_UBYTE, offsetof(Flow, td_scale) + 1, READONLY, "the REPLY side's"},
    {"mss1", T_UBYTE, offsetof(Flow, mss1), READONLY,
     "0, or 1 + whether the SYN-ACK the fast path took carried an MSS option (adv_mss1 its value)"},
    {"adv_mss1", T_USHORT, offsetof(Flow, adv_mss1), READONLY, "the MSS that SYN-ACK advertised"},
    {"mss_limit1", T_INT, offsetof(Flow, mss_limit) + sizeof(int), READONLY,
     "the largest segment the REPLY side accepts (-1: not known), the normalizer's mss_limit[1]"},
    {"synack_opts", T_UBYTE, offsetof(Flow, synack_opts), 0,
     "the SYN-ACK options the tcp-map leaves alone: bit 0 window scale, 1 SACK-permitted, 2 timestamps"},
    {NULL},
};

/* fill(conn, ifs): everything offload() copies, in one call, read from the connection's objects as the
 * Python path holds them (no tuples built for it): its two halves (conn._fwd and its _other: interfaces,
 * keys, translations, whose NAT deltas are Half.compile_nat's, computed here from the key and the new_*
 * fields), each egress interface's MTU (ifs[out_iface].mtu), conn.data_seen, the protocol, the
 * randomization's offsets, and for TCP the tracker (both peers' windows and flags, the last segment's
 * fields, retrans, _timeout) and the normalizer (the tcp-map's TTL, queue, exceed-mss and options
 * settings, next sequence, lowest TTL, MSS limits). The record's state is the tracker's: ESTABLISHED
 * (3, and for UDP), SYN_RECV (2: offloaded at the SYN-ACK, the handshake's last ACK to come) or SYN_SENT
 * (1: offloaded at the SYN, the responder's SYN-ACK to come). Each number is converted as a
 * PyArg_ParseTuple format would: "I" (masked) for addresses, windows and sequence numbers, "b" (0-255)
 * for scales, TTLs and the last direction, "i" for ports, retrans and MSS limits, "d" for the timeout.
 * Returns the halves' rewrite mask: bits 0-3 which of the ORIGINAL half's new_src, new_sport, new_dst,
 * new_dport are set, bits 4-7 the REPLY half's (fastpath._rewrites). */
#define FILL_NAMES(X)                                                                                     \
    X(_fwd) X(_other) X(in_iface) X(out_iface) X(key) X(new_src) X(new_sport) X(new_dst) X(new_dport)      \
    X(rewrites) X(mtu) X(_vp) X(seqrand) X(offsets) X(tcp) X(seen) X(td_end) X(td_maxend) X(td_maxwin)    \
    X(td_maxack) X(td_scale) X(flags) X(state) X(last_dir) X(last_seq) X(last_ack) X(last_end)          \
    X(last_win) X(retrans) X(_timeout) X(norm) X(profile) X(ttl) X(queue) X(exceed_mss)                 \
    X(rewrites_options) X(keeps_timestamps) X(nxt) X(mss_limit) X(data_seen)
#define DECLARE_NAME(name) static PyObject *n_##name;
FILL_NAMES(DECLARE_NAME)
#define INTERN_NAME(name) if (!(n_##name = PyUnicode_InternFromString(#name))) return -1;
static int fill_names(void) {
    FILL_NAMES(INTERN_NAME)
    return 0;
}

/* The byte offset of name's __slots__ member in tp's instances (an object slot, writable too when
 * writable), found through the type's attribute cache; 0 when name is anything else. */
static Py_ssize_t slot_offset(PyTypeObject *tp, PyObject *name, int writable) {
    PyObject *descr = _PyType_Lookup(tp, name); /* borrowed */
    if (!descr || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
        return 0;
    PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
    if (m->type != T_OBJECT_EX || (writable && (m->flags & READONLY)) || m->offset <= 0 ||
        !PyType_IsSubtype(tp, PyDescr_TYPE(descr)))
        return 0;
    return m->offset;
}

/* obj.name, a new reference: read straight from the object's slot where name is a __slots__ member of its
 * type (a member descriptor is a data descriptor, so the instance's own dictionary, if any, cannot hide
 * it), else PyObject_GetAttr. */
static PyObject *get_attr(PyObject *o, PyObject *name) {
    PyTypeObject *tp = Py_TYPE(o);
    if (tp->tp_getattro == PyObject_GenericGetAttr) {
        Py_ssize_t off = slot_offset(tp, name, 0);
        PyObject *v = off ? *(PyObject **)((char *)o + off) : NULL;
        if (v) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(o, name);
}

/* "I": any int, masked to 32 bits */
static int as_u32(PyObject *v, unsigned int *out) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "fill: an integer is required, not %.50s", Py_TYPE(v)->tp_name);
        return -1;
    }
    unsigned long x = PyLong_AsUnsignedLongMask(v);
    if (x == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = (unsigned int)x;
    return 0;
}

/* "i" (lo, hi: the range accepted) and "b" (0-255) */
static int as_int(PyObject *v, long lo, long hi, long *out) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "fill: an integer is required, not %.50s", Py_TYPE(v)->tp_name);
        return -1;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < lo || x > hi) {
        PyErr_SetString(PyExc_OverflowError, "fill: a value out of its field's range");
        return -1;
    }
    *out = x;
    return 0;
}

/* obj.name converted as above (the attribute read and dropped) */
static int attr_u32(PyObject *o, PyObject *name, unsigned int *out) {
    PyObject *v = get_attr(o, name);
    if (!v)
        return -1;
    int r = as_u32(v, out);
    Py_DECREF(v);
    return r;
}

static int attr_int(PyObject *o, PyObject *name, long lo, long hi, long *out) {
    PyObject *v = get_attr(o, name);
    if (!v)
        return -1;
    int r = as_int(v, lo, hi, out);
    Py_DECREF(v);
    return r;
}

static int attr_u8(PyObject *o, PyObject *name, unsigned char *out) {
    long x;
    if (attr_int(o, name, 0, 255, &x) < 0)
        return -1;
    *out = (unsigned char)x;
    return 0;
}

static int attr_true(PyObject *o, PyObject *name) {
    PyObject *v = get_attr(o, name);
    if (!v)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* One half (d): its key into the record's, its translation (Half.compile_nat's numbers) and MTU;
 * bits 4d..4d+3 of mask: which of its new_src, new_sport, new_dst, new_dport are set. */
static int fill_half(Flow *f, int d, PyObject *h, PyObject *ifs, PyObject *out_iface, unsigned *mask) {
    PyObject *key = get_attr(h, n_key);
    if (!key)
        return -1;
    int r = -1;
    unsigned long k[6]; /* version, proto, src, sport, dst, dport */
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 6) {
        PyErr_SetString(PyExc_ValueError, "fill: a half's key is (version, proto, src, sport, dst, dport)");
        goto done;
    }
    for (int i = 1; i < 6; i++) {
        k[i] = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(key, i));
        if (k[i] == (unsigned long)-1 && PyErr_Occurred())
            goto done;
    }
    if (k[1] > 0xFF || k[2] > 0xFFFFFFFFul || k[4] > 0xFFFFFFFFul || k[3] > 0xFFFF || k[5] > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "fill: a key's field out of range");
        goto done;
    }
    unsigned char *p = f->key[d]; /* as fastpath.flow_key packs it: network order */
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(k[2] >> (24 - 8 * i));
        p[4 + i] = (unsigned char)(k[4] >> (24 - 8 * i));
    }
    p[8] = (unsigned char)(k[3] >> 8), p[9] = (unsigned char)k[3];
    p[10] = (unsigned char)(k[5] >> 8), p[11] = (unsigned char)k[5];
    p[12] = (unsigned char)k[1];
    int rewrites = attr_true(h, n_rewrites);
    if (rewrites < 0)
        goto done;
    long long src = (long long)k[2], sport = (long long)k[3], dst = (long long)k[4], dport = (long long)k[5];
    long long nv[4] = {src, sport, dst, dport};
    PyObject *names[4] = {n_new_src, n_new_sport, n_new_dst, n_new_dport};
    for (int i = 0; i < 4; i++) {
        PyObject *v = get_attr(h, names[i]);
        if (!v)
            goto done;
        if (v != Py_None) {
            *mask |= 1u << (4 * d + i); /* fastpath._rewrites */
            nv[i] = PyLong_AsLongLong(v);
            if (nv[i] == -1 && PyErr_Occurred()) {
                Py_DECREF(v);
                goto done;
            }
        }
        Py_DECREF(v);
    }
    if (rewrites) {
        if (nv[1] < 0 || nv[1] > 0xFFFF || nv[3] < 0 || nv[3] > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "a port is 16 bits");
            goto done;
        }
        long long da = (nv[0] - src) + (nv[2] - dst);
        long long dl4 = da + (nv[1] - sport) + (nv[3] - dport);
        da %= 65535;
        dl4 %= 65535;
        f->nsrc[d] = (unsigned int)nv[0];
        f->ndst[d] = (unsigned int)nv[2];
        f->nsport[d] = (unsigned short)nv[1];
        f->ndport[d] = (unsigned short)nv[3];
        f->da[d] = (unsigned short)(da < 0 ? da + 65535 : da);
        f->dl4[d] = (unsigned short)(dl4 < 0 ? dl4 + 65535 : dl4);
        f->moved[d] = nv[0] != src || nv[2] != dst;
        f->rewrites[d] = 1;
    } else {
        f->nsrc[d] = f->ndst[d] = 0;
        f->nsport[d] = f->ndport[d] = f->da[d] = f->dl4[d] = 0;
        f->moved[d] = f->rewrites[d] = 0;
    }
    PyObject *iface = PyObject_GetItem(ifs, out_iface);
    if (!iface)
        goto done;
    long mtu;
    int m = attr_int(iface, n_mtu, INT_MIN, INT_MAX, &mtu);
    Py_DECREF(iface);
    if (m < 0)
        goto done;
    f->mtu[d] = (unsigned short)(mtu < 0 ? 0 : mtu > 0xFFFF ? 0xFFFF : mtu);
    r = 0;
done:
    Py_DECREF(key);
    return r;
}

/* The tracker's fields (trk.seen's two peers and the connection-wide ones). */
static int fill_tcp(Flow *f, PyObject *trk) {
    PyObject *seen = get_attr(trk, n_seen);
    if (!seen)
        return -1;
    int r = -1;
    if (!PyTuple_Check(seen) || PyTuple_GET_SIZE(seen) != 2) {
        PyErr_SetString(PyExc_ValueError, "fill: the tracker's seen is a pair");
        goto done;
    }
    for (int d = 0; d < 2; d++) {
        PyObject *p = PyTuple_GET_ITEM(seen, d);
        if (attr_u32(p, n_td_end, &f->td_end[d]) < 0 || attr_u32(p, n_td_maxend, &f->td_maxend[d]) < 0 ||
            attr_u32(p, n_td_maxwin, &f->td_maxwin[d]) < 0 || attr_u32(p, n_td_maxack, &f->td_maxack[d]) < 0 ||
            attr_u8(p, n_td_scale, &f->td_scale[d]) < 0 || attr_u32(p, n_flags, &f->pflags[d]) < 0)
            goto done;
    }
    long retrans;
    if (attr_u8(trk, n_last_dir, &f->last_dir) < 0 || attr_u32(trk, n_last_seq, &f->last_seq) < 0 ||
        attr_u32(trk, n_last_ack, &f->last_ack) < 0 || attr_u32(trk, n_last_end, &f->last_end) < 0 ||
        attr_u32(trk, n_last_win, &f->last_win) < 0 || attr_int(trk, n_retrans, INT_MIN, INT_MAX, &retrans) < 0)
        goto done;
    f->retrans = (int)retrans;
    PyObject *t = get_attr(trk, n__timeout);
    if (!t)
        goto done;
    f->timeout = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (f->timeout == -1.0 && PyErr_Occurred())
        goto done;
    r = 0;
done:
    Py_DECREF(seen);
    return r;
}

/* obj.name as a list or tuple (PySequence_Fast) */
static PyObject *attr_seq(PyObject *o, PyObject *name) {
    PyObject *v = get_attr(o, name);
    if (!v)
        return NULL;
    PyObject *s = PySequence_Fast(v, "fill: a pair is expected");
    Py_DECREF(v);
    return s;
}

/* The normalizer's fields: the tcp-map's settings the compiled checks need and the per-connection state. */
static int fill_norm(Flow *f, PyObject *norm) {
    PyObject *prof = get_attr(norm, n_profile), *nxt = NULL, *ttl = NULL, *lim = NULL, *em = NULL;
    if (!prof)
        return -1;
    int r = -1, t, q, ro, kt, drop;
    if ((t = attr_true(prof, n_ttl)) < 0 || (q = attr_true(prof, n_queue)) < 0 ||
        (ro = attr_true(prof, n_rewrites_options)) < 0)
        goto done;
    kt = ro ? attr_true(prof, n_keeps_timestamps) : 1;
    if (kt < 0 || !(em = get_attr(prof, n_exceed_mss)))
        goto done;
    drop = PyLong_Check(em) && PyLong_AsLong(em) == 2; /* normalizer.DROP */
    if (PyErr_Occurred())
        goto done;
    if (!(nxt = attr_seq(norm, n_nxt)) || !(ttl = attr_seq(norm, n_ttl)) || !(lim = attr_seq(norm, n_mss_limit)))
        goto done;
    if (PySequence_Fast_GET_SIZE(nxt) != 2 || PySequence_Fast_GET_SIZE(ttl) != 2 ||
        PySequence_Fast_GET_SIZE(lim) != 2) {
        PyErr_SetString(PyExc_ValueError, "fill: the normalizer's nxt, ttl and mss_limit are pairs");
        goto done;
    }
    for (int d = 0; d < 2; d++) {
        PyObject *n = PySequence_Fast_GET_ITEM(nxt, d), *m = PySequence_Fast_GET_ITEM(lim, d);
        long x;
        f->nxt_set[d] = n != Py_None;
        f->nxt[d] = 0;
        if (n != Py_None && as_u32(n, &f->nxt[d]) < 0)
            goto done;
        if (as_int(PySequence_Fast_GET_ITEM(ttl, d), 0, 255, &x) < 0)
            goto done;
        f->ttl_low[d] = (unsigned char)x;
        f->mss_limit[d] = -1;
        if (m != Py_None) {
            if (as_int(m, INT_MIN, INT_MAX, &x) < 0)
                goto done;
            f->mss_limit[d] = (int)x;
        }
    }
    f->n_ttl = t;
    f->n_queue = q;
    f->n_exceed_drop = drop;
    f->n_no_options = ro && !kt;
    f->norm = 1;
    r = 0;
done:
    Py_DECREF(prof);
    Py_XDECREF(em);
    Py_XDECREF(nxt);
    Py_XDECREF(ttl);
    Py_XDECREF(lim);
    return r;
}

static PyObject *Flow_fill(Flow *f, PyObject *args) {
    PyObject *conn, *ifs;
    if (!PyArg_ParseTuple(args, "OO:fill", &conn, &ifs))
        return NULL;
    PyObject *h0 = NULL, *h1 = NULL, *in0 = NULL, *in1 = NULL, *out0 = NULL, *out1 = NULL, *vp = NULL,
             *seen = NULL, *shift = NULL, *offs = NULL, *trk = NULL, *norm = NULL, *ret = NULL;
    long proto, state = 3;
    unsigned mask = 0;
    if (!(h0 = get_attr(conn, n__fwd)) || !(h1 = get_attr(h0, n__other)))
        goto done;
    if (!(in0 = get_attr(h0, n_in_iface)) || !(in1 = get_attr(h1, n_in_iface)) ||
        !(out0 = get_attr(h0, n_out_iface)) || !(out1 = get_attr(h1, n_out_iface)))
        goto done;
    if (!PyUnicode_Check(in0) || !PyUnicode_Check(in1) || !PyUnicode_Check(out0) || !PyUnicode_Check(out1)) {
        PyErr_SetString(PyExc_TypeError, "fill: interfaces are names");
        goto done;
    }
    /* The REPLY half leaves where the ORIGINAL one arrived and arrives where it left. */
    int c0 = PyUnicode_Compare(out0, in1), c1 = c0 ? c0 : PyUnicode_Compare(out1, in0);
    if (PyErr_Occurred())
        goto done;
    if (c0 || c1) {
        PyErr_SetString(PyExc_ValueError, "the halves' interfaces are not each other's");
        goto done;
    }
    if (fill_half(f, 0, h0, ifs, out0, &mask) < 0 || fill_half(f, 1, h1, ifs, out1, &mask) < 0)
        goto done;
    if (!(seen = get_attr(conn, n_data_seen)) || !(vp = get_attr(conn, n__vp)))
        goto done;
    if (!PyTuple_Check(seen) || PyTuple_GET_SIZE(seen) != 2 || !PyTuple_Check(vp) || PyTuple_GET_SIZE(vp) < 2) {
        PyErr_SetString(PyExc_ValueError, "fill: data_seen and the connection's shape are tuples");
        goto done;
    }
    for (int d = 0; d < 2; d++) {
        int s = PyObject_IsTrue(PyTuple_GET_ITEM(seen, d));
        if (s < 0)
            goto done;
        f->seen_mark[d] = (unsigned char)s;
    }
    if (as_int(PyTuple_GET_ITEM(vp, 1), 0, 255, &proto) < 0)
        goto done;
    if (!(shift = get_attr(conn, n_seqrand)))
        goto done;
    f->offs[0] = f->offs[1] = 0;
    if (shift != Py_None) {
        if (!(offs = get_attr(shift, n_offsets)))
            goto done;
        if (!PyTuple_Check(offs) || PyTuple_GET_SIZE(offs) != 2) {
            PyErr_SetString(PyExc_ValueError, "fill: the offsets are a pair");
            goto done;
        }
        if (as_u32(PyTuple_GET_ITEM(offs, 0), &f->offs[0]) < 0 || as_u32(PyTuple_GET_ITEM(offs, 1), &f->offs[1]) < 0)
            goto done;
    }
    f->norm = 0;
    if (!(trk = get_attr(conn, n_tcp)))
        goto done;
    if (trk != Py_None) {
        if (attr_int(trk, n_state, LONG_MIN, LONG_MAX, &state) < 0)
            goto done;
        if (state < 1 || state > 3) {
            PyErr_SetString(PyExc_ValueError, "a flow is offloaded in SYN_SENT, SYN_RECV or ESTABLISHED");
            goto done;
        }
        if (fill_tcp(f, trk) < 0 || !(norm = get_attr(conn, n_norm)))
            goto done;
        if (norm != Py_None && fill_norm(f, norm) < 0)
            goto done;
    }
    f->keyed = 1;
    f->proto = (unsigned char)proto;
    f->state = (unsigned char)state; /* what eligible() requires */
    f->mss1 = 0;
    f->synack_opts = 7;
    PyObject *objs[3] = {conn, in0, in1};
    PyObject **slots[3] = {&f->conn, &f->iface[0], &f->iface[1]};
    for (int i = 0; i < 3; i++) {
        Py_INCREF(objs[i]);
        Py_XSETREF(*slots[i], objs[i]);
    }
    ret = PyLong_FromUnsignedLong(mask);
done:
    Py_XDECREF(h0);
    Py_XDECREF(h1);
    Py_XDECREF(in0);
    Py_XDECREF(in1);
    Py_XDECREF(out0);
    Py_XDECREF(out1);
    Py_XDECREF(vp);
    Py_XDECREF(seen);
    Py_XDECREF(shift);
    Py_XDECREF(offs);
    Py_XDECREF(trk);
    Py_XDECREF(norm);
    return ret;
}

/* tcp_state() -> what the fast path changes, for the copy back: (td_end0, td_maxend0, td_maxwin0,
 * td_maxack0, pflags0, the same for 1, last_dir, last_seq, last_ack, last_end, last_win, retrans,
 * timeout, packets, nxt0 or None, nxt1 or None, ttl_low0, ttl_low1) */
static PyObject *Flow_tcp_state(Flow *f, PyObject *unused) {
    PyObject *n0 = f->nxt_set[0] ? PyLong_FromUnsignedLong(f->nxt[0]) : (Py_INCREF(Py_None), Py_None);
    PyObject *n1 = f->nxt_set[1] ? PyLong_FromUnsignedLong(f->nxt[1]) : (Py_INCREF(Py_None), Py_None);
    if (!n0 || !n1) {
        Py_XDECREF(n0);
        Py_XDECREF(n1);
        return NULL;
    }
    return Py_BuildValue("(IIIIIIIIIIiIIIIidKNNii)", f->td_end[0], f->td_maxend[0], f->td_maxwin[0],
                         f->td_maxack[0], f->pflags[0], f->td_end[1], f->td_maxend[1], f->td_maxwin[1],
                         f->td_maxack[1], f->pflags[1], f->last_dir, f->last_seq, f->last_ack, f->last_end,
                         f->last_win, f->retrans, f->timeout, f->packets, n0, n1, f->ttl_low[0],
                         f->ttl_low[1]);
}

/* ends() -> (iface0, iface1, proto, (src, sport, dst, dport, nsrc, nsport, ndst, ndport) per direction):
 * what the connection's two halves are made from again while the record holds the connection alone
 * (statewall.fastpath: the halves and their keys are not kept, issue 18's fifth memory round). */
static PyObject *half_ends(const Flow *f, int d) {
    const unsigned char *k = f->key[d];
    unsigned int src = (unsigned int)k[0] << 24 | (unsigned int)k[1] << 16 | (unsigned int)k[2] << 8 | k[3];
    unsigned int dst = (unsigned int)k[4] << 24 | (unsigned int)k[5] << 16 | (unsigned int)k[6] << 8 | k[7];
    unsigned int sport = (unsigned int)k[8] << 8 | k[9], dport = (unsigned int)k[10] << 8 | k[11];
    return Py_BuildValue("(IIIIIIII)", src, sport, dst, dport, f->nsrc[d], (unsigned int)f->nsport[d],
                         f->ndst[d], (unsigned int)f->ndport[d]);
}

static PyObject *Flow_ends(Flow *f, PyObject *unused) {
    if (!f->keyed || !f->iface[0] || !f->iface[1]) {
        PyErr_SetString(PyExc_ValueError, "the flow was never filled");
        return NULL;
    }
    return Py_BuildValue("(OOBNN)", f->iface[0], f->iface[1], f->proto, half_ends(f, 0), half_ends(f, 1));
}

/* ---- the SYN of a known flow class (statewall.engine.known_syn) ------------------------------------
 *
 * A class of flow (statewall.engine.flowclass) whose SYN the Python path took, built a connection for
 * and offloaded at that SYN keeps a template: the SYN as it arrived (tin), as it left (tout) and a copy
 * of the record right after it (syn_copy). A later SYN of the same class whose bytes are the template's
 * but for the per-connection fields (IP id, IP checksum, source port, sequence number, TCP checksum:
 * syn_like) is taken by the same stages to the same decisions; only the source port (PAT), the
 * sequence number (the tracker's and the normalizer's numbers move with it, the randomization's offset
 * is its hash) and the translation differ. syn_build makes its record from the template's and rewrites
 * the SYN: the template's output bytes, the mapped source and port, the shifted sequence number, each
 * checksum updated from the arriving one by the sum of the changed words (RFC 1624 eqn. 3, as the
 * Python path's steps add up: its updates compose into one; a partial checksum by the addresses'). */

static PyTypeObject FlowType;

/* The bytes a SYN of the class may differ in from the template's (IPv4 header without options): IP id
 * and checksum, source port, sequence number, TCP checksum, and, when the template has a timestamps
 * option, its two values (ts: the offset of TSval, 0 without; a host's clock and per-connection offset
 * make TSval differ from SYN to SYN, and no stage decides by it). */
static inline int syn_varies(Py_ssize_t i, Py_ssize_t ts) {
    return i == 4 || i == 5 || i == 10 || i == 11 || i == 20 || i == 21 || (i >= 24 && i <= 27) || i == 36 ||
           i == 37 || (ts && i >= ts && i < ts + 8);
}

static int syn_buffers(PyObject *data, PyObject *tin, Py_buffer *d, Py_buffer *b) {
    if (PyObject_GetBuffer(data, d, PyBUF_SIMPLE) < 0)
        return -1;
    if (PyObject_GetBuffer(tin, b, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(d);
        return -1;
    }
    return 0;
}

/* syn_like(data, tin[, ts]) -> whether data is tin but for the per-connection fields (syn_varies). */
static PyObject *Flow_syn_like(PyObject *unused, PyObject *args) {
    PyObject *data, *tin;
    Py_ssize_t ts = 0;
    if (!PyArg_ParseTuple(args, "OO|n:syn_like", &data, &tin, &ts))
        return NULL;
    Py_buffer d, b;
    if (syn_buffers(data, tin, &d, &b) < 0)
        return NULL;
    int same = d.len == b.len && d.len >= 40 && (ts == 0 || (ts >= 40 && ts + 8 <= d.len));
    const unsigned char *x = d.buf, *y = b.buf;
    for (Py_ssize_t i = 0; same && i < d.len; i++)
        if (x[i] != y[i] && !syn_varies(i, ts))
            same = 0;
    PyBuffer_Release(&d);
    PyBuffer_Release(&b);
    return PyBool_FromLong(same);
}

/* syn_copy() -> a new Flow with this one's fields, without its connection (the template's record). */
static PyObject *Flow_syn_copy(Flow *t, PyObject *unused) {
    Flow *f = (Flow *)FlowType.tp_alloc(&FlowType, 0);
    if (!f)
        return NULL;
    size_t start = offsetof(Flow, nsrc);
    memcpy((char *)f + start, (char *)t + start, sizeof(Flow) - start);
    PyObject *objs[3] = {t->iface[0], t->iface[1], t->shared};
    PyObject **slots[3] = {&f->iface[0], &f->iface[1], &f->shared};
    for (int i = 0; i < 3; i++) {
        Py_XINCREF(objs[i]);
        *slots[i] = objs[i];
    }
    return (PyObject *)f;
}

/* One direction's translation as fill_half computes it: the key's own numbers, the new ones. */
static void syn_nat(Flow *f, int d, long long src, long long sport, long long dst, long long dport,
                    long long nsrc, long long nsport, long long ndst, long long ndport, int rewrites) {
    if (!rewrites) {
        f->nsrc[d] = f->ndst[d] = 0;
        f->nsport[d] = f->ndport[d] = f->da[d] = f->dl4[d] = 0;
        f->moved[d] = f->rewrites[d] = 0;
        return;
    }
    long long da = (nsrc - src) + (ndst - dst);
    long long dl4 = da + (nsport - sport) + (ndport - dport);
    da %= 65535;
    dl4 %= 65535;
    f->nsrc[d] = (unsigned int)nsrc;
    f->ndst[d] = (unsigned int)ndst;
    f->nsport[d] = (unsigned short)nsport;
    f->ndport[d] = (unsigned short)ndport;
    f->da[d] = (unsigned short)(da < 0 ? da + 65535 : da);
    f->dl4[d] = (unsigned short)(dl4 < 0 ? dl4 + 65535 : dl4);
    f->moved[d] = nsrc != src || ndst != dst;
    f->rewrites[d] = 1;
}

/* ---- arithmetic as statewall.packet does it ---------------------------------------------------- */

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}
static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* _M - (((c ^ _M) + d) % _M or _M): RFC 1624 eqn. 3 with Python's modulo */
static inline unsigned csum_update(unsigned c, long long d) {
    long long x = ((long long)(c ^ 0xFFFFu) + d) % 65535;
    if (x < 0)
        x += 65535;
    if (x == 0)
        x = 65535;
    return (unsigned)(65535 - x);
}

/* (c + d) % _M or _M: a partial (pseudo-header) sum moved by d */
static inline unsigned partial_update(unsigned c, long long d) {
    long long x = ((long long)c + d) % 65535;
    if (x < 0)
        x += 65535;
    if (x == 0)
        x = 65535;
    return (unsigned)x;
}

/* syn_build(template_record, conn, shared, data, tin, tout, msrc, msport, mask, offset) -> the new
 * connection's record, and data rewritten in place as the Python path rewrites it. The template's record
 * (self) is the one copied right after its SYN (syn_copy); mask is the halves' rewrite mask
 * (fastpath._rewrites: bits 0-3 the ORIGINAL half's new_src, new_sport, new_dst, new_dport, 4-7 the
 * REPLY half's), offset the ORIGINAL direction's randomization offset (0 without). The caller checked
 * syn_like(data, tin). */
static PyObject *Flow_syn_build(Flow *t, PyObject *args) {
    PyObject *conn, *shared, *data, *tin, *tout;
    unsigned int msrc, mask, off;
    int msport, partial = 0;
    Py_ssize_t ts = 0;
    if (!PyArg_ParseTuple(args, "OOOOOIiII|pn:syn_build", &conn, &shared, &data, &tin, &tout, &msrc, &msport,
                          &mask, &off, &partial, &ts))
        return NULL;
    if (!PyByteArray_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "syn_build: the SYN is a bytearray");
        return NULL;
    }
    if (msport < 0 || msport > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "syn_build: a port is 16 bits");
        return NULL;
    }
    Py_buffer d, b, o;
    if (syn_buffers(data, tin, &d, &b) < 0)
        return NULL;
    if (PyObject_GetBuffer(tout, &o, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&d);
        PyBuffer_Release(&b);
        return NULL;
    }
    Flow *f = NULL;
    if (d.len != b.len || d.len != o.len || d.len < 40 || d.len > 128 || (d.len & 1)) {
        PyErr_SetString(PyExc_ValueError, "syn_build: the SYN is not the template's size");
        goto done;
    }
    if (ts != 0 && (ts < 40 || ts + 8 > d.len)) {
        PyErr_SetString(PyExc_ValueError, "syn_build: the timestamps' offset is not in the TCP options");
        goto done;
    }
    f = (Flow *)Flow_syn_copy(t, NULL);
    if (!f)
        goto done;
    unsigned char *p = d.buf;
    const unsigned char *to = o.buf, *ti = b.buf;
    /* The record: the keys, the translations, the numbers that move with the sequence number. */
    uint32_t src = be32(p + 12), dst = be32(p + 16), seq = be32(p + 24);
    unsigned sport = be16(p + 20), dport = be16(p + 22);
    memcpy(f->key[0], p + 12, 8);
    memcpy(f->key[0] + 8, p + 20, 4);
    f->key[0][12] = p[9];
    unsigned char *k1 = f->key[1]; /* (real_dst, real_dport) of the class; the mapped source and port */
    put32(k1 + 4, msrc);
    put16(k1 + 10, (unsigned)msport);
    uint32_t rdst = be32(k1);
    unsigned rdport = be16(k1 + 8);
    syn_nat(f, 0, src, sport, dst, dport, (mask & 1) ? msrc : src, (mask & 2) ? msport : sport,
            (mask & 4) ? t->ndst[0] : dst, (mask & 8) ? t->ndport[0] : dport, (mask & 15) != 0);
    syn_nat(f, 1, rdst, rdport, msrc, msport, (mask & 16) ? t->nsrc[1] : rdst, (mask & 32) ? t->nsport[1] : rdport,
            (mask & 64) ? src : msrc, (mask & 128) ? sport : (unsigned)msport, (mask & 240) != 0);
    uint32_t delta = seq - be32(ti + 24);
    f->td_end[0] += delta;
    f->td_maxend[0] += delta;
    if (f->nxt_set[0])
        f->nxt[0] += delta;
    f->offs[0] = off;
    Py_INCREF(conn);
    f->conn = conn;
    Py_INCREF(shared);
    Py_XSETREF(f->shared, shared);
    /* The SYN: the template's output bytes where the class decides them, this connection's fields. */
    unsigned char orig[128];
    memcpy(orig, p, (size_t)d.len);
    for (Py_ssize_t i = 0; i < d.len; i++)
        if (!syn_varies(i, ts))
            p[i] = to[i];
    put32(p + 12, msrc);
    put16(p + 20, (unsigned)msport);
    put32(p + 24, seq + off);
    /* Each checksum moved by the sum of the words that changed (IP header; pseudo-header addresses and
     * the TCP header), from the arriving packet's. */
    long long dip = 0, dl4 = 0, daddr = 0;
    for (Py_ssize_t i = 0; i + 1 < d.len; i += 2) {
        if (i == 10 || i == 36)
            continue;
        long long w = (long long)be16(p + i) - (long long)be16(orig + i);
        if (i < 20)
            dip += w;
        if (i >= 12)
            dl4 += w;
        if (i >= 12 && i < 20)
            daddr += w;
    }
    put16(p + 10, csum_update(be16(orig + 10), dip));
    if (!partial) {
        put16(p + 36, csum_update(be16(orig + 36), dl4));
    } else if (f->moved[0]) {
        /* A partial checksum (the pseudo-header's sum, TUN NEEDS_CSUM) moves with the addresses only,
         * as Packet.forward_nat4 moves it; the sequence number and the MSS leave it alone. */
        long long x = ((long long)be16(orig + 36) + daddr) % 65535;
        if (x < 0)
            x += 65535;
        put16(p + 36, (unsigned)(x ? x : 65535));
    }
done:
    PyBuffer_Release(&d);
    PyBuffer_Release(&b);
    PyBuffer_Release(&o);
    return (PyObject *)f;
}

static PyMethodDef Flow_methods[] = {
    {"fill", (PyCFunction)Flow_fill, METH_VARARGS,
     "fill(conn, ifs) -> the halves' rewrite mask: every field at once, read from the connection's objects "
     "(statewall.fastpath.offload)"},
    {"tcp_state", (PyCFunction)Flow_tcp_state, METH_NOARGS, "the fields the fast path changes"},
    {"syn_copy", (PyCFunction)Flow_syn_copy, METH_NOARGS,
     "a new Flow with this one's fields but no connection (a known class's template record)"},
    {"syn_build", (PyCFunction)Flow_syn_build, METH_VARARGS,
     "syn_build(conn, shared, data, tin, tout, msrc, msport, mask, offset[, partial[, ts]]) -> the record of "
     "a known class's SYN, data rewritten as the Python path rewrites it (statewall.engine.known_syn); "
     "partial: the TCP checksum field holds the pseudo-header's sum; ts: the offset of the timestamps "
     "option's values, kept as they arrived (0: none)"},
    {"syn_like", (PyCFunction)Flow_syn_like, METH_VARARGS | METH_STATIC,
     "syn_like(data, tin[, ts]) -> whether data is the template's SYN tin but for IP id, source port, "
     "sequence number, checksums and (ts: their offset, 0 none) the timestamps option's values"},
    {"ends", (PyCFunction)Flow_ends, METH_NOARGS,
     "(iface0, iface1, proto, (src, sport, dst, dport, nsrc, nsport, ndst, ndport) per direction)"},
    {NULL},
};

static PyTypeObject FlowType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "statewall._fastpath.Flow",
    .tp_doc = "One offloaded connection's state (statewall.fastpath fills and reads it).",
    .tp_basicsize = sizeof(Flow),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Flow_dealloc,
    .tp_traverse = (traverseproc)Flow_traverse,
    .tp_clear = (inquiry)Flow_clear,
    .tp_members = Flow_members,
    .tp_methods = Flow_methods,
};

/* ------------------------------------------------------------------------------------------------ */

/* ---- the Python objects a forwarded packet touches, without a lookup per packet (issue 18) ------ */

/* On CPython 3.11 the per-packet Python work is done without looking a name up or making an int:
 *
 * - An attribute of an instance (the Firewall's trace_log, now, fast_offer) is read from its __dict__
 *   as the generic getattr would read it, remembered with the dict's and the type's version tags: a
 *   dict's tag changes with every change of the dict and is unique across dicts (so the same tag is
 *   the same dict, unchanged), a type's tag changes with every change of the type or its bases. A
 *   type that defines the name itself (a descriptor, a class attribute) or its own getattr is read
 *   the generic way.
 * - A counter that only its dict (fw.stats) or its slot (conn.bytes) holds is added to in place: an
 *   int object nothing else references cannot be told from a new one, and making a new one per
 *   packet was most of the counting's cost. With any other reference (a reader that kept the value),
 *   or outside one or two 30-bit digits, a new int is made as before.
 * - A slot of the Connection (last, bytes) is written at its offset, as its member descriptor writes
 *   it, once the type's descriptor is known to be the plain slot (remembered per type and version).
 *
 * Elsewhere (another CPython) every one of these is the generic call. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(STATEWALL_GENERIC)
#define SW_INTERNALS 1
#endif

typedef struct {
    PyTypeObject *type; /* compared only */
    unsigned int type_tag;
    PyObject *dict; /* compared only */
    uint64_t tag;   /* 0: nothing remembered */
} dict_cache;

/* Whether obj's dictionary is the one cache remembers, unchanged, and its type too. */
static inline int cache_current(const dict_cache *c, PyObject *obj) {
#ifdef SW_INTERNALS
    PyTypeObject *tp = Py_TYPE(obj);
    if (!c->tag || tp != c->type || tp->tp_version_tag != c->type_tag ||
        !PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
    PyObject **dp = _PyObject_GetDictPtr(obj);
    return dp && *dp == c->dict && ((PyDictObject *)*dp)->ma_version_tag == c->tag;
#else
    (void)c;
    (void)obj;
    return 0;
#endif
}

/* Remember obj's attributes names[0:n] into vals (borrowed: valid while cache_current) when the
 * generic getattr would take each from obj's __dict__; 0 (nothing remembered) otherwise. */
static int cache_fill(dict_cache *c, PyObject *obj, PyObject *const *names, PyObject **vals, int n) {
    c->tag = 0;
#ifdef SW_INTERNALS
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp->tp_getattro != PyObject_GenericGetAttr || tp->tp_setattro != PyObject_GenericSetAttr)
        return 0;
    for (int i = 0; i < n; i++)
        if (_PyType_Lookup(tp, names[i]))
            return 0;
    if (!PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
    PyObject **dp = _PyObject_GetDictPtr(obj);
    if (!dp || !*dp || !PyDict_CheckExact(*dp))
        return 0;
    for (int i = 0; i < n; i++) {
        vals[i] = PyDict_GetItemWithError(*dp, names[i]);
        if (!vals[i]) {
            PyErr_Clear(); /* the generic getattr says it again */
            return 0;
        }
    }
    c->type = tp;
    c->type_tag = tp->tp_version_tag;
    c->dict = *dp;
    c->tag = ((PyDictObject *)*dp)->ma_version_tag;
    return c->tag != 0;
#else
    (void)obj;
    (void)names;
    (void)vals;
    (void)n;
    return 0;
#endif
}

/* The last fw.now the compiled path moved (forwarded): its Firewall's dict's tag before and after. A
 * cache that does not hold fw.now (the Entry's fast_offer) is still current across that one change. */
static struct {
    PyObject *dict; /* compared only */
    uint64_t from, to;
} now_moved;

static inline int cache_current_but_now(dict_cache *c, PyObject *obj) {
    if (cache_current(c, obj))
        return 1;
#ifdef SW_INTERNALS
    if (c->tag && c->tag == now_moved.from && c->dict == now_moved.dict && Py_TYPE(obj) == c->type &&
        cache_current(&(dict_cache){c->type, c->type_tag, c->dict, now_moved.to}, obj)) {
        c->tag = now_moved.to;
        return 1;
    }
#endif
    return 0;
}

/* After obj.name = value set by the caller while the cache was current: still current, with the new
 * value (the dict's new tag), when obj's dict is still the remembered one. */
static inline void cache_after_set(dict_cache *c, PyObject *obj) {
#ifdef SW_INTERNALS
    PyObject **dp = _PyObject_GetDictPtr(obj);
    if (c->tag && dp && *dp == c->dict && Py_TYPE(obj) == c->type)
        c->tag = ((PyDictObject *)*dp)->ma_version_tag;
    else
        c->tag = 0;
#else
    c->tag = 0;
    (void)obj;
#endif
}

/* The same for a dict's own items d[names[i]] (the storage, as PyDict_GetItem reads it). */
static inline int items_current(const dict_cache *c, PyObject *d) {
#ifdef SW_INTERNALS
    return c->tag && c->dict == d && ((PyDictObject *)d)->ma_version_tag == c->tag;
#else
    (void)c;
    (void)d;
    return 0;
#endif
}

static int items_fill(dict_cache *c, PyObject *d, PyObject *const *names, PyObject **vals, int n) {
    c->tag = 0;
#ifdef SW_INTERNALS
    for (int i = 0; i < n; i++) {
        vals[i] = PyDict_GetItemWithError(d, names[i]);
        if (!vals[i]) {
            PyErr_Clear();
            return 0;
        }
    }
    c->dict = d;
    c->tag = ((PyDictObject *)d)->ma_version_tag;
    return c->tag != 0;
#else
    (void)d;
    (void)names;
    (void)vals;
    (void)n;
    return 0;
#endif
}

/* v += inc in place when nothing but its one holder references the int v; 1 when done, 0 when the
 * caller makes a new int. */
static inline int long_add_inplace(PyObject *v, unsigned long inc) {
#ifdef SW_INTERNALS
    if (!PyLong_CheckExact(v) || Py_REFCNT(v) != 1 || inc > PyLong_MASK)
        return 0;
    digit *d = ((PyLongObject *)v)->ob_digit;
    Py_ssize_t size = Py_SIZE(v);
    if (size == 1) {
        uint64_t x = (uint64_t)d[0] + inc;
        if (x > PyLong_MASK)
            return 0;
        d[0] = (digit)x;
        return 1;
    }
    if (size == 2) {
        uint64_t x = (((uint64_t)d[1] << PyLong_SHIFT) | d[0]) + inc;
        if (x >> (2 * PyLong_SHIFT))
            return 0;
        d[0] = (digit)(x & PyLong_MASK);
        d[1] = (digit)(x >> PyLong_SHIFT);
        return 1;
    }
#else
    (void)v;
    (void)inc;
#endif
    return 0;
}

/* A Connection type's plain slots for last and bytes (their byte offsets), remembered per type and
 * version tag; offsets 0 where the type's attribute is not a plain writable slot. */
typedef struct {
    PyTypeObject *type; /* compared only */
    unsigned int tag;
    Py_ssize_t last, bytes;
} slot_cache;

static Py_ssize_t plain_slot(PyTypeObject *tp, PyObject *name) {
#ifdef SW_INTERNALS
    return slot_offset(tp, name, 1);
#else
    (void)tp;
    (void)name;
    return 0;
#endif
}

static PyTypeObject FlowTableType;

/* The table: open addressing with linear probing over the flows' inline keys, two entries per Flow
 * (one per half). An entry is the Flow's address with the half (0 or 1) in its lowest bit; each entry
 * holds a reference. No Python object is made to look a packet up. Deletion shifts the entries after
 * it back (no tombstones), so a lookup stops at the first empty entry. */
typedef struct {
    PyObject_HEAD
    uintptr_t *slots; /* NULL or cap entries */
    size_t cap;       /* a power of two, or 0 */
    size_t used;      /* entries in use: two per Flow */
    unsigned long long hits, misses;
    /* the tracker's timeouts (conntrack settings) for every flow: set_timeouts() */
    double t_established, t_unack, t_max_retrans;
    int max_retrans;
    /* the closing states' timeouts (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT); t_close[0] > 0 when
     * the close may go through here (the ASA's lifecycle: statewall.fastpath.FastPath.offload) */
    double t_close[4];
    /* SYN_RECV's timeout, and sysopt connection tcpmss's maximum and minimum (0: off), for the SYN-ACK of
     * a flow offloaded at its SYN (set_timeouts, set_tcpmss) */
    double t_syn_recv;
    int mss_max, mss_min;
    /* bind(): the Firewall whose established-flow stage this table is the leaf of, its stats Counter
     * and the Result type */
    PyObject *fw, *stats, *result_type;
    /* bind()'s half_closed(conn, now): the lifecycle's half-closed timer, once a FIN is acknowledged;
     * fins_closed(conn, now, iface) -> events: its teardown once both FINs are; established(conn, now):
     * its idle timer once the handshake's last ACK made the connection ESTABLISHED */
    PyObject *half_closed, *fins_closed, *established;
    /* offer() only: the Flow whose teardown the packet just forwarded starts (closing_dir its
     * direction), and whether the caller takes events (events_ok; the TUN pump does not) */
    PyObject *closing;
    int closing_dir, events_ok;
    /* What the per-packet Python work remembers (above): fw's trace_log and now (fw_vals), stats'
     * packets_in and forwarded (stat_vals), the Connection types' slots (one per type seen last). */
    dict_cache fw_cache, stats_cache;
    PyObject *fw_vals[2], *stat_vals[2];
    slot_cache conn_slots[2];
    /* offer()'s last Result([(egress, packet)], []), used again for the next packet once nothing but
     * this references it or its parts (result_again) */
    PyObject *spare;
} FlowTable;

/* The four (ORIGINAL, REPLY) data-seen pairs, index bit 0 ORIGINAL, bit 1 REPLY. */
static PyObject *seen_pairs[4];

static PyObject *str_last, *str_bytes, *str_data_seen, *str_now, *str_trace, *str_packets_in, *str_forwarded,
    *str_closer, *int_one, *int_zero, *str_timeout, *str_queued_at;

#define ENTRY_FLOW(e) ((Flow *)((e) & ~(uintptr_t)1))
#define ENTRY_HALF(e) ((int)((e) & 1))

static inline uint64_t key_hash(const unsigned char *k) {
    /* the 13 bytes as two words, mixed (splitmix64's finalizer) */
    uint64_t a, b = 0;
    memcpy(&a, k, 8);
    memcpy(&b, k + 8, 5);
    uint64_t x = a ^ (b * 0x9E3779B97F4A7C15ull);
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

static inline const unsigned char *entry_key(uintptr_t e) { return ENTRY_FLOW(e)->key[ENTRY_HALF(e)]; }

/* the entry index holding key k, or the empty one where it would go */
static inline size_t find_slot(const FlowTable *t, const unsigned char *k) {
    size_t mask = t->cap - 1, i = (size_t)key_hash(k) & mask;
    while (t->slots[i] && memcmp(entry_key(t->slots[i]), k, KEYLEN) != 0)
        i = (i + 1) & mask;
    return i;
}

static int FlowTable_traverse(FlowTable *self, visitproc visit, void *arg) {
    for (size_t i = 0; i < self->cap; i++)
        if (self->slots[i])
            Py_VISIT((PyObject *)ENTRY_FLOW(self->slots[i]));
    TABLE_REFS(VISIT_REF)
    return 0;
}

static void clear_entries(FlowTable *self) {
    uintptr_t *slots = self->slots;
    size_t cap = self->cap;
    self->slots = NULL;
    self->cap = self->used = 0;
    for (size_t i = 0; i < cap; i++)
        if (slots[i])
            Py_DECREF((PyObject *)ENTRY_FLOW(slots[i]));
    PyMem_Free(slots);
}

static int FlowTable_clear(FlowTable *self) {
    clear_entries(self);
    TABLE_REFS(CLEAR_REF)
    return 0;
}

static void FlowTable_dealloc(FlowTable *self) {
    PyObject_GC_UnTrack(self);
    FlowTable_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int FlowTable_init(FlowTable *self, PyObject *args, PyObject *kw) {
    if (!PyArg_ParseTuple(args, ":FlowTable"))
        return -1;
    clear_entries(self);
    return 0;
}

static int grow(FlowTable *t) {
    size_t ncap = t->cap ? t->cap * 2 : 64;
    uintptr_t *ns = PyMem_Calloc(ncap, sizeof(uintptr_t));
    if (!ns) {
        PyErr_NoMemory();
        return -1;
    }
    uintptr_t *old = t->slots;
    size_t ocap = t->cap;
    t->slots = ns;
    t->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i])
            t->slots[find_slot(t, entry_key(old[i]))] = old[i];
    PyMem_Free(old);
    return 0;
}

/* index one half of f (a key already present is taken over by f, as a dict assignment would) */
static void put_entry(FlowTable *t, Flow *f, int half) {
    size_t i = find_slot(t, f->key[half]);
    uintptr_t e = (uintptr_t)f | (uintptr_t)half;
    Py_INCREF(f);
    if (t->slots[i]) {
        Flow *old = ENTRY_FLOW(t->slots[i]);
        t->slots[i] = e;
        Py_DECREF(old);
    } else {
        t->slots[i] = e;
        t->used++;
    }
}

static PyObject *FlowTable_add(FlowTable *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &FlowType)) {
        PyErr_SetString(PyExc_TypeError, "add() takes a Flow");
        return NULL;
    }
    Flow *f = (Flow *)arg;
    if (!f->conn || !f->iface[0] || !f->iface[1] || !f->keyed) {
        PyErr_SetString(PyExc_ValueError, "Flow is incomplete");
        return NULL;
    }
    if (!PyUnicode_Check(f->iface[0]) || !PyUnicode_Check(f->iface[1])) {
        PyErr_SetString(PyExc_TypeError, "interface names are str");
        return NULL;
    }
    while ((self->used + 2) * 2 > self->cap)
        if (grow(self) < 0)
            return NULL;
    put_entry(self, f, 0);
    put_entry(self, f, 1);
    Py_RETURN_NONE;
}

/* forget the entry of f's half, if it is f's (backward-shift deletion) */
static void drop_entry(FlowTable *t, Flow *f, int half) {
    if (!t->cap)
        return;
    size_t mask = t->cap - 1, i = find_slot(t, f->key[half]);
    if (!t->slots[i] || ENTRY_FLOW(t->slots[i]) != f)
        return;
    uintptr_t gone = t->slots[i];
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->slots[j])
            break;
        size_t home = (size_t)key_hash(entry_key(t->slots[j])) & mask;
        /* the entry at j may move to i when its home is not in (i, j] (cyclically) */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = 0;
    t->used--;
    Py_DECREF((PyObject *)ENTRY_FLOW(gone));
}

static PyObject *FlowTable_remove(FlowTable *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &FlowType)) {
        PyErr_SetString(PyExc_TypeError, "remove() takes a Flow");
        return NULL;
    }
    Flow *f = (Flow *)arg;
    if (f->keyed) {
        Py_INCREF(f); /* the entries may hold the last references */
        drop_entry(self, f, 0);
        drop_entry(self, f, 1);
        Py_DECREF(f);
    }
    Py_RETURN_NONE;
}

static PyObject *FlowTable_flows(FlowTable *self, PyObject *unused) {
    /* every Flow once: by the entry of its first half */
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    for (size_t i = 0; i < self->cap; i++) {
        uintptr_t e = self->slots[i];
        if (e && ENTRY_HALF(e) == 0 && PyList_Append(out, (PyObject *)ENTRY_FLOW(e)) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static Py_ssize_t FlowTable_len(FlowTable *self) { return (Py_ssize_t)(self->used / 2); }

/* after(a, b) / before(b, a) for 32-bit sequence numbers as tcptrack writes them */
#define GT31(x) ((uint32_t)(x) > 0x7FFFFFFFu)

#define F_WINDOW_SCALE 0x01u
#define F_SACK_PERM 0x02u
#define F_BE_LIBERAL 0x08u

static int conn_double(PyObject *conn, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(conn, name);
    if (!v)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* SYN_SENT -> SYN_RECV: the responder's SYN-ACK of a flow offloaded at its SYN, taken as the Python path
 * takes the one that answers the SYN plainly (statewall.engine.forward.established for it):
 *   the tcp-map's checks (statewall.normalizer.check): no reserved bits, no data (synack-data), the ack
 *   exactly the SYN's end (_synack_ack, tcp-ack-syn-diff; the tracker's bounds then all hold), options
 *   the tcp-map leaves alone (MSS, window scale, SACK-permitted, timestamps, NOP and EOL, each once, with
 *   its length: anything else is the Python path's, which drops bad syntax), the TTL floor;
 *   the tracker's row (tcptrack: _tcp_in_window with _init_sender and _parse_options for the
 *   responder, window scaling only when both SYNs carried the option, the initiator's td_maxend and
 *   flags learned from the ack, then _in_window_done's SYN_RECV timeout);
 *   what the normalizer learns (normalizer.learn: the TTL floor, the responder's MSS and MSS limit,
 *   its next sequence number);
 *   the lifecycle's embryonic timer (AsaLifecycle.after_tcp: set_timeout to the same timeout, which
 *   must queue nothing; else the Python path's).
 * Returns 1 with the flow's state committed (*mss_at: the MSS option's offset when sysopt connection
 * tcpmss changes it to *mss_new, else 0), 0 with nothing changed (the Python path's), -1 on error. */
static int synack_take(FlowTable *self, Flow *f, const unsigned char *p, unsigned doff, unsigned plen,
                       unsigned ttl, int d, PyObject *nowobj, unsigned *mss_at, unsigned *mss_new) {
    if (d != 1 || plen || (p[33] & 0x3F) != 0x12 || (p[32] & 0x0F) || !self->established)
        return 0;
    /* the options, as decode() and the tcp-map read them */
    int mss_off = -1, ws = -1, sackp = 0, ts = 0;
    unsigned oend = 20 + doff;
    for (unsigned i = 40; i < oend;) {
        unsigned kind = p[i];
        if (kind == 0)
            break;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= oend)
            return 0;
        unsigned ln = p[i + 1];
        if (ln < 2 || i + ln > oend)
            return 0;
        if (kind == 2 && ln == 4 && mss_off < 0)
            mss_off = (int)i;
        else if (kind == 3 && ln == 3 && ws < 0 && (f->synack_opts & 1))
            ws = p[i + 2];
        else if (kind == 4 && ln == 2 && !sackp && (f->synack_opts & 2))
            sackp = 1;
        else if (kind == 8 && ln == 10 && !ts && (f->synack_opts & 4))
            ts = 1;
        else
            return 0;
        i += ln;
    }
    /* the tcp-map's TTL floor (check, then learn) */
    int ttl_low = f->ttl_low[1];
    if (f->norm && f->n_ttl) {
        if (ttl_low == 0 || (int)ttl < ttl_low)
            ttl_low = (int)ttl;
        else if ((int)ttl > ttl_low)
            return 0; /* the tcp-map lowers it and counts */
    }
    /* the tracker: the responder's first segment, a SYN-ACK acknowledging exactly the SYN */
    uint32_t seq = be32(p + 24), ack = be32(p + 28), win = be16(p + 34);
    uint32_t a = ack - f->offs[0], sack = a;
    uint32_t r_end = f->td_end[0], r_maxwin = f->td_maxwin[0];
    if (a != r_end || f->td_maxwin[1] || (f->pflags[0] & F_FIN_SEEN))
        return 0;
    uint32_t end = seq + 1;
    unsigned s_scale = f->td_scale[1], r_scale = f->td_scale[0];
    uint32_t s_flags = f->pflags[1];
    if (doff > 20) { /* _parse_options */
        s_scale = 0;
        s_flags &= F_BE_LIBERAL;
        if (sackp)
            s_flags |= F_SACK_PERM;
        if (ws >= 0) {
            s_scale = ws > 14 ? 14 : (unsigned)ws;
            s_flags |= F_WINDOW_SCALE;
        }
    }
    if (!((s_flags & F_WINDOW_SCALE) && (f->pflags[0] & F_WINDOW_SCALE)))
        s_scale = r_scale = 0; /* RFC 1323: both SYNs or neither */
    uint32_t s_maxwin = win ? win : 1;
    uint32_t maxackwin = s_maxwin > MAXACKWINCONST ? s_maxwin : MAXACKWINCONST;
    if (!(GT31(seq - end - 1) && GT31(sack - r_end - 1) && !(r_maxwin && !GT31(end - r_maxwin - 1 - end)) &&
          GT31(r_end - maxackwin - 1 - sack)))
        return 0;
    uint32_t swin = win + sack - a; /* a SYN's window is never scaled */
    if (s_maxwin < swin)
        s_maxwin = swin;
    uint32_t s_maxack = f->td_maxack[1];
    if (!(s_flags & F_MAXACK_SET)) {
        s_maxack = a;
        s_flags |= F_MAXACK_SET;
    } else if (GT31(s_maxack - a))
        s_maxack = a;
    uint32_t r_maxend = f->td_maxend[0];
    if (GT31(r_maxend - 1 - sack - win))
        r_maxend = sack + win + (win == 0);
    uint32_t r_flags = f->pflags[0];
    if (a == r_end)
        r_flags &= ~F_DATA_UNACKNOWLEDGED;
    double t = self->t_syn_recv;
    if (f->retrans >= self->max_retrans && t > self->t_max_retrans)
        t = self->t_max_retrans;
    else if (((s_flags | r_flags) & F_DATA_UNACKNOWLEDGED) && t > self->t_unack)
        t = self->t_unack;
    else if (f->last_win == 0 && t > self->t_max_retrans)
        t = self->t_max_retrans;
    /* the lifecycle: the embryonic timer again, queueing nothing */
    double timeout, queued, now = PyFloat_AsDouble(nowobj);
    if (now == -1.0 && PyErr_Occurred())
        return -1;
    if (conn_double(f->conn, str_timeout, &timeout) < 0 || conn_double(f->conn, str_queued_at, &queued) < 0)
        return -1;
    if (timeout > 0 && (queued == 0.0 || now + timeout < queued))
        return 0;
    /* the normalizer: the responder's MSS (mss.advertised, receive_limit) and sysopt's rewrite */
    unsigned value = mss_off >= 0 ? be16(p + mss_off + 2) : 536, nv = value;
    *mss_at = 0;
    if (f->norm && mss_off >= 0) {
        if (self->mss_max && nv > (unsigned)self->mss_max)
            nv = (unsigned)self->mss_max;
        if (self->mss_min && nv < (unsigned)self->mss_min)
            nv = (unsigned)self->mss_min;
        if (nv != value) {
            *mss_at = (unsigned)mss_off;
            *mss_new = nv;
        }
    }
    /* commit */
    f->td_end[1] = end;
    f->td_maxend[1] = end;
    f->td_maxwin[1] = s_maxwin;
    f->td_maxack[1] = s_maxack;
    f->td_scale[1] = (unsigned char)s_scale;
    f->pflags[1] = s_flags;
    f->td_scale[0] = (unsigned char)r_scale;
    f->td_maxend[0] = r_maxend;
    f->pflags[0] = r_flags;
    f->state = 2;
    f->last_index = 1; /* tcptrack I_SYNACK */
    f->last_dir = 1;
    f->timeout = t;
    if (f->norm) {
        f->ttl_low[1] = (unsigned char)ttl_low;
        f->nxt[1] = end;
        f->nxt_set[1] = 1;
        f->mss_limit[1] = (mss_off >= 0 && self->mss_min && value < (unsigned)self->mss_min) ? self->mss_min
                                                                                            : (int)value;
        f->adv_mss1 = (unsigned short)value;
        f->mss1 = (unsigned char)(1 + (mss_off >= 0));
    }
    return 1;
}

/* conn.last = now; conn.bytes += plen (when plen): through the slots themselves where the type's are
 * plain (slot_cache), else by the generic setattr. */
static int activity(FlowTable *self, PyObject *conn, PyObject *nowobj, unsigned long plen) {
    PyTypeObject *tp = Py_TYPE(conn);
    slot_cache *sc = &self->conn_slots[0];
    if (sc->type != tp || sc->tag != tp->tp_version_tag)
        sc = &self->conn_slots[1];
    if (sc->type != tp || sc->tag != tp->tp_version_tag || !PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG)) {
        /* the type seen least recently makes room */
        self->conn_slots[1] = self->conn_slots[0];
        sc = &self->conn_slots[0];
        sc->type = NULL;
        sc->last = sc->bytes = 0;
        if (tp->tp_setattro == PyObject_GenericSetAttr && tp->tp_getattro == PyObject_GenericGetAttr) {
            sc->last = plain_slot(tp, str_last);
            sc->bytes = plain_slot(tp, str_bytes);
        }
        if (PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG)) {
            sc->type = tp;
            sc->tag = tp->tp_version_tag;
        }
    }
    if (sc->last) {
        PyObject **slot = (PyObject **)((char *)conn + sc->last);
        Py_INCREF(nowobj);
        Py_XSETREF(*slot, nowobj);
    } else if (PyObject_SetAttr(conn, str_last, nowobj) < 0)
        return -1;
    if (!plen)
        return 0;
    PyObject **slot = sc->bytes ? (PyObject **)((char *)conn + sc->bytes) : NULL;
    if (slot && *slot && long_add_inplace(*slot, plen))
        return 0;
    PyObject *b = slot && *slot ? Py_NewRef(*slot) : PyObject_GetAttr(conn, str_bytes);
    if (!b)
        return -1;
    PyObject *inc = PyLong_FromUnsignedLong(plen);
    if (!inc) {
        Py_DECREF(b);
        return -1;
    }
    PyObject *nb = PyNumber_Add(b, inc);
    Py_DECREF(b);
    Py_DECREF(inc);
    if (!nb)
        return -1;
    if (slot) {
        Py_XSETREF(*slot, nb);
        return 0;
    }
    int rc = PyObject_SetAttr(conn, str_bytes, nb);
    Py_DECREF(nb);
    return rc;
}

/* The packet p[0:n] forwarded in place (egress interface, a new reference), or None with nothing
 * changed, or NULL with an exception set. */
static PyObject *forward_raw(FlowTable *self, PyObject *iface, unsigned char *p, Py_ssize_t n,
                             PyObject *nowobj, int partial, long gso) {
    if (n < 28 || p[0] != 0x45)
        goto miss;
    {
        /* a bad IPv4 header checksum is the Python path's to drop (statewall.engine.ip_in) */
        unsigned long s = 0;
        for (int i = 0; i < 20; i += 2)
            s += be16(p + i);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        if (s != 0xFFFF)
            goto miss;
    }
    unsigned tot = be16(p + 2);
    if ((be16(p + 6) & 0x3FFF) || tot > (unsigned)n)
        goto miss;
    int proto = p[9];
    unsigned doff = 0, plen;
    if (proto == 6) {
        if (tot < 40)
            goto miss;
        doff = (p[32] >> 4) << 2;
        if (doff < 20 || doff > tot - 20)
            goto miss;
        if (doff != 20 && !(doff == 32 && be32(p + 40) == 0x0101080Au) && !(p[33] & 0x02))
            goto miss; /* a SYN's options are synack_take's to read */
        plen = tot - 20 - doff;
    } else if (proto == 17) {
        unsigned ulen = be16(p + 24);
        if (tot < 28 || ulen < 8 || ulen > tot - 20)
            goto miss;
        plen = ulen - 8;
    } else
        goto miss;

    if (!self->used)
        goto miss;
    unsigned char k[KEYLEN];
    memcpy(k, p + 12, 12);
    k[12] = (unsigned char)proto;
    uintptr_t entry = self->slots[find_slot(self, k)];
    if (!entry)
        goto miss;
    Flow *f = ENTRY_FLOW(entry);
    int d = ENTRY_HALF(entry);
    int r = 1 - d;
    PyObject *want = f->iface[d];
    if (want != iface) {
        if (!PyUnicode_Check(iface) || PyUnicode_Compare(want, iface) != 0) {
            if (PyErr_Occurred())
                return NULL;
            goto miss;
        }
    }
    unsigned ttl = p[8];
    if (ttl <= (unsigned)f->ttl_dec) /* TTL 1 when lowering it, TTL 0 always: Python's to refuse */
        goto miss;
    {
        unsigned long size = gso ? 20 + (doff ? doff : 8) + (unsigned long)gso : tot;
        if (size > (unsigned long)f->mtu[d])
            goto miss;
    }

    /* TCP: normalizer checks and window tracking, decided into locals, committed below */
    uint32_t seq = 0, ack = 0, end = 0, win_raw = 0;
    uint32_t n_nxt = 0;
    int n_nxt_set = 0, n_ttl_low = 0;
    uint32_t s_maxwin_new = 0, s_end_new = 0, s_maxack_new = 0, s_flags_new = 0;
    uint32_t r_maxwin_new = 0, r_maxend_new = 0, r_flags_new = 0;
    int retrans_new = 0;
    double timeout_new = 0;
    unsigned flags = 0, fin = 0, new_state = 3, half_closed = 0, closes = 0, handshake = 0;
    unsigned mss_at = 0, mss_new = 0;
    if (proto == 6) {
        if (f->state == 1) { /* SYN_SENT: the responder's SYN-ACK only */
            int took = synack_take(self, f, p, doff, plen, ttl, d, nowobj, &mss_at, &mss_new);
            if (took < 0)
                return NULL;
            if (!took)
                goto miss;
            seq = be32(p + 24);
            ack = be32(p + 28);
            goto tracked;
        }
        flags = p[33];
        if (p[32] & 0x0F)
            goto miss;
        if (flags == 0x11 || flags == 0x19)
            fin = 1;
        else if (flags != 0x10 && flags != 0x18)
            goto miss;
        /* FINs and the closing states only where the lifecycle's close is the ASA's (its idle timer until
         * a FIN is acknowledged, then the half-closed one, the teardown once both FINs are: the Python
         * path's, engine.lifecycle.AsaLifecycle) */
        if (f->state == 2) {
            /* SYN_RECV: only the handshake's last ACK, from the initiator (tcptrack.TCP_CONNTRACKS:
             * ACK from ORIGINAL, SYN_RECV -> ESTABLISHED), where the lifecycle's is the ASA's (its
             * idle timer from then on: bind()'s established) */
            if (fin || d != 0 || !self->established)
                goto miss;
            handshake = 1;
        } else {
            if ((fin || f->state != 3) && self->t_close[0] <= 0)
                goto miss;
            if (f->state < 3 || f->state > 7)
                goto miss;
        }
        /* tcptrack.TCP_CONNTRACKS for FIN and ACK segments from ESTABLISHED to TIME_WAIT, the same for
         * both directions: FIN: ES, FW -> FW, LA; CW, LA -> LA; TW -> TW. ACK: ES -> ES; FW, CW -> CW;
         * LA, TW -> TW. */
        static const unsigned char fin_row[8] = {0, 0, 0, 4, 6, 6, 6, 7};
        static const unsigned char ack_row[8] = {0, 0, 0, 3, 5, 5, 7, 7};
        new_state = handshake ? 3 : fin ? fin_row[f->state] : ack_row[f->state];
        seq = be32(p + 24);
        ack = be32(p + 28);
        win_raw = be16(p + 34);
        end = seq + plen + fin;
        if (f->norm) {
            if (f->n_no_options && doff > 20)
                goto miss;
            n_ttl_low = f->ttl_low[d];
            if (f->n_ttl) {
                if (n_ttl_low == 0 || (int)ttl < n_ttl_low)
                    n_ttl_low = (int)ttl;
                else if ((int)ttl > n_ttl_low)
                    goto miss; /* the tcp-map lowers it and counts */
            }
            if (plen && f->n_exceed_drop) {
                long limit = f->mss_limit[r];
                unsigned long sz = (gso && (unsigned long)gso < plen) ? (unsigned long)gso : plen;
                if (limit >= 0 && sz > (unsigned long)limit)
                    goto miss;
            }
            n_nxt = f->nxt[d];
            n_nxt_set = f->nxt_set[d];
            if (!n_nxt_set) {
                n_nxt = end;
                n_nxt_set = 1;
            } else if (plen || fin) {
                if (GT31(n_nxt - seq)) { /* a gap before this segment */
                    if (f->n_queue)
                        goto miss;
                }
                if (GT31(n_nxt - end))
                    n_nxt = end;
            }
        }
        /* netfilter's window check and learning (tcptrack.TcpTracker.packet's written-out ES -> ES case,
         * and _tcp_in_window / _in_window_done for FIN segments and the closing states) */
        uint32_t s_maxwin = f->td_maxwin[d];
        if (!s_maxwin)
            goto miss;
        uint32_t ack_offset = f->offs[r];
        uint32_t a = ack - ack_offset, sack = a;
        /* the tcp-map's invalid-ack: the handshake's last ACK acknowledges exactly the SYN-ACK
         * (normalizer._handshake_ack); any other is the Python path's, with or without a tcp-map */
        if (handshake && a != f->td_end[r])
            goto miss;
        uint32_t s_end = f->td_end[d], s_maxend = f->td_maxend[d];
        uint32_t r_end = f->td_end[r], r_maxwin = f->td_maxwin[r];
        uint32_t maxackwin = s_maxwin > MAXACKWINCONST ? s_maxwin : MAXACKWINCONST;
        if (!(GT31(seq - s_maxend - 1) && GT31(sack - r_end - 1) &&
              !(r_maxwin && !GT31(s_end - r_maxwin - 1 - end)) && GT31(r_end - maxackwin - 1 - sack)))
            goto miss;
        uint32_t win = win_raw << f->td_scale[d];
        uint32_t swin = win + sack - a;
        s_maxwin_new = s_maxwin < swin ? swin : s_maxwin;
        s_end_new = s_end;
        s_flags_new = f->pflags[d];
        if (GT31(s_end - end)) {
            s_end_new = end;
            s_flags_new |= F_DATA_UNACKNOWLEDGED;
        }
        s_maxack_new = f->td_maxack[d];
        if (!(s_flags_new & F_MAXACK_SET)) {
            s_maxack_new = a;
            s_flags_new |= F_MAXACK_SET;
        } else if (GT31(s_maxack_new - a))
            s_maxack_new = a;
        r_maxwin_new = r_maxwin;
        if (r_maxwin && GT31(s_maxend - end))
            r_maxwin_new = r_maxwin + end - s_maxend;
        r_maxend_new = f->td_maxend[r];
        if (GT31(r_maxend_new - 1 - sack - win))
            r_maxend_new = sack + win + (win == 0);
        r_flags_new = f->pflags[r];
        if (a == r_end)
            r_flags_new &= ~F_DATA_UNACKNOWLEDGED;
        /* the ASA's bookkeeping: the other side acknowledged this side's FIN */
        if ((r_flags_new & F_FIN_SEEN) && !GT31(a - f->fin_end[r]))
            r_flags_new |= F_FIN_ACKED;
        /* _in_window_done: who began the close (F_CLOSE_INIT), this side's FIN */
        int fin_first = fin && !(s_flags_new & F_FIN_SEEN);
        if (new_state != f->state && new_state == 4)
            s_flags_new |= 0x04u; /* F_CLOSE_INIT */
        if (fin_first)
            s_flags_new |= F_FIN_SEEN;
        /* The lifecycle (AsaLifecycle.after_tcp): TIME_WAIT with both FINs acknowledged is the teardown,
         * the Python path's; any FIN acknowledged, the half-closed timer (bind()'s half_closed). */
        if (new_state == 7 && (s_flags_new & F_FIN_ACKED) && (r_flags_new & F_FIN_ACKED)) {
            /* forwarded here, then torn down by bind()'s fins_closed, whose events offer() returns */
            if (!self->events_ok || !self->fins_closed)
                goto miss;
            closes = 1;
        } else
            half_closed = ((s_flags_new | r_flags_new) & F_FIN_ACKED) != 0;
        if (half_closed && !self->half_closed)
            goto miss;
        /* The retransmission counter and the last segment's fields count ACK segments only
         * (tcptrack._tcp_in_window); a FIN keeps them. The timeout is the new state's. */
        int same = !fin && f->last_dir == d && f->last_seq == seq && f->last_ack == a && f->last_end == end &&
                   f->last_win == win_raw;
        retrans_new = fin ? f->retrans : same ? f->retrans + 1 : 0;
        double t = new_state == 3 ? self->t_established : self->t_close[new_state - 4];
        if (retrans_new >= self->max_retrans && t > self->t_max_retrans)
            t = self->t_max_retrans;
        else if (((s_flags_new | r_flags_new) & F_DATA_UNACKNOWLEDGED) && t > self->t_unack)
            t = self->t_unack;
        else if ((same || fin ? f->last_win : win_raw) == 0 && t > self->t_max_retrans)
            t = self->t_max_retrans;
        timeout_new = t;
        /* commit the tracker and the normalizer */
        f->td_maxwin[d] = s_maxwin_new;
        f->td_end[d] = s_end_new;
        f->pflags[d] = s_flags_new;
        f->td_maxack[d] = s_maxack_new;
        f->td_maxwin[r] = r_maxwin_new;
        f->td_maxend[r] = r_maxend_new;
        f->pflags[r] = r_flags_new;
        f->state = (unsigned char)new_state;
        f->last_index = fin ? 2 : 3; /* tcptrack I_FIN, I_ACK */
        if (fin_first) {
            f->fin_end[d] = end;
            f->fin_set |= (unsigned char)(1 << d);
            if (!f->fin_dir)
                f->fin_dir = (unsigned char)(1 + d);
        }
        if (fin) {
            f->last_dir = d;
        } else if (!same) {
            f->last_dir = d;
            f->last_seq = seq;
            f->last_ack = a;
            f->last_end = end;
            f->last_win = win_raw;
        }
        f->retrans = retrans_new;
        f->timeout = timeout_new;
        if (f->norm) {
            f->ttl_low[d] = n_ttl_low;
            f->nxt[d] = n_nxt;
            f->nxt_set[d] = n_nxt_set;
        }
    }

tracked:
    if (mss_at) { /* sysopt connection tcpmss (mss.sysopt_rewrite: Packet.set_mss), before NAT */
        long long dm = (long long)mss_new - (long long)be16(p + mss_at + 2);
        put16(p + mss_at + 2, mss_new);
        if (mss_at & 1)
            dm *= 256;
        if (!partial)
            put16(p + 36, csum_update(be16(p + 36), dm));
    }
    /* TTL and NAT (Packet.forward_nat4, or set_ttl for a half that rewrites nothing) */
    unsigned nttl = ttl - (unsigned)f->ttl_dec;
    if (f->rewrites[d]) {
        long long dd = f->da[d] - (f->ttl_dec ? 256 : 0); /* (ttl - old) << 8 */
        unsigned c = csum_update(be16(p + 10), dd);
        p[8] = (unsigned char)nttl;
        put16(p + 10, c);
        put32(p + 12, f->nsrc[d]);
        put32(p + 16, f->ndst[d]);
        put16(p + 20, (unsigned)f->nsport[d]);
        put16(p + 22, (unsigned)f->ndport[d]);
        unsigned co = proto == 6 ? 36 : 26;
        unsigned cs = be16(p + co);
        if (partial) {
            if (f->moved[d])
                put16(p + co, partial_update(cs, f->da[d]));
        } else if (!(cs == 0 && proto == 17)) {
            cs = csum_update(cs, f->dl4[d]);
            if (cs == 0 && proto == 17)
                cs = 0xFFFF;
            put16(p + co, cs);
        }
    } else {
        if (f->ttl_dec) {
            p[8] = (unsigned char)nttl;
            put16(p + 10, csum_update(be16(p + 10), -256));
        }
    }
    /* sequence randomization (SeqShift.adjust): the peer's offset off ack, ours onto seq */
    if (proto == 6) {
        uint32_t peer = f->offs[r], own = f->offs[d];
        if (peer) {
            uint32_t na = ack - peer;
            put32(p + 28, na);
            if (!partial)
                put16(p + 36, csum_update(be16(p + 36), (long long)na - (long long)ack));
        }
        if (own) {
            uint32_t ns = seq + own;
            put32(p + 24, ns);
            if (!partial)
                put16(p + 36, csum_update(be16(p + 36), (long long)ns - (long long)seq));
        }
    }
    /* the Connection's activity */
    f->packets++;
    if (fin) { /* the lifecycle notes who began the close (AsaLifecycle.after_tcp) */
        PyObject *closer = PyObject_GetAttr(f->conn, str_closer);
        if (!closer)
            return NULL;
        int unset = closer == Py_None;
        Py_DECREF(closer);
        if (unset && PyObject_SetAttr(f->conn, str_closer, f->iface[d]) < 0)
            return NULL;
    }
    if (plen && !f->seen_mark[d]) { /* the first payload this way since the offload */
        /* conn.data_seen is an immutable pair replaced on a write, one of four shared ones
         * (statewall.conntrack.seen_with) */
        PyObject *ds = PyObject_GetAttr(f->conn, str_data_seen);
        if (!ds)
            return NULL;
        int which = 1 << d;
        for (int i = 0; i < 2; i++) {
            PyObject *item = PySequence_GetItem(ds, i);
            int set = item ? PyObject_IsTrue(item) : -1;
            Py_XDECREF(item);
            if (set < 0) {
                Py_DECREF(ds);
                return NULL;
            }
            which |= set << i;
        }
        Py_DECREF(ds);
        if (PyObject_SetAttr(f->conn, str_data_seen, seen_pairs[which]) < 0)
            return NULL;
        f->seen_mark[d] = 1;
    }
    if (activity(self, f->conn, nowobj, plen) < 0)
        return NULL;
    if (handshake) { /* AsaLifecycle.after_tcp's idle timer for the now ESTABLISHED connection */
        PyObject *rv = PyObject_CallFunctionObjArgs(self->established, f->conn, nowobj, NULL);
        if (!rv)
            return NULL;
        Py_DECREF(rv);
    }
    if (half_closed) { /* AsaLifecycle.after_tcp's half-closed timer, after the connection's activity */
        PyObject *rv = PyObject_CallFunctionObjArgs(self->half_closed, f->conn, nowobj, NULL);
        if (!rv)
            return NULL;
        Py_DECREF(rv);
    }
    if (closes) {
        Py_INCREF(f);
        Py_XSETREF(self->closing, (PyObject *)f);
        self->closing_dir = d;
    }
    self->hits++;
    PyObject *out = f->iface[r];
    Py_INCREF(out);
    return out;
miss:
    self->misses++;
    Py_RETURN_NONE;
}

static PyObject *forward_impl(FlowTable *self, PyObject *iface, PyObject *bufobj, PyObject *nowobj,
                              int partial, long gso) {
    if (!PyByteArray_CheckExact(bufobj)) {
        self->misses++;
        Py_RETURN_NONE;
    }
    return forward_raw(self, iface, (unsigned char *)PyByteArray_AS_STRING(bufobj),
                       PyByteArray_GET_SIZE(bufobj), nowobj, partial, gso);
}

static PyObject *FlowTable_bind(FlowTable *self, PyObject *args) {
    PyObject *fw, *stats, *rt, *hc = Py_None, *fc = Py_None, *ec = Py_None;
    if (!PyArg_ParseTuple(args, "OO!O!|OOO:bind", &fw, &PyDict_Type, &stats, &PyType_Type, &rt, &hc, &fc, &ec))
        return NULL;
    if (ec == Py_None)
        Py_CLEAR(self->established);
    else {
        Py_INCREF(ec);
        Py_XSETREF(self->established, ec);
    }
    if (hc == Py_None)
        Py_CLEAR(self->half_closed);
    else {
        Py_INCREF(hc);
        Py_XSETREF(self->half_closed, hc);
    }
    if (fc == Py_None)
        Py_CLEAR(self->fins_closed);
    else {
        Py_INCREF(fc);
        Py_XSETREF(self->fins_closed, fc);
    }
    if (!PyType_IsSubtype((PyTypeObject *)rt, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the result type is a tuple type");
        return NULL;
    }
    Py_INCREF(fw);
    Py_INCREF(stats);
    Py_INCREF(rt);
    Py_XSETREF(self->fw, fw);
    Py_XSETREF(self->stats, stats);
    Py_XSETREF(self->result_type, rt);
    Py_CLEAR(self->spare);
    Py_RETURN_NONE;
}

static int count(PyObject *stats, PyObject *key) {
    PyObject *cur = PyDict_GetItemWithError(stats, key); /* borrowed */
    PyObject *nv;
    if (cur)
        nv = PyNumber_Add(cur, int_one);
    else if (PyErr_Occurred())
        return -1;
    else
        nv = PyLong_FromLong(1);
    if (!nv)
        return -1;
    int rc = PyDict_SetItem(stats, key, nv);
    Py_DECREF(nv);
    return rc;
}

/* fw.trace_log is not None (1), is (0), or -1 with an exception. */
static int tracing(FlowTable *self) {
    if (cache_current(&self->fw_cache, self->fw))
        return self->fw_vals[0] != Py_None;
    PyObject *const names[2] = {str_trace, str_now};
    if (cache_fill(&self->fw_cache, self->fw, names, self->fw_vals, 2))
        return self->fw_vals[0] != Py_None;
    PyObject *trace = PyObject_GetAttr(self->fw, str_trace);
    if (!trace)
        return -1;
    int on = trace != Py_None;
    Py_DECREF(trace);
    return on;
}

/* What Firewall.receive does for a packet it forwarded: the counters and the engine's clock. */
static int forwarded(FlowTable *self, PyObject *nowobj) {
    /* stats["packets_in"] += 1; stats["forwarded"] += 1 (in place while the dict is unchanged) */
    PyObject *stats = self->stats;
    PyObject *const keys[2] = {str_packets_in, str_forwarded};
    int current = items_current(&self->stats_cache, stats);
    for (int i = 0; i < 2; i++) {
        if (current && long_add_inplace(self->stat_vals[i], 1))
            continue;
        if (count(stats, keys[i]) < 0)
            return -1;
        current = 0;
    }
    if (!current)
        items_fill(&self->stats_cache, stats, keys, self->stat_vals, 2);
    /* if now > fw.now: fw.now = now */
    PyObject *fw = self->fw;
    int known = cache_current(&self->fw_cache, fw);
    PyObject *cur;
    if (known) {
        cur = self->fw_vals[1];
        Py_INCREF(cur);
    } else if (!(cur = PyObject_GetAttr(fw, str_now)))
        return -1;
    int later = PyFloat_CheckExact(nowobj) && PyFloat_CheckExact(cur)
                    ? PyFloat_AS_DOUBLE(nowobj) > PyFloat_AS_DOUBLE(cur)
                    : PyObject_RichCompareBool(nowobj, cur, Py_GT);
    Py_DECREF(cur);
    if (later < 0)
        return -1;
    if (later) {
        /* known: the generic setattr would store into that same dict (no descriptor, generic setattro) */
        if ((known ? PyDict_SetItem(self->fw_cache.dict, str_now, nowobj) : PyObject_SetAttr(fw, str_now, nowobj)) < 0)
            return -1;
        if (known) {
            uint64_t from = self->fw_cache.tag;
            cache_after_set(&self->fw_cache, fw);
            self->fw_vals[1] = nowobj; /* the dict's reference now */
            if (self->fw_cache.tag) {
                now_moved.dict = self->fw_cache.dict;
                now_moved.from = from;
                now_moved.to = self->fw_cache.tag;
            }
        }
    }
    return 0;
}

/* The fast path for an adapter that owns the packet buffer (statewall.live's TUN pump, through the
 * capsule _C_API): forward p[0:n] in place as receive() would, counting it; egress interface, None
 * (nothing changed: give the packet to receive()), or NULL. With `events` (a list; NULL: none) it also
 * takes the segment that ends a connection's close, as offer() does, and appends the teardown's
 * events to the list. */
static PyObject *teardown_closing(FlowTable *self, PyObject *nowobj);

static PyObject *api_forward_impl(PyObject *table, PyObject *iface, unsigned char *p, Py_ssize_t n,
                                  PyObject *nowobj, int partial, long gso, PyObject *events) {
    FlowTable *self = (FlowTable *)table;
    if (!self->fw) {
        PyErr_SetString(PyExc_RuntimeError, "FlowTable not bound");
        return NULL;
    }
    int on = tracing(self);
    if (on < 0)
        return NULL;
    if (on)
        Py_RETURN_NONE;
    self->events_ok = events != NULL;
    PyObject *egress = forward_raw(self, iface, p, n, nowobj, partial, gso);
    self->events_ok = 0;
    if (!egress || egress == Py_None)
        return egress;
    if (forwarded(self, nowobj) < 0) {
        Py_DECREF(egress);
        return NULL;
    }
    if (self->closing) {
        PyObject *got = teardown_closing(self, nowobj);
        Py_ssize_t end = got ? PyList_GET_SIZE(events) : 0;
        int rc = got ? PyList_SetSlice(events, end, end, got) : -1;
        Py_XDECREF(got);
        if (rc < 0) {
            Py_DECREF(egress);
            return NULL;
        }
    }
    return egress;
}

static PyObject *api_forward(PyObject *table, PyObject *iface, unsigned char *p, Py_ssize_t n,
                             PyObject *nowobj, int partial, long gso) {
    return api_forward_impl(table, iface, p, n, nowobj, partial, gso, NULL);
}

/* The lifecycle's teardown of the connection the packet just forwarded closed (self->closing, set by
 * forward_raw when events_ok): bind()'s fins_closed(conn, now, iface), its events returned (a new list),
 * NULL with an exception set. */
static PyObject *teardown_closing(FlowTable *self, PyObject *nowobj) {
    Flow *cf = (Flow *)self->closing;
    self->closing = NULL; /* our reference now */
    /* the teardown clears cf->conn (FastPath.end): the call holds its own references */
    PyObject *cconn = cf->conn, *cifc = cf->iface[self->closing_dir];
    Py_INCREF(cconn);
    Py_INCREF(cifc);
    PyObject *events = PyObject_CallFunctionObjArgs(self->fins_closed, cconn, nowobj, cifc, NULL);
    Py_DECREF(cconn);
    Py_DECREF(cifc);
    Py_DECREF(cf);
    if (events && !PyList_CheckExact(events)) {
        Py_DECREF(events);
        PyErr_SetString(PyExc_TypeError, "fins_closed() returns a list of events");
        events = NULL;
    }
    return events;
}

static PyObject *api_forward_events(PyObject *table, PyObject *iface, unsigned char *p, Py_ssize_t n,
                                    PyObject *nowobj, int partial, long gso, PyObject *events) {
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "forward_events: events is a list");
        return NULL;
    }
    return api_forward_impl(table, iface, p, n, nowobj, partial, gso, events);
}

static int api_known(PyObject *table, const unsigned char *p, Py_ssize_t n) {
    FlowTable *self = (FlowTable *)table;
    if (n < 28 || p[0] != 0x45 || (be16(p + 6) & 0x3FFF) || be16(p + 2) > (unsigned)n || (p[9] != 6 && p[9] != 17))
        return -1;
    if (!self->used)
        return 0;
    unsigned char k[KEYLEN];
    memcpy(k, p + 12, 12);
    k[12] = p[9];
    return self->slots[find_slot(self, k)] != 0;
}

#include "_fastpath_api.h"
static statewall_fastpath_api fastpath_api = {&FlowTableType, api_forward, api_known, api_forward_events};

/* The spare Result with (egress, buf) as its one packet (both references taken), when its caller let
 * go of it and of its parts (the list of packets, the pair, the empty events list: nothing but the
 * spare references them, so nothing can tell them from new ones, as zip() reuses its tuple); NULL
 * otherwise (nothing taken). Four objects not made and not freed per forwarded packet. */
static PyObject *result_again(FlowTable *self, PyObject *egress, PyObject *buf) {
    PyObject *r = self->spare;
    if (!r || Py_REFCNT(r) != 1 || Py_TYPE(r) != (PyTypeObject *)self->result_type)
        return NULL;
    PyObject *packets = PyTuple_GET_ITEM(r, 0), *events = PyTuple_GET_ITEM(r, 1);
    if (!PyList_CheckExact(packets) || Py_REFCNT(packets) != 1 || PyList_GET_SIZE(packets) != 1 ||
        !PyList_CheckExact(events) || Py_REFCNT(events) != 1 || PyList_GET_SIZE(events) != 0)
        return NULL;
    PyObject *pair = PyList_GET_ITEM(packets, 0);
    if (!PyTuple_CheckExact(pair) || Py_REFCNT(pair) != 1 || PyTuple_GET_SIZE(pair) != 2)
        return NULL;
    /* a str and a bytearray: the pair needs no tracking by the collector, tracked or not */
    PyObject *old0 = PyTuple_GET_ITEM(pair, 0), *old1 = PyTuple_GET_ITEM(pair, 1);
    PyTuple_SET_ITEM(pair, 0, egress);
    PyTuple_SET_ITEM(pair, 1, buf);
    Py_INCREF(r);
    Py_DECREF(old0);
    Py_DECREF(old1);
    return r;
}

/* offer(iface, data, now, csum_partial, gso_size) -> Result or None: the leaf of the engine's
 * established-flow stage (contract in statewall.fastpath). A packet of an offloaded connection it is
 * sure of is forwarded, counted (packets_in, forwarded, the engine's clock) and returned as the Python
 * path returns it; for every other packet None, the packet untouched. */
static PyObject *offer_impl(FlowTable *self, PyObject *iface, PyObject *data, PyObject *nowobj, int partial,
                            long gso) {
    if (!self->fw) {
        PyErr_SetString(PyExc_RuntimeError, "FlowTable.offer before bind()");
        return NULL;
    }
    int on = tracing(self);
    if (on < 0)
        return NULL;
    if (on)
        Py_RETURN_NONE;
    PyObject *buf;
    if (PyByteArray_CheckExact(data)) {
        buf = data;
        Py_INCREF(buf);
    } else {
        buf = PyByteArray_FromObject(data);
        if (!buf)
            return NULL;
    }
    self->events_ok = 1;
    PyObject *egress = forward_impl(self, iface, buf, nowobj, partial, gso);
    self->events_ok = 0;
    if (!egress)
        goto fail;
    if (egress == Py_None) {
        Py_DECREF(buf);
        return egress;
    }
    if (forwarded(self, nowobj) < 0) {
        Py_DECREF(egress);
        goto fail;
    }
    PyObject *events;
    if (self->closing) { /* the lifecycle's teardown after the packet left (AsaLifecycle.fins_closed) */
        events = teardown_closing(self, nowobj);
        if (!events) {
            Py_DECREF(egress);
            goto fail;
        }
    } else {
        PyObject *again = result_again(self, egress, buf);
        if (again)
            return again;
        events = PyList_New(0);
    }
    PyObject *pair = PyTuple_New(2);
    PyObject *packets = PyList_New(1);
    PyTypeObject *rt = (PyTypeObject *)self->result_type;
    PyObject *res = rt->tp_alloc(rt, 2);
    if (!pair || !packets || !events || !res) {
        Py_XDECREF(pair);
        Py_XDECREF(packets);
        Py_XDECREF(events);
        Py_XDECREF(res);
        Py_DECREF(egress);
        goto fail;
    }
    PyTuple_SET_ITEM(pair, 0, egress); /* steals */
    PyTuple_SET_ITEM(pair, 1, buf);    /* steals our reference */
    PyList_SET_ITEM(packets, 0, pair);
    PyTuple_SET_ITEM(res, 0, packets);
    PyTuple_SET_ITEM(res, 1, events);
    if (!PyList_GET_SIZE(events)) {
        Py_INCREF(res);
        Py_XSETREF(self->spare, res);
    }
    return res;
fail:
    Py_DECREF(buf);
    return NULL;
}

static PyObject *FlowTable_offer(FlowTable *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "offer() takes 5 positional arguments (%zd given)", nargs);
        return NULL;
    }
    int partial = PyObject_IsTrue(args[3]);
    long gso = PyLong_AsLong(args[4]);
    if (partial < 0 || (gso == -1 && PyErr_Occurred()))
        return NULL;
    return offer_impl(self, args[0], args[1], args[2], partial, gso);
}

/* ------------------------------------------------------------------------------------------------ */
/* Entry: Firewall.receive's front door compiled. A method descriptor on the Firewall class (no bound
 * object is made per call): receive(iface, data, now) first offers the packet to the instance's
 * established-flow leaf (its fast_offer, a FlowTable's offer) and takes the Python ingress
 * (stages(fw, iface, data, now, False, 0)) for everything the leaf hands back; a call with keyword
 * arguments goes to the Python receive itself, which offers the packet to the leaf the same way. */

typedef struct {
    PyObject_HEAD
    PyObject *stages, *python;
    vectorcallfunc vectorcall;
    /* the instance's fast_offer as its __dict__ last held it (dict_cache: borrowed while current) */
    dict_cache cache;
    PyObject *offer;
} Entry;

static PyObject *str_fast_offer;

static PyObject *Entry_vectorcall(Entry *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames || nargs != 4)
        return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
    PyObject *offer;
    if (cache_current_but_now(&self->cache, args[0]) ||
        cache_fill(&self->cache, args[0], &str_fast_offer, &self->offer, 1))
        offer = Py_NewRef(self->offer);
    else if (!(offer = PyObject_GetAttr(args[0], str_fast_offer)))
        return NULL;
    if (PyCFunction_Check(offer) && PyObject_TypeCheck(PyCFunction_GET_SELF(offer), &FlowTableType)) {
        PyObject *res = offer_impl((FlowTable *)PyCFunction_GET_SELF(offer), args[1], args[2], args[3], 0, 0);
        Py_DECREF(offer);
        if (res != Py_None)
            return res; /* a Result, or NULL */
        Py_DECREF(res);
    } else {
        Py_DECREF(offer);
    }
    PyObject *call[6] = {args[0], args[1], args[2], args[3], Py_False, int_zero};
    return PyObject_Vectorcall(self->stages, call, 6, NULL);
}

static PyObject *Entry_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int Entry_init(Entry *self, PyObject *args, PyObject *kw) {
    PyObject *stages, *python;
    if (!PyArg_ParseTuple(args, "OO:Entry", &stages, &python))
        return -1;
    Py_INCREF(stages);
    Py_INCREF(python);
    Py_XSETREF(self->stages, stages);
    Py_XSETREF(self->python, python);
    self->vectorcall = (vectorcallfunc)Entry_vectorcall;
    return 0;
}

#define ENTRY_REFS(X) X(stages) X(python)
GC_FUNCTIONS(Entry, ENTRY_REFS)

static PyMemberDef Entry_members[] = {
    {"__wrapped__", T_OBJECT_EX, offsetof(Entry, python), READONLY, "the Python receive"},
    {NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "statewall._fastpath.Entry",
    .tp_doc = "Entry(stages, receive): Firewall.receive with the established-flow leaf offered first.",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Entry_init,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_traverse = (traverseproc)Entry_traverse,
    .tp_clear = (inquiry)Entry_clear,
    .tp_descr_get = Entry_get,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Entry, vectorcall),
    .tp_members = Entry_members,
};

/* find(key) -> (flow, direction) or None: the Flow holding a half's key (version, proto, src, sport,
 * dst, dport), IPv4 only (ConnTable's lookups of a connection the record holds alone,
 * statewall.conntrack.Keys); None for anything else. */
static PyObject *FlowTable_find(FlowTable *self, PyObject *key) {
    if (!self->cap || !PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 6)
        Py_RETURN_NONE;
    unsigned long long v[6];
    static const unsigned long long top[6] = {4, 0xFF, 0xFFFFFFFFull, 0xFFFF, 0xFFFFFFFFull, 0xFFFF};
    for (int i = 0; i < 6; i++) {
        PyObject *x = PyTuple_GET_ITEM(key, i);
        if (!PyLong_Check(x))
            Py_RETURN_NONE;
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (n == -1 && PyErr_Occurred())
            return NULL;
        if (overflow || n < 0 || (unsigned long long)n > top[i])
            Py_RETURN_NONE;
        v[i] = (unsigned long long)n;
    }
    if (v[0] != 4)
        Py_RETURN_NONE;
    unsigned char k[KEYLEN];
    unsigned int src = (unsigned int)v[2], dst = (unsigned int)v[4];
    k[0] = src >> 24, k[1] = src >> 16, k[2] = src >> 8, k[3] = src;
    k[4] = dst >> 24, k[5] = dst >> 16, k[6] = dst >> 8, k[7] = dst;
    k[8] = v[3] >> 8, k[9] = v[3], k[10] = v[5] >> 8, k[11] = v[5], k[12] = v[1];
    uintptr_t e = self->slots[find_slot(self, k)];
    if (!e)
        Py_RETURN_NONE;
    return Py_BuildValue("(Oi)", (PyObject *)ENTRY_FLOW(e), ENTRY_HALF(e));
}

static PyObject *FlowTable_get_hits(FlowTable *self, void *c) { return PyLong_FromUnsignedLongLong(self->hits); }
static PyObject *FlowTable_get_misses(FlowTable *self, void *c) {
    return PyLong_FromUnsignedLongLong(self->misses);
}

static PyGetSetDef FlowTable_getset[] = {
    {"hits", (getter)FlowTable_get_hits, NULL, "packets forwarded by the fast path", NULL},
    {"misses", (getter)FlowTable_get_misses, NULL, "packets handed back to the Python path", NULL},
    {NULL},
};

static PyObject *FlowTable_set_timeouts(FlowTable *self, PyObject *args) {
    memset(self->t_close, 0, sizeof self->t_close);
    self->t_syn_recv = 0;
    if (!PyArg_ParseTuple(args, "dddi|ddddd:set_timeouts", &self->t_established, &self->t_unack,
                          &self->t_max_retrans, &self->max_retrans, &self->t_close[0], &self->t_close[1],
                          &self->t_close[2], &self->t_close[3], &self->t_syn_recv))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *FlowTable_set_tcpmss(FlowTable *self, PyObject *args) {
    int mx, mn;
    if (!PyArg_ParseTuple(args, "ii:set_tcpmss", &mx, &mn))
        return NULL;
    if (mx < 0 || mx > 0xFFFF || mn < 0 || mn > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "an MSS is 16 bits");
        return NULL;
    }
    self->mss_max = mx;
    self->mss_min = mn;
    Py_RETURN_NONE;
}

static PyMethodDef FlowTable_methods[] = {
    {"set_timeouts", (PyCFunction)FlowTable_set_timeouts, METH_VARARGS,
     "set_timeouts(established, unacknowledged, max_retrans timeout, max_retrans[, fin_wait, close_wait, "
     "last_ack, time_wait, syn_recv]): the tracker's; fin_wait > 0 lets the close go through the fast path"},
    {"set_tcpmss", (PyCFunction)FlowTable_set_tcpmss, METH_VARARGS,
     "set_tcpmss(maximum, minimum): sysopt connection tcpmss, for the SYN-ACKs the fast path takes"},
    {"add", (PyCFunction)FlowTable_add, METH_O, "add(flow): index a Flow under both of its keys"},
    {"remove", (PyCFunction)FlowTable_remove, METH_O, "remove(flow): forget a Flow"},
    {"flows", (PyCFunction)FlowTable_flows, METH_NOARGS, "every Flow in the table, once"},
    {"find", (PyCFunction)FlowTable_find, METH_O,
     "find((version, proto, src, sport, dst, dport)) -> (flow, direction) or None (IPv4 keys)"},
    {"bind", (PyCFunction)FlowTable_bind, METH_VARARGS,
     "bind(fw, stats, result_type[, half_closed, fins_closed, established]): the engine this table is "
     "the leaf of (see offer) and the lifecycle's callbacks"},
    {"offer", (PyCFunction)(void (*)(void))FlowTable_offer, METH_FASTCALL,
     "offer($self, iface, data, now, csum_partial, gso_size)\n--\n\n"
     "The established-flow stage's leaf: a Result for a packet it forwarded, else None"},
    {NULL},
};

static PySequenceMethods FlowTable_as_sequence = {
    .sq_length = (lenfunc)FlowTable_len,
};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "statewall._fastpath.FlowTable",
    .tp_doc = "The offloaded connections, found by the packet's 13-byte tuple (open addressing, keys inline).",
    .tp_basicsize = sizeof(FlowTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlowTable_init,
    .tp_dealloc = (destructor)FlowTable_dealloc,
    .tp_traverse = (traverseproc)FlowTable_traverse,
    .tp_clear = (inquiry)FlowTable_clear,
    .tp_methods = FlowTable_methods,
    .tp_getset = FlowTable_getset,
    .tp_as_sequence = &FlowTable_as_sequence,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "statewall._fastpath",
    .m_doc = "The compiled fast path for established IPv4 TCP and UDP connections (statewall.fastpath).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FlowType) < 0 || PyType_Ready(&FlowTableType) < 0 || PyType_Ready(&EntryType) < 0)
        return NULL;
    str_last = PyUnicode_InternFromString("last");
    str_bytes = PyUnicode_InternFromString("bytes");
    str_data_seen = PyUnicode_InternFromString("data_seen");
    str_now = PyUnicode_InternFromString("now");
    str_trace = PyUnicode_InternFromString("trace_log");
    str_packets_in = PyUnicode_InternFromString("packets_in");
    str_forwarded = PyUnicode_InternFromString("forwarded");
    str_closer = PyUnicode_InternFromString("closer");
    str_timeout = PyUnicode_InternFromString("timeout");
    str_queued_at = PyUnicode_InternFromString("queued_at");
    if (fill_names() < 0)
        return NULL;
    if (!str_timeout || !str_queued_at)
        return NULL;
    if (!str_closer || !str_last || !str_bytes || !str_data_seen || !str_now || !str_trace || !str_packets_in || !str_forwarded)
        return NULL;
    int_one = PyLong_FromLong(1);
    int_zero = PyLong_FromLong(0);
    str_fast_offer = PyUnicode_InternFromString("fast_offer");
    if (!int_one || !int_zero || !str_fast_offer)
        return NULL;
    for (int i = 0; i < 4; i++) {
        seen_pairs[i] = PyTuple_Pack(2, (i & 1) ? Py_True : Py_False, (i & 2) ? Py_True : Py_False);
        if (!seen_pairs[i])
            return NULL;
    }
    PyObject *m = PyModule_Create(&fastpath_module);
    if (!m)
        return NULL;
    Py_INCREF(&FlowType);
    Py_INCREF(&FlowTableType);
    Py_INCREF(&EntryType);
    if (PyModule_AddObject(m, "Flow", (PyObject *)&FlowType) < 0 ||
        PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0 ||
        PyModule_AddObject(m, "Entry", (PyObject *)&EntryType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "KEYLEN", KEYLEN);
    PyObject *capsule = PyCapsule_New(&fastpath_api, STATEWALL_FASTPATH_CAPSULE, NULL);
    if (!capsule || PyModule_AddObject(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
