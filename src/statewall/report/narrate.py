"""What happened to one connection, in plain sentences (the demo's "What happened", for every
connection of a replay): how it was translated and why it was allowed, the packets each side sent, what
was dropped with the configuration line and the change that would let it through, and how it ended.
Everything comes from the connection's events and the packets counted on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .build import Conn, _Builder

_PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}


def _line(o: dict | None) -> str:
    return f"'{o['text'].strip()}' (line {o['line']})" if o and o.get("text") else ""


def _sock(address: str, port: int, proto: int) -> str:
    return f"{address}/{port}" if proto in (6, 17) else address


def narrate(conn: Conn, b: _Builder) -> list[str]:
    proto = _PROTO.get(conn.proto, f"protocol {conn.proto}")
    i, r, p = conn.ini, conn.res, conn.proto
    out: list[str] = []
    if conn.denied:
        out.append(
            f"A {proto} flow from {_sock(i['address'], i['port'], p)} on {i['interface']} to "
            f"{_sock(r['address'], r['port'], p)} was refused: no connection was built."
        )
    else:
        out.append(
            f"Connection {conn.id} ({proto}, {conn.direction}): {_sock(i['address'], i['port'], p)} on "
            f"{i['interface']} to {_sock(r['address'], r['port'], p)} on {r['interface']}"
            + (f", allowed by {_line(conn.origin)}" if conn.origin else "")
            + "."
        )
        if conn.master is not None:
            out.append(f"It is a data connection announced on FTP control connection {conn.master}.")
        if conn.children:
            kids = ", ".join(str(c) for c in conn.children)
            out.append(
                f"Its FTP commands opened data connection{'s' if len(conn.children) > 1 else ''} {kids}."
            )
        for side, ep in ((r["interface"], i), (i["interface"], r)):
            if (ep["address"], ep["port"]) != (ep["mapped_address"], ep["mapped_port"]):
                x = next(
                    (
                        x
                        for x in conn.xlates
                        if (x["real_address"], x["real_port"]) == (ep["address"], ep["port"])
                    ),
                    None,
                )
                rule = _line(x.get("origin")) if x else ""
                out.append(
                    f"On {side} {_sock(ep['address'], ep['port'], p)} appears as "
                    f"{_sock(ep['mapped_address'], ep['mapped_port'], p)}"
                    + (f", by {rule}" if rule else "")
                    + "."
                )
    (a_in, a_out, a_drop), (b_in, b_out, b_drop) = conn.counts
    out.append(
        f"{a_in + a_drop} packets arrived on {i['interface']} and {b_in + b_drop} on {r['interface']}; "
        f"{b_out} left by {r['interface']} and {a_out} by {i['interface']}."
    )
    for reason, n in conn.drops.most_common():
        d = next(
            (b.drops[k] for k in conn.drop_ids if k < len(b.drops) and b.drops[k]["reason"] == reason), None
        )
        words = f"{n} packet{'s' if n > 1 else ''} dropped: {reason}"
        if d is not None and d.get("consequence"):
            words += f", {d['consequence']}"
        elif d is not None:
            if d.get("message"):
                words += f" ({d['message']})"
            if d.get("origin"):
                words += f", caused by {_line(d['origin'])}"
            if d.get("hint"):
                words += f"; to let it through: {d['hint']}"
        out.append(words + ".")
    if not conn.denied:
        if conn.teardown is not None:
            dur = f" after {conn.duration:.1f} s" if conn.duration is not None else ""
            out.append(f"It was torn down{dur} and {conn.bytes} bytes: {conn.teardown}.")
        else:
            out.append("It was still open when the capture ended.")
    return out
