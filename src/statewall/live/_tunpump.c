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
 *
 * wait(table, epfd, ports, batch, timeout, epoch, spin) is the compiled loop: the loop's epoll_wait and
 * the drains of every ready TUN in one call, returning to Python only when something needs it (see
 * wait_ below). uring(depth) batches the fast path's TUN writes through io_uring (see flush).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../_fastpath_api.h"

#ifdef STATEWALL_HAVE_LIBURING
#include <liburing.h>
#endif

#define BUF_SIZE (65536 + 64)
#define MAX_PORTS 64
#define F_NEEDS_CSUM 1

static statewall_fastpath_api *api;
static unsigned char buffer_static[BUF_SIZE];

/* io_uring batches of the TUN writes (uring(depth); statewall run sets 32, --uring): the fast path's
 * packets are read into `depth` slots and their writev()s submitted together, one io_uring_enter for
 * up to `depth` writes instead of one writev each. Measured in docs/performance.md ("Fewer crossings
 * per packet"). */
#define MAX_DEPTH 256
static int depth;
#ifdef STATEWALL_HAVE_LIBURING
static struct io_uring ring;
static unsigned char *slots;
static struct iovec slot_iov[MAX_DEPTH][2];
static int slot_out[MAX_DEPTH];
static unsigned long long slot_len[MAX_DEPTH];
#endif

/* Reads through io_uring that wait (uring_reads(n); statewall run --uring-reads N): each TUN gets one
 * multishot read (IORING_OP_READ_MULTISHOT, Linux 6.7) on a ring of its own with n provided buffers
 * (a buffer ring per TUN), on the TUN's fd switched to blocking mode: io_uring honours O_NONBLOCK (a
 * non-blocking read completes with -EAGAIN), and a blocking pollable file makes it arm its poll instead,
 * so the kernel reads each packet into a free buffer as it arrives, in order, and one io_uring_enter
 * waits for and reaps them all (no read() per packet, no read() that finds the queue empty, no
 * epoll_wait for the TUNs). The loop's epoll (the wake-up pipe, the control channel) is watched by a
 * poll request on the same ring. The reads stay armed between calls of wait(); uring_reads_stop()
 * cancels them, puts the TUNs back in non-blocking mode and returns the packets read and not yet
 * handled. Measured in docs/performance.md ("Fewer crossings per packet"). */
#define MAX_RPORTS 8
#define RBUFS_MAX 256
#define TAG_EPOLL 0xffffffffULL
#define TAG_CANCEL 0xfffffffeULL
static int rdepth; /* buffers per TUN; 0: reads are read() */
#ifdef STATEWALL_HAVE_LIBURING
#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT (IORING_OP_SENDMSG_ZC + 1)
#endif
static struct io_uring rring;
static int rring_up;
typedef struct {
    int fd;          /* -1: free */
    int armed;       /* the multishot read is in the kernel */
    int was_nonblock; /* O_NONBLOCK was set before (restored by uring_reads_stop) */
    struct io_uring_buf_ring *br;
    unsigned char *bufs;
    int ret[RBUFS_MAX]; /* buffers to give back once their writes are flushed */
    int nret;
} rport_t;
static rport_t rports[MAX_RPORTS];
static int rtaskrun; /* uring_reads' taskrun */

/* The read ring as uring_reads' taskrun asks: 0 or -errno. */
static int ring_init(struct io_uring *r) {
    static const unsigned taskrun[3] = {0, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                                        IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER};
    struct io_uring_params prm;
    memset(&prm, 0, sizeof prm);
    prm.flags = IORING_SETUP_CQSIZE | taskrun[rtaskrun];
    prm.cq_entries = 4096;
    int rc = io_uring_queue_init_params(64, r, &prm);
    if (rc < 0)
        return rc;
    if (!(prm.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(r);
        return -EOPNOTSUPP;
    }
    return 0;
}
static int ep_armed = -1; /* the epoll fd a poll request is armed on, -1: none */
static unsigned long long rstat_enters, rstat_cqes; /* uring_stats(): for the tests */
#endif


/* The ports the pump may write to, parsed once per call from ((name, fd, hl, mode), ...). */
typedef struct {
    Py_ssize_t n;
    PyObject *names[MAX_PORTS];
    int fd[MAX_PORTS], hl[MAX_PORTS], mode[MAX_PORTS];
    unsigned long long txp[MAX_PORTS], txb[MAX_PORTS], txe[MAX_PORTS];
    /* wait()'s events list (borrowed; NULL: none): the fast path then also takes the segment that ends
     * a connection's close, its teardown's events appended here (api->forward_events) */
    PyObject *events;
} ports_t;

static int parse_ports(PyObject *outs, ports_t *p) {
    p->n = PyTuple_GET_SIZE(outs);
    p->events = NULL;
    if (p->n > MAX_PORTS) {
        PyErr_SetString(PyExc_ValueError, "too many ports");
        return -1;
    }
    for (Py_ssize_t i = 0; i < p->n; i++) {
        PyObject *o = PyTuple_GET_ITEM(outs, i);
        if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(o, 0))) {
            PyErr_SetString(PyExc_TypeError, "outs: (name, fd, hl, mode) tuples");
            return -1;
        }
        p->names[i] = PyTuple_GET_ITEM(o, 0);
        p->fd[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 1));
        p->hl[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 2));
        p->mode[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(o, 3));
        if (PyErr_Occurred())
            return -1;
        if (p->hl[i] < 0 || p->hl[i] > 64) {
            PyErr_SetString(PyExc_ValueError, "a bad header length");
            return -1;
        }
        p->txp[i] = p->txb[i] = p->txe[i] = 0;
    }
    return 0;
}

