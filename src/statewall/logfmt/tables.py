"""The ASA's ``show conn`` and ``show xlate`` tables of a running engine (text by ``statewall.logfmt.asa``):
this module makes the translations' rows; the connections' rows are ``statewall.showtables.conn_records``,
the one place both ``show conn`` and the live view take them from."""

from __future__ import annotations

from ..packet import addr_to_str
from .asa import XlateRecord


def show_conn(fw, *, detail: bool = False, now: float | None = None) -> str:
    """``show conn [detail]`` as the ASA of the configured release prints it (``statewall.showtables``,
    the one path every show command takes)."""
    from ..showtables import show

    return show(fw, ["conn", "detail"] if detail else ["conn"], now)


def xlate_records(fw) -> list[XlateRecord]:
    """``show xlate`` rows; a slot in use is as idle as the most recently active of its connections."""
    active: dict[int, float] = {}
    for conn in fw.conns:
        for x in conn.xlates:
            if conn.last > active.get(id(x), float("-inf")):
                active[id(x)] = conn.last
    rows = []
    for x in fw.nat.xlates.values():
        v = x.version
        flags = x.flags or ("ri" if x.pat else ("s" if x.kind == "static" else "i"))
        rows.append(
            XlateRecord(
                x.proto,
                x.real_iface,
                addr_to_str(v, x.real_addr),
                x.real_port,
                x.mapped_iface,
                addr_to_str(v, x.mapped_addr),
                x.mapped_port,
                x.idle_since if x.refcount == 0 else active.get(id(x), fw.now),
                x.timeout,
                flags,
                "PAT" if x.pat else "NAT",
            )
        )
    return rows


def show_xlate(fw, *, now: float | None = None) -> str:
    from ..showtables import show

    return show(fw, ["xlate"], now)
