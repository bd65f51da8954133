/* The C interface statewall._fastpath exports to other extensions through the capsule
 * statewall._fastpath._C_API (statewall.live._tunpump uses it). */
#ifndef STATEWALL_FASTPATH_API_H
#define STATEWALL_FASTPATH_API_H

#define STATEWALL_FASTPATH_CAPSULE "statewall._fastpath._C_API"

typedef struct {
    PyTypeObject *table_type;
    /* forward(table, iface, packet, length, now, partial, gso_size): the packet forwarded in place
     * and counted as Firewall.receive counts it -> egress interface (new reference); None when the
     * fast path does not take it (nothing changed); NULL with an exception. */
    PyObject *(*forward)(PyObject *, PyObject *, unsigned char *, Py_ssize_t, PyObject *, int, long);
    /* known(table, packet, length): 1 when the table holds a record under the packet's key (an IPv4
     * TCP or UDP packet without IP options, not a fragment), 0 when it holds none, -1 for any other
     * packet (its effect on the table's connections is not told by a key: ICMP, IPv6, fragments). */
    int (*known)(PyObject *, const unsigned char *, Py_ssize_t);
    /* forward_events(..., events): forward() that also takes the segment that ends a connection's
     * close (bind()'s fins_closed, after the packet is forwarded in place), appending the teardown's
     * events to the list `events`; -> as forward(). */
    PyObject *(*forward_events)(PyObject *, PyObject *, unsigned char *, Py_ssize_t, PyObject *, int, long,
                                PyObject *);
} statewall_fastpath_api;

#endif