static PyObject *tx_tuple(ports_t *p) {
    PyObject *tx = PyTuple_New(p->n);
    if (!tx)
        return NULL;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        PyObject *t = Py_BuildValue("(KKK)", p->txp[i], p->txb[i], p->txe[i]);
        if (!t) {
            Py_DECREF(tx);
            return NULL;
        }
        PyTuple_SET_ITEM(tx, i, t);
    }
    return tx;
}

/* Submit the nq queued writes and count their completions (a no-op without io_uring). A TUN write
 * completes inline, so this returns with every slot free again. Should the ring fail, the writes not
 * completed are counted as errors and io_uring is switched off (depth 0: writev from then on), so that
 * a slot is never reused while the kernel may still read it. */
static void flush(ports_t *p, int nq) {
#ifdef STATEWALL_HAVE_LIBURING
    if (nq <= 0)
        return;
    char done[MAX_DEPTH] = {0};
    int seen = 0, failed = 0;
    while (seen < nq) {
        int rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            failed = 1;
            break;
        }
        struct io_uring_cqe *cqe;
        while (seen < nq && io_uring_peek_cqe(&ring, &cqe) == 0) {
            int k = (int)io_uring_cqe_get_data64(cqe), out = slot_out[k];
            if (cqe->res < 0)
                p->txe[out]++;
            else {
                p->txp[out]++;
                p->txb[out] += slot_len[k];
            }
            done[k] = 1;
            io_uring_cqe_seen(&ring, cqe);
            seen++;
        }
    }
    if (failed) {
        for (int k = 0; k < nq; k++)
            if (!done[k])
                p->txe[slot_out[k]]++;
        depth = 0;
    }
#else
    (void)p;
    (void)nq;
#endif
}

/* What one drain of one fd read. */
typedef struct {
    int used, read_error;
    unsigned long long rx, rxb, sup;
} rx_t;

/* One packet read from the port `self` of p (n bytes at buffer, header included): counted, forwarded by
 * the fast path and written (queued in the ring when io_uring writes are on: *nq counts the queued
 * writes, which point into `buffer`, so the caller keeps it until they are flushed), or returned in
 * *pending as (data, header, now, egress or None) after the queued writes are flushed. Returns 1 with
 * *pending set, 0 when done with the packet, -1 with an exception set. */
static int one(PyObject *table, ports_t *p, Py_ssize_t self, unsigned char *buffer, ssize_t n, double epoch,
               rx_t *r, PyObject **pending, int *nq) {
    int hl = p->hl[self], mode = p->mode[self];
    PyObject *iface = p->names[self];
    if (n <= hl)
        return 0;
    r->rx++;
    r->rxb += (unsigned long long)(n - hl);
    int partial = 0;
    long gso = 0;
    if (hl) {
        partial = (buffer[0] & F_NEEDS_CSUM) == F_NEEDS_CSUM;
        if (buffer[1]) {
            r->sup++;
            gso = buffer[4] | (buffer[5] << 8);
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    PyObject *now = PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec * 1e-9 + epoch);
    if (!now) {
        flush(p, *nq);
        *nq = 0;
        return -1;
    }
    PyObject *egress = p->events ? api->forward_events(table, iface, buffer + hl, n - hl, now, partial, gso, p->events)
                                 : api->forward(table, iface, buffer + hl, n - hl, now, partial, gso);
    if (!egress) {
        Py_DECREF(now);
        flush(p, *nq);
        *nq = 0;
        return -1;
    }
    Py_ssize_t out = -1;
    if (egress != Py_None) {
        for (Py_ssize_t i = 0; i < p->n; i++) {
            if (p->names[i] == egress || PyUnicode_Compare(p->names[i], egress) == 0) {
                out = i;
                break;
            }
        }
    }
    if (out >= 0 && p->mode[out] == mode && p->hl[out] == hl) {
#ifdef STATEWALL_HAVE_LIBURING
        if (depth) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            if (sqe) {
                int k = *nq;
                struct iovec *iov = slot_iov[k];
                iov[0].iov_base = buffer;
                iov[0].iov_len = (size_t)hl;
                iov[1].iov_base = buffer + hl;
                iov[1].iov_len = (size_t)(n - hl);
                io_uring_prep_writev(sqe, p->fd[out], hl ? iov : iov + 1, hl ? 2 : 1, 0);
                io_uring_sqe_set_data64(sqe, (unsigned long long)k);
                slot_out[k] = (int)out;
                slot_len[k] = (unsigned long long)(n - hl);
                *nq = k + 1;
                Py_DECREF(egress);
                Py_DECREF(now);
                return 0;
            }
        }
#endif
        ssize_t w;
        if (hl) {
            struct iovec iov[2] = {{buffer, (size_t)hl}, {buffer + hl, (size_t)(n - hl)}};
            w = writev(p->fd[out], iov, 2);
        } else
            w = write(p->fd[out], buffer, (size_t)n);
        if (w < 0)
            p->txe[out]++;
        else {
            p->txp[out]++;
            p->txb[out] += (unsigned long long)(n - hl);
        }
        Py_DECREF(egress);
        Py_DECREF(now);
        return 0;
    }
    /* Not the fast path's, or forwarded to a port that needs another header (already counted as
     * forwarded by the engine in that case: the loop only writes it). The queued writes go first:
     * the loop writes this one after them. */
    if (*nq) {
        flush(p, *nq);
        *nq = 0;
    }
    PyObject *data = PyByteArray_FromStringAndSize((char *)buffer + hl, n - hl);
    PyObject *hdr = PyBytes_FromStringAndSize((char *)buffer, hl);
    if (!data || !hdr) {
        Py_XDECREF(data);
        Py_XDECREF(hdr);
        Py_DECREF(egress);
        Py_DECREF(now);
        return -1;
    }
    /* (data, header, now, egress or None) */
    *pending = Py_BuildValue("(NNNN)", data, hdr, now, egress);
    return *pending ? 1 : -1;
}

