/* statewall.live._tunpump: the live loop's read - forward - write for the fast path's packets.
 *
 * statewall.live.loop drains a readable TUN in Python: read, Firewall.receive, write. For packets of
 * connections offloaded to the compiled fast path (statewall.fastpath) the Python around the engine
 * costs more than the engine itself; pump() does the same steps in C for them: read() into its own
 * buffer, the fast path's forward in place (statewall._fastpath through its capsule), and writev() of
 * the virtio-net header as it arrived plus the packet to the egress TUN when its offload mode is the
 * ingress's (the loop's own rule). It returns to Python at the first packet the fast path does not take
 * (or whose egress needs a different header), with that packet, so that the loop hands it to
 * Firewall.receive and writes it as before; and when the TUN is drained or the batch used up.
 *
 * pump(table, fd, hl, iface, mode, outs, batch, epoch) ->
 *     (read, rx_packets, rx_bytes, rx_super, tx, pending, read_error)
 *   outs: ((name, fd, hl, mode), ...) for every port; tx: ((packets, bytes, errors), ...) in that order;
 *   read: packets taken from the fd (the batch used); pending: None, or
 *   (data: bytearray, header: bytes, now: float, egress) for the loop to handle: egress None when the
 *   fast path did not take the packet, else the interface it forwarded it to (to be written by the
 *   loop); read_error: 1 when a read failed (the loop counts it and stops draining this fd).
 * The clock is the loop's: time.monotonic() + epoch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../_fastpath_api.h"

#define BUF_SIZE (65536 + 64)
#define MAX_PORTS 64
#define F_NEEDS_CSUM 1

static statewall_fastpath_api *api;
static unsigned char buffer[BUF_SIZE];

static PyObject *pump(PyObject *mod, PyObject *args) {
    PyObject *table, *iface, *outs;
    int fd, hl, mode, batch;
    double epoch;
    if (!PyArg_ParseTuple(args, "OiiUiO!id:pump", &table, &fd, &hl, &iface, &mode, &PyTuple_Type, &outs,
                          &batch, &epoch))
        return NULL;
    if (!PyObject_TypeCheck(table, api->table_type)) {
        PyErr_SetString(PyExc_TypeError, "pump() needs the fast path's FlowTable");
        return NULL;
    }
    Py_ssize_t nouts = PyTuple_GET_SIZE(outs);
    if (nouts > MAX_PORTS || hl < 0 || hl > 64) {
        PyErr_SetString(PyExc_ValueError, "too many ports or a bad header length");
        return NULL;
    }
    PyObject *names[MAX_PORTS];
    int ofd[MAX_PORTS], ohl[MAX_PORTS], omode[MAX_PORTS];
    unsigned long long txp[MAX_PORTS] = {0}, txb[MAX_PORTS] = {0}, txe[MAX_PORTS] = {0};
    for (Py_ssize_t i = 0; i < nouts; i++) {
        PyObject *o = PyTuple_GET_ITEM(outs, i);
        if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(o, 0))) {
            PyErr_SetString(PyExc_TypeError, "outs: (name, fd, hl, mode) tuples");
            return NULL;
        }
        names[i] = PyTuple_GET_ITEM(o, 0);
        ofd[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 1));
        ohl[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 2));
        omode[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 3));
        if (PyErr_Occurred())
            return NULL;
    }
    unsigned long long rx = 0, rxb = 0, sup = 0;
    int used = 0, read_error = 0;
    PyObject *pending = Py_None;
    Py_INCREF(pending);
    while (used < batch) {
        ssize_t n = read(fd, buffer, BUF_SIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            read_error = 1; /* the loop counts it and stops draining this fd */
            break;
        }
        used++;
        if (n <= hl)
            continue;
        rx++;
        rxb += (unsigned long long)(n - hl);
        int partial = 0;
        long gso = 0;
        if (hl) {
            partial = (buffer[0] & F_NEEDS_CSUM) == F_NEEDS_CSUM;
            if (buffer[1]) {
                sup++;
                gso = buffer[4] | (buffer[5] << 8);
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        PyObject *now = PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec * 1e-9 + epoch);
        if (!now) {
            Py_DECREF(pending);
            return NULL;
        }
        PyObject *egress = api->forward(table, iface, buffer + hl, n - hl, now, partial, gso);
        if (!egress) {
            Py_DECREF(now);
            Py_DECREF(pending);
            return NULL;
        }
        Py_ssize_t out = -1;
        if (egress != Py_None) {
            for (Py_ssize_t i = 0; i < nouts; i++) {
                if (names[i] == egress || PyUnicode_Compare(names[i], egress) == 0) {
                    out = i;
                    break;
                }
            }
        }
        if (out >= 0 && omode[out] == mode && ohl[out] == hl) {
            ssize_t w;
            if (hl) {
                struct iovec iov[2] = {{buffer, (size_t)hl}, {buffer + hl, (size_t)(n - hl)}};
                w = writev(ofd[out], iov, 2);
            } else
                w = write(ofd[out], buffer, (size_t)n);
            if (w < 0)
                txe[out]++;
            else {
                txp[out]++;
                txb[out] += (unsigned long long)(n - hl);
            }
            Py_DECREF(egress);
            Py_DECREF(now);
            continue;
        }
        /* Not the fast path's, or forwarded to a port that needs another header (already counted as
         * forwarded by the engine in that case: the loop only writes it). */
        PyObject *data = PyByteArray_FromStringAndSize((char *)buffer + hl, n - hl);
        PyObject *hdr = PyBytes_FromStringAndSize((char *)buffer, hl);
        if (!data || !hdr) {
            Py_XDECREF(data);
            Py_XDECREF(hdr);
            Py_DECREF(egress);
            Py_DECREF(now);
            Py_DECREF(pending);
            return NULL;
        }
        Py_DECREF(pending);
        /* (data, header, now, egress or None) */
        pending = Py_BuildValue("(NNNN)", data, hdr, now, egress);
        if (!pending)
            return NULL;
        break;
    }
    PyObject *tx = PyTuple_New(nouts);
    if (!tx) {
        Py_DECREF(pending);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nouts; i++) {
        PyObject *t = Py_BuildValue("(KKK)", txp[i], txb[i], txe[i]);
        if (!t) {
            Py_DECREF(tx);
            Py_DECREF(pending);
            return NULL;
        }
        PyTuple_SET_ITEM(tx, i, t);
    }
    return Py_BuildValue("(iKKKNNi)", used, rx, rxb, sup, tx, pending, read_error);
}

static PyMethodDef methods[] = {
    {"pump", pump, METH_VARARGS,
     "pump(table, fd, hl, iface, mode, outs, batch, epoch) -> (read, rx_packets, rx_bytes, rx_super, "
     "tx, pending, read_error)"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "statewall.live._tunpump",
    .m_doc = "The live loop's read - fast path - write in C (statewall.live.loop).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__tunpump(void) {
    api = (statewall_fastpath_api *)PyCapsule_Import(STATEWALL_FASTPATH_CAPSULE, 0);
    if (!api)
        return NULL;
    return PyModule_Create(&module);
}