/* One read of fd into the buffer of the next queued write (its ring slot with io_uring writes): the
 * bytes read (r->used counts it), or -1 when there is nothing more (EAGAIN, or an error: read_error
 * set, the loop counts it and stops draining this fd). */
static ssize_t read_next(int fd, int nq, rx_t *r, unsigned char **buffer) {
    *buffer = buffer_static;
#ifdef STATEWALL_HAVE_LIBURING
    if (depth)
        *buffer = slots + (size_t)nq * BUF_SIZE;
#endif
    for (;;) {
        ssize_t n = read(fd, *buffer, BUF_SIZE);
        if (n >= 0) {
            r->used++;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            r->read_error = 1;
        return -1;
    }
}

/* Drain fd (the port `self` of p) for at most `batch` reads: the fast path's packets are forwarded and
 * written here; the first other packet is returned in *pending as (data, header, now, egress or None).
 * Returns -1 with an exception set. */
static int drain(PyObject *table, ports_t *p, Py_ssize_t self, int batch, double epoch, rx_t *r,
                 PyObject **pending) {
    int fd = p->fd[self];
    *pending = NULL;
    int nq = 0; /* writes queued in the ring (slots 0 .. nq-1) */
    while (r->used < batch) {
        unsigned char *buffer;
        ssize_t n = read_next(fd, nq, r, &buffer);
        if (n < 0)
            break;
        int rc = one(table, p, self, buffer, n, epoch, r, pending, &nq);
        if (rc)
            return rc < 0 ? -1 : 0;
        if (nq && nq == depth) {
            flush(p, nq);
            nq = 0;
        }
    }
    if (nq)
        flush(p, nq);
    return 0;
}

static int check_table(PyObject *table) {
    if (!PyObject_TypeCheck(table, api->table_type)) {
        PyErr_SetString(PyExc_TypeError, "the fast path's FlowTable is needed");
        return -1;
    }
    return 0;
}

static PyObject *pump(PyObject *mod, PyObject *args) {
    PyObject *table, *iface, *outs;
    int fd, hl, mode, batch;
    double epoch;
    if (!PyArg_ParseTuple(args, "OiiUiO!id:pump", &table, &fd, &hl, &iface, &mode, &PyTuple_Type, &outs,
                          &batch, &epoch))
        return NULL;
    if (check_table(table) < 0)
        return NULL;
    if (hl < 0 || hl > 64) {
        PyErr_SetString(PyExc_ValueError, "a bad header length");
        return NULL;
    }
    /* The reading port as the first entry after the outputs: drain() reads its fd, hl, mode, name. */
    ports_t p;
    if (parse_ports(outs, &p) < 0)
        return NULL;
    if (p.n >= MAX_PORTS) {
        PyErr_SetString(PyExc_ValueError, "too many ports");
        return NULL;
    }
    Py_ssize_t self = p.n;
    p.names[self] = iface;
    p.fd[self] = fd;
    p.hl[self] = hl;
    p.mode[self] = mode;
    rx_t r = {0};
    PyObject *pending = NULL;
    /* p.n stays the number of outputs: the reading port is never an output of itself here. */
    if (drain(table, &p, self, batch, epoch, &r, &pending) < 0)
        return NULL;
    PyObject *tx = tx_tuple(&p);
    if (!tx) {
        Py_XDECREF(pending);
        return NULL;
    }
    if (!pending) {
        pending = Py_None;
        Py_INCREF(pending);
    }
    return Py_BuildValue("(iKKKNNi)", r.used, r.rx, r.rxb, r.sup, tx, pending, r.read_error);
}

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define MAX_EVENTS 64

/* (index, data, header, now, egress) from pump()'s pending (data, header, now, egress). */
static PyObject *with_index(Py_ssize_t k, PyObject *pending) {
    PyObject *t = PyTuple_New(5);
    PyObject *idx = PyLong_FromSsize_t(k);
    if (!t || !idx) {
        Py_XDECREF(t);
        Py_XDECREF(idx);
        Py_DECREF(pending);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, idx);
    for (int j = 0; j < 4; j++) {
        PyObject *x = PyTuple_GET_ITEM(pending, j);
        Py_INCREF(x);
        PyTuple_SET_ITEM(t, j + 1, x);
    }
    Py_DECREF(pending);
    return t;
}

/* Append (fd, events) to the list *other (made on first use). */
static int add_other(PyObject **other, int fd, unsigned events) {
    if (!*other && !(*other = PyList_New(0)))
        return -1;
    PyObject *t = Py_BuildValue("(iI)", fd, events);
    if (!t || PyList_Append(*other, t) < 0) {
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    return 0;
}

#ifdef STATEWALL_HAVE_LIBURING
/* Give the buffers whose packets are done (and whose writes are flushed) back to their TUN's ring. */
static void give_back(void) {
    int mask = io_uring_buf_ring_mask((unsigned)rdepth);
    for (int i = 0; i < MAX_RPORTS; i++) {
        rport_t *rp = &rports[i];
        if (rp->fd < 0 || !rp->nret)
            continue;
        for (int k = 0; k < rp->nret; k++)
            io_uring_buf_ring_add(rp->br, rp->bufs + (size_t)rp->ret[k] * BUF_SIZE, BUF_SIZE,
                                  (unsigned short)rp->ret[k], mask, k);
        io_uring_buf_ring_advance(rp->br, rp->nret);
        rp->nret = 0;
    }
}

static void rport_free(rport_t *rp, int slot) {
    if (rp->br) {
        if (rring_up)
            io_uring_unregister_buf_ring(&rring, slot);
        munmap(rp->br, (size_t)rdepth * sizeof(struct io_uring_buf));
    }
    PyMem_RawFree(rp->bufs);
    rp->br = NULL;
    rp->bufs = NULL;
    rp->fd = -1;
    rp->armed = rp->nret = 0;
}

/* The slot of the TUN fd in rports: set up the first time (its buffer ring registered as buffer group
 * `slot`, the fd switched to blocking mode). -1 with an exception set when that fails. */
static int rport_of(int fd) {
    int slot = -1;
    for (int i = 0; i < MAX_RPORTS; i++) {
        if (rports[i].fd == fd)
            return i;
        if (rports[i].fd < 0 && slot < 0)
            slot = i;
    }
    if (slot < 0) {
        PyErr_SetString(PyExc_ValueError, "ring reads: too many TUNs");
        return -1;
    }
    rport_t *rp = &rports[slot];
    size_t brsize = (size_t)rdepth * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, brsize, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    rp->br = br;
    rp->bufs = PyMem_RawMalloc((size_t)rdepth * BUF_SIZE);
    if (!rp->bufs) {
        munmap(br, brsize);
        rp->br = NULL;
        PyErr_NoMemory();
        return -1;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)br;
    reg.ring_entries = (unsigned)rdepth;
    reg.bgid = (unsigned short)slot;
    int rc = io_uring_register_buf_ring(&rring, &reg, 0);
    if (rc < 0) {
        munmap(br, brsize);
        rp->br = NULL;
        PyMem_RawFree(rp->bufs);
        rp->bufs = NULL;
        errno = -rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    io_uring_buf_ring_init(rp->br);
    rp->fd = fd;
    for (int k = 0; k < rdepth; k++)
        rp->ret[k] = k;
    rp->nret = rdepth;
    give_back();
    int fl = fcntl(fd, F_GETFL);
    rp->was_nonblock = fl >= 0 && (fl & O_NONBLOCK);
    if (fl < 0 || (rp->was_nonblock && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        rport_free(rp, slot);
        return -1;
    }
    return slot;
}

static struct io_uring_sqe *rsqe(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rring);
    if (!sqe) {
        io_uring_submit(&rring);
        sqe = io_uring_get_sqe(&rring);
    }
    return sqe;
}

/* Wait on the read ring: the ring's counterpart of wait_'s epoll loop (same results, same ends). */
static int wait_ring(PyObject *table, int epfd, ports_t *p, rx_t *r, double timeout, double epoch, double spin,
                     PyObject **pending, Py_ssize_t *pk, PyObject **other) {
    if (!rring_up) {
        int rc = ring_init(&rring);
        if (rc < 0) {
            errno = -rc;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        rring_up = 1;
        for (int i = 0; i < MAX_RPORTS; i++)
            rports[i].fd = -1;
    }
    int port_of_slot[MAX_RPORTS];
    for (int i = 0; i < MAX_RPORTS; i++)
        port_of_slot[i] = -1;
    int slot_of[MAX_PORTS];
    for (Py_ssize_t j = 0; j < p->n; j++) {
        if ((slot_of[j] = rport_of(p->fd[j])) < 0)
            return -1;
        port_of_slot[slot_of[j]] = (int)j;
    }
    double start = mono(), deadline = start + (timeout > 0 ? timeout : 0), last = start;
    for (;;) {
        for (Py_ssize_t j = 0; j < p->n; j++) {
            rport_t *rp = &rports[slot_of[j]];
            if (rp->armed || r[j].read_error)
                continue;
            struct io_uring_sqe *sqe = rsqe();
            if (!sqe)
                break;
            io_uring_prep_rw(IORING_OP_READ_MULTISHOT, sqe, rp->fd, NULL, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = (unsigned short)slot_of[j];
            io_uring_sqe_set_data64(sqe, (unsigned long long)slot_of[j]);
            rp->armed = 1;
        }
        if (ep_armed != epfd) {
            struct io_uring_sqe *sqe = rsqe();
            if (sqe) {
                io_uring_prep_poll_add(sqe, epfd, POLLIN);
                io_uring_sqe_set_data64(sqe, TAG_EPOLL);
                ep_armed = epfd;
            }
        }
        double now = mono();
        long long ns = 0;
        if (now - last >= spin) {
            double left = deadline - now;
            ns = left > 0 ? (long long)(left * 1e9) : 0;
        }
        struct __kernel_timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
        struct io_uring_cqe *cqe = NULL;
        int rc;
        Py_BEGIN_ALLOW_THREADS rc = io_uring_submit_and_wait_timeout(&rring, &cqe, 1, &ts, NULL);
        Py_END_ALLOW_THREADS rstat_enters++;
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            errno = -rc;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        int got = 0, nq = 0, failed = 0;
        while (!*pending && !failed && io_uring_peek_cqe(&rring, &cqe) == 0) {
            unsigned long long tag = io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            unsigned fl = cqe->flags;
            io_uring_cqe_seen(&rring, cqe);
            rstat_cqes++;
            if (tag == TAG_EPOLL) {
                ep_armed = -1;
                struct epoll_event ev[MAX_EVENTS];
                int n = epoll_wait(epfd, ev, MAX_EVENTS, 0);
                for (int i = 0; i < n; i++) {
                    int isport = 0;
                    for (Py_ssize_t j = 0; j < p->n; j++)
                        isport |= p->fd[j] == ev[i].data.fd;
                    if (!isport && add_other(other, ev[i].data.fd, (unsigned)ev[i].events) < 0)
                        failed = 1;
                }
                continue;
            }
            if (tag >= MAX_RPORTS)
                continue;
            rport_t *rp = &rports[tag];
            if (!(fl & IORING_CQE_F_MORE))
                rp->armed = 0;
            int j = port_of_slot[tag];
            if (fl & IORING_CQE_F_BUFFER)
                rp->ret[rp->nret++] = (int)(fl >> IORING_CQE_BUFFER_SHIFT);
            if (res < 0) {
                if (res != -ENOBUFS && res != -ECANCELED && j >= 0)
                    r[j].read_error = 1; /* counted by the loop; armed again at the next call */
                continue;
            }
            if (!(fl & IORING_CQE_F_BUFFER) || j < 0 || failed)
                continue; /* a packet of a TUN that is no port of this call: dropped */
            r[j].used++;
            got++;
            unsigned char *buffer = rp->bufs + (size_t)(fl >> IORING_CQE_BUFFER_SHIFT) * BUF_SIZE;
            int rc2 = one(table, p, j, buffer, res, epoch, &r[j], pending, &nq);
            if (rc2 < 0)
                failed = 1;
            else if (rc2 > 0)
                *pk = j;
            if (nq && nq == depth) {
                flush(p, nq);
                nq = 0;
                give_back();
            }
        }
        if (nq)
            flush(p, nq);
        give_back();
        if (failed)
            return -1;
        now = mono();
        if (got)
            last = now;
        int err = 0;
        for (Py_ssize_t j = 0; j < p->n; j++)
            err |= r[j].read_error;
        if (*pending || *other || err || rc == -EINTR || now >= deadline)
            break;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}
#endif

/* After a packet for the Python path that the fast path's table holds no record for (a new flow's,
 * api->known), the same TUN is read on: the fast path forwards what it takes, as drain() does, and the
 * next packets for the Python path are appended to the list *pending, (index, data, header, now,
 * egress), up to `collect` of them and `batch` reads; it stops at one whose flow the table may hold
 * (a record's packet the fast path declined, or one no key tells: ICMP, IPv6, fragments), whose Python
 * processing could change what the fast path would do with the packets behind it. So the Python path gets several
 * packets per return, in their order, and the fast path forwards nothing of a flow that has a packet
 * waiting for Python. Returns -1 with an exception set. */
static int collect_more(PyObject *table, ports_t *p, Py_ssize_t k, int collect, int batch, double epoch,
                        rx_t *r, PyObject *list) {
    int fd = p->fd[k];
    int nq = 0, taken = 0, rc = 0, reads = 0;
    PyObject *last = PyList_GET_ITEM(list, 0);
    PyObject *data = PyTuple_GET_ITEM(last, 1);
    if (api->known(table, (unsigned char *)PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data)) != 0)
        return 0;
    /* at most `batch` reads, as a drain: a steady stream of the fast path's packets behind the first
     * must not keep it (and the loop's timers and other ports) waiting */
    while (taken < collect && reads++ < batch) {
        unsigned char *buffer;
        ssize_t n = read_next(fd, nq, r, &buffer);
        if (n < 0)
            break;
        PyObject *pending = NULL;
        int got = one(table, p, k, buffer, n, epoch, r, &pending, &nq);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) {
            if (nq && nq == depth) {
                flush(p, nq);
                nq = 0;
            }
            continue;
        }
        PyObject *item = with_index(k, pending);
        if (!item || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            rc = -1;
            break;
        }
        Py_DECREF(item);
        taken++;
        data = PyTuple_GET_ITEM(item, 1);
        if (api->known(table, (unsigned char *)PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data)) != 0)
            break;
    }
    if (nq)
        flush(p, nq);
    return rc;
}

/* wait(table, epfd, ports, batch, timeout, epoch, spin, ring=False) -> (rx, tx, pending, other)
 *
 * The loop's epoll wait and the drains of the TUNs in one call: epoll_wait on the loop's epoll (its fd),
 * each ready TUN of `ports` drained as pump() drains it (at most `batch` reads a turn: level-triggered,
 * the rest comes back in the next wait), and again, without returning to Python, until one of these:
 * a packet the Python path must see (`pending`, as pump()'s, with the index of its port: (index, data,
 * header, now, egress)), a ready fd that is not a TUN (`other`: ((fd, events), ...), the wake-up pipe
 * and the control channel), `timeout` seconds passed (the loop's next advance), or a signal.
 * `spin`: seconds to keep polling without sleeping after the last packet before a sleeping wait
 * (0: sleep at once). rx: ((reads, packets, bytes, super-packets, read_error), ...) per port; tx as
 * pump()'s. The GIL is released while epoll_wait sleeps.
 * ring: read the TUNs through io_uring (when uring_reads(n) is on; see wait_ring): the ports' fds must
 * then not be in the epoll (only the other fds), and `batch` does not apply (the ring has n buffers).
 * collect (epoll reads only): pending is a list: the packet for the Python path and up to `collect`
 * more for it read after it from the same TUN while they are new flows' (collect_more).
 * events (a list): the fast path also takes the segment that ends a connection's close, the
 * teardown's events (the lifecycle's, called here) appended to it, for the loop to hand on before the
 * pending packets; None: that segment is a pending one, as pump()'s. */
static PyObject *wait_(PyObject *mod, PyObject *args) {
    PyObject *table, *outs;
    int epfd, batch;
    double timeout, epoch, spin;
    int ring = 0, collect = 0;
    PyObject *events = Py_None;
    if (!PyArg_ParseTuple(args, "OiO!iddd|piO:wait", &table, &epfd, &PyTuple_Type, &outs, &batch, &timeout,
                          &epoch, &spin, &ring, &collect, &events))
        return NULL;
    if (check_table(table) < 0)
        return NULL;
    if (events != Py_None && !PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "wait: events is a list or None");
        return NULL;
    }
    ports_t p;
    if (parse_ports(outs, &p) < 0)
        return NULL;
    if (events != Py_None)
        p.events = events;
    rx_t r[MAX_PORTS];
    memset(r, 0, sizeof r);
    PyObject *pending = NULL, *other = NULL;
#ifdef STATEWALL_HAVE_LIBURING
    if (ring && rdepth) {
        Py_ssize_t k = -1;
        if (wait_ring(table, epfd, &p, r, timeout, epoch, spin, &pending, &k, &other) < 0)
            goto fail;
        if (pending && !(pending = with_index(k, pending)))
            goto fail;
    } else
#endif
    {
        double start = mono(), deadline = start + (timeout > 0 ? timeout : 0), last = start;
        for (;;) {
            double now = mono();
            int ms = 0;
            if (now - last >= spin) {
                double left = deadline - now;
                ms = left > 0 ? (int)(left * 1000.0 + 0.999) : 0;
            }
            struct epoll_event ev[MAX_EVENTS];
            int n;
            Py_BEGIN_ALLOW_THREADS n = epoll_wait(epfd, ev, MAX_EVENTS, ms);
            Py_END_ALLOW_THREADS if (n < 0) {
                if (errno == EINTR)
                    break; /* the signal's Python handler runs when we are back */
                PyErr_SetFromErrno(PyExc_OSError);
                goto fail;
            }
            int got = 0;
            for (int i = 0; i < n; i++) {
                Py_ssize_t k = -1;
                for (Py_ssize_t j = 0; j < p.n; j++)
                    if (p.fd[j] == ev[i].data.fd) {
                        k = j;
                        break;
                    }
                if (k < 0 || r[k].read_error) {
                    if (add_other(&other, ev[i].data.fd, (unsigned)ev[i].events) < 0)
                        goto fail;
                    continue;
                }
                if (pending)
                    continue; /* still ready: the next wait reports it */
                int before = r[k].used;
                r[k].used = 0;
                int rc = drain(table, &p, k, batch, epoch, &r[k], &pending);
                got += r[k].used;
                r[k].used += before;
                if (rc < 0)
                    goto fail;
                if (pending && !(pending = with_index(k, pending)))
                    goto fail;
                if (pending && collect > 0) {
                    /* pending becomes the list of the packets for the Python path, in their order */
                    PyObject *list = PyList_New(1);
                    if (!list)
                        goto fail;
                    PyList_SET_ITEM(list, 0, pending);
                    pending = list;
                    if (collect_more(table, &p, k, collect, batch, epoch, &r[k], pending) < 0)
                        goto fail;
                }
            }
            now = mono();
            if (got)
                last = now;
            if (pending || other || now >= deadline)
                break;
            if (PyErr_CheckSignals() < 0)
                goto fail;
        }
    }
    PyObject *rx = PyTuple_New(p.n);
    if (!rx)
        goto fail;
    for (Py_ssize_t i = 0; i < p.n; i++) {
        PyObject *t = Py_BuildValue("(iKKKi)", r[i].used, r[i].rx, r[i].rxb, r[i].sup, r[i].read_error);
        if (!t) {
            Py_DECREF(rx);
            goto fail;
        }
        PyTuple_SET_ITEM(rx, i, t);
    }
    PyObject *tx = tx_tuple(&p);
    if (!tx) {
        Py_DECREF(rx);
        goto fail;
    }
    if (!pending) {
        pending = Py_None;
        Py_INCREF(pending);
    }
    if (!other) {
        other = Py_None;
        Py_INCREF(other);
    }
    return Py_BuildValue("(NNNN)", rx, tx, pending, other);
fail:
    Py_XDECREF(pending);
    Py_XDECREF(other);
    return NULL;
}

/* uring(depth) -> bool: batch the TUN writes through io_uring, `depth` at a time (0: off, plain
 * writev). False when the extension was built without liburing or the ring cannot be set up. */
static PyObject *uring(PyObject *mod, PyObject *arg) {
    long d = PyLong_AsLong(arg);
    if (d == -1 && PyErr_Occurred())
        return NULL;
    if (d < 0 || d > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "depth: 0 to 256");
        return NULL;
    }
#ifdef STATEWALL_HAVE_LIBURING
    if (d && !slots) {
        if (io_uring_queue_init(MAX_DEPTH, &ring, 0) < 0)
            Py_RETURN_FALSE;
        slots = PyMem_RawMalloc((size_t)MAX_DEPTH * BUF_SIZE);
        if (!slots) {
            io_uring_queue_exit(&ring);
            return PyErr_NoMemory();
        }
    }
    depth = (int)d;
    Py_RETURN_TRUE;
#else
    depth = 0;
    if (d)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
#endif
}

/* uring_reads(n, taskrun=0) -> bool: read the TUNs through io_uring, n buffers per TUN (a power of two,
 * 0: off, the reads are read()s). taskrun: how the ring runs the reads the kernel queues for this thread
 * when a packet arrives: 0 as io_uring does by default (the thread is interrupted to run them at once),
 * 1 IORING_SETUP_COOP_TASKRUN (at its next system call), 2 IORING_SETUP_DEFER_TASKRUN (only when it
 * waits on the ring: all of them in one go). False when the extension was built without liburing, the ring cannot be set up or
 * the kernel has no multishot read (Linux < 6.7): the reads stay read()s. Turning it off or changing n
 * first does what uring_reads_stop() does (whose packets are then lost: call that first). */
static PyObject *uring_reads_stop(PyObject *mod, PyObject *unused);

static PyObject *uring_reads(PyObject *mod, PyObject *args) {
    int d, t = 0;
    if (!PyArg_ParseTuple(args, "i|i:uring_reads", &d, &t))
        return NULL;
    if (d < 0 || d > RBUFS_MAX || (d & (d - 1))) {
        PyErr_SetString(PyExc_ValueError, "buffers: 0 or a power of two up to 256");
        return NULL;
    }
    if (t < 0 || t > 2) {
        PyErr_SetString(PyExc_ValueError, "taskrun: 0 (signal), 1 (coop) or 2 (defer)");
        return NULL;
    }
#ifdef STATEWALL_HAVE_LIBURING
    if (d == rdepth && t == rtaskrun)
        Py_RETURN_TRUE;
    PyObject *left = uring_reads_stop(mod, NULL);
    if (!left)
        return NULL;
    Py_DECREF(left);
    rdepth = 0;
    rtaskrun = t;
    if (!d)
        Py_RETURN_TRUE;
    /* A ring of the kind wait() will make (in its own thread: a single issuer's ring is that thread's),
     * only to ask the kernel what it has. */
    struct io_uring probe_ring;
    if (ring_init(&probe_ring) < 0)
        Py_RETURN_FALSE;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&probe_ring);
    int ok = probe && io_uring_opcode_supported(probe, IORING_OP_READ_MULTISHOT);
    if (probe)
        io_uring_free_probe(probe);
    io_uring_queue_exit(&probe_ring);
    if (!ok)
        Py_RETURN_FALSE;
    rdepth = d;
    Py_RETURN_TRUE;
#else
    if (d)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
#endif
}

/* uring_reads_stop() -> [(fd, bytes), ...]: cancel the ring's reads, put the TUNs back in non-blocking
 * mode (if they were) and return the packets the kernel had read and wait() had not yet handled, in the
 * order read, each as read (the virtio-net header first). The reads are armed again by the next wait()
 * if uring_reads is still on. */
static PyObject *uring_reads_stop(PyObject *mod, PyObject *unused) {
    PyObject *left = PyList_New(0);
    if (!left)
        return NULL;
#ifdef STATEWALL_HAVE_LIBURING
    if (!rring_up)
        return left;
    int armed = ep_armed >= 0;
    for (int i = 0; i < MAX_RPORTS; i++)
        armed += rports[i].fd >= 0 && rports[i].armed;
    if (armed) {
        struct io_uring_sqe *sqe = rsqe();
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, TAG_CANCEL);
        }
        int cancel_seen = !sqe, rounds = 0;
        while ((armed || !cancel_seen) && rounds++ < 100) {
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
            int rc = io_uring_submit_and_wait_timeout(&rring, &cqe, 1, &ts, NULL);
            if (rc < 0 && rc != -ETIME && rc != -EINTR)
                break;
            while (io_uring_peek_cqe(&rring, &cqe) == 0) {
                unsigned long long tag = io_uring_cqe_get_data64(cqe);
                int res = cqe->res;
                unsigned fl = cqe->flags;
                io_uring_cqe_seen(&rring, cqe);
                if (tag == TAG_CANCEL) {
                    cancel_seen = 1;
                    continue;
                }
                if (tag == TAG_EPOLL) {
                    ep_armed = -1;
                    armed--;
                    continue;
                }
                if (tag >= MAX_RPORTS)
                    continue;
                rport_t *rp = &rports[tag];
                if (!(fl & IORING_CQE_F_MORE) && rp->armed) {
                    rp->armed = 0;
                    armed--;
                }
                if (!(fl & IORING_CQE_F_BUFFER))
                    continue;
                int bid = (int)(fl >> IORING_CQE_BUFFER_SHIFT);
                rp->ret[rp->nret++] = bid;
                if (res > 0) {
                    PyObject *t = Py_BuildValue("(iy#)", rp->fd, (char *)rp->bufs + (size_t)bid * BUF_SIZE,
                                                (Py_ssize_t)res);
                    if (!t || PyList_Append(left, t) < 0) {
                        Py_XDECREF(t);
                        Py_CLEAR(left);
                        break;
                    }
                    Py_DECREF(t);
                }
            }
            if (!left)
                break;
        }
    }
    for (int i = 0; i < MAX_RPORTS; i++) {
        rport_t *rp = &rports[i];
        if (rp->fd < 0)
            continue;
        if (rp->was_nonblock) {
            int fl = fcntl(rp->fd, F_GETFL);
            if (fl >= 0)
                fcntl(rp->fd, F_SETFL, fl | O_NONBLOCK);
        }
        rport_free(rp, i);
    }
    ep_armed = -1;
    /* The next wait() makes a new ring: nothing of this one's can complete later. */
    io_uring_queue_exit(&rring);
    rring_up = 0;
#endif
    return left;
}

/* uring_stats() -> (waits, completions): the read ring's waits (io_uring_submit_and_wait_timeout calls,
 * which enter the kernel unless completions are already there) and completions reaped so far. */
static PyObject *uring_stats(PyObject *mod, PyObject *unused) {
#ifdef STATEWALL_HAVE_LIBURING
    return Py_BuildValue("(KK)", rstat_enters, rstat_cqes);
#else
    return Py_BuildValue("(ii)", 0, 0);
#endif
}

static PyMethodDef methods[] = {
    {"uring_reads", uring_reads, METH_VARARGS,
     "uring_reads(n, taskrun=0) -> bool: read the TUNs through io_uring, n buffers per TUN (0: off, read())"},
    {"uring_reads_stop", uring_reads_stop, METH_NOARGS,
     "uring_reads_stop() -> [(fd, bytes), ...]: cancel the ring's reads; the packets read and not handled"},
    {"uring_stats", uring_stats, METH_NOARGS, "uring_stats() -> (waits, completions) of the read ring"},
    {"uring", uring, METH_O, "uring(depth) -> bool: batch the TUN writes through io_uring (0: off)"},
    {"pump", pump, METH_VARARGS,
     "pump(table, fd, hl, iface, mode, outs, batch, epoch) -> (read, rx_packets, rx_bytes, rx_super, "
     "tx, pending, read_error)"},
    {"wait", wait_, METH_VARARGS,
     "wait(table, epfd, ports, batch, timeout, epoch, spin, ring=False) -> (rx, tx, pending, other): "
     "epoll_wait (or the read ring's wait) and the TUNs' drains in one call (see the source)"},
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
    /* PyCapsule_Import finds the capsule as an attribute of the package: the submodule must be
     * imported first (importing statewall.live.loop before the engine would fail otherwise). */
    PyObject *fp = PyImport_ImportModule("statewall._fastpath");
    if (!fp)
        return NULL;
    Py_DECREF(fp);
    api = (statewall_fastpath_api *)PyCapsule_Import(STATEWALL_FASTPATH_CAPSULE, 0);
    if (!api)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "RING_PORTS_MAX", MAX_RPORTS) < 0)
        Py_CLEAR(m);
    return m;
}
