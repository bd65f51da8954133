"""The web view of a running firewall: ``statewall run --http [ADDR:]PORT``.

Owns a small read-only HTTP server (``http.server`` in a thread of its own) with three pages:

    /             the connections, the translations, the recent drops (with the configuration line and
                  the change that would let each through) and the counters, refreshed every 2 s
    /state.json   the same as JSON
    /metrics      the counters in Prometheus's text format, through ``prometheus_client``
    /report       the replay report's page of the run so far -- summary, drops by reason with their
                  consequences, the connections' timeline with its filters, a ladder per connection --
                  when the run records (``--record OUTDIR``, ``statewall.live.record``): the recording
                  is brought to disk in the loop's thread, and the page built from it in the server's
                  thread. Without a recording there are no packets to draw, and the page says so.

The engine is only ever read in the forwarding loop's thread, between drains, as ``statewall ctl``
reads it: a request asks the loop for a snapshot (a wake-up pipe served from the loop's epoll with
``Loop.watch``), waits for it, and renders it in the server's thread. A slow client holds up its own
thread, never the packets. Only GET and HEAD are answered; nothing changes the firewall. The server
listens on loopback unless an address is given.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..events import Drop
from ..tcptrack import TcpState

DEFAULT_ADDR = "127.0.0.1"
RECENT_DROPS = 200
PAGE_CONNS = 200
SNAPSHOT_TIMEOUT = 5.0
_PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}
_EMBRYONIC = frozenset({TcpState.SYN_SENT, TcpState.SYN_SENT2, TcpState.SYN_RECV})


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` or ``ADDR:PORT`` (``[ADDR]:PORT`` for IPv6) -> (addr, port); loopback by default."""
    addr, sep, port = text.rpartition(":")
    if not sep:
        addr, port = DEFAULT_ADDR, text
    addr = addr.strip("[]") or DEFAULT_ADDR
    try:
        ipaddress.ip_address(addr)
        n = int(port)
    except ValueError:
        raise ValueError(f"--http {text!r}: expected PORT or ADDR:PORT with a numeric address") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"--http {text!r}: port out of range")
    return addr, n


def is_loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], view: WebView) -> None:
        if ":" in addr[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)
        self.view = view


class WebView:
    """The HTTP server and its snapshots of ``fw`` and ``loop`` (``start()`` before ``loop.run()``)."""

    def __init__(
        self, fw: Any, loop: Any, addr: str = DEFAULT_ADDR, port: int = 0, recorder: Any = None
    ) -> None:
        self.fw = fw
        self.loop = loop
        self.recorder = recorder  # statewall.live.record.Recorder of --record, for /report
        self.addr = addr
        self.port = port
        self.drops: deque = deque(maxlen=RECENT_DROPS)
        self.dropped = 0
        self._jobs: queue.Queue = queue.Queue()
        self._wake_r = self._wake_w = -1
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._server = _Server((self.addr, self.port), self)
        self.port = self._server.server_address[1]
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop.watch(self._wake_r, select.EPOLLIN, self._serve_jobs)
        prev = self.loop.on_events

        def on_events(events: list) -> None:
            for ev in events:
                if type(ev) is Drop:
                    self.drops.append(ev)
                    self.dropped += 1
            if prev is not None:
                prev(events)

        self.loop.on_events = on_events
        self._thread = threading.Thread(target=self._server.serve_forever, name="statewall-web", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._wake_r >= 0:
            self.loop.unwatch(self._wake_r)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1
        # Whoever still waits gets an answer rather than a timeout.
        self._serve_jobs(0)

    # ---- snapshots: asked from the server's threads, made in the loop's ------------------------

    def in_loop(self, fn: Callable[[], Any], timeout: float = SNAPSHOT_TIMEOUT) -> Any:
        """``fn()`` run in the loop thread (between drains); its result, or its exception raised here."""
        done = threading.Event()
        box: list = []
        self._jobs.put((fn, box, done))
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        if not done.wait(timeout):
            raise TimeoutError("the forwarding loop did not answer")
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    def _serve_jobs(self, _events: int) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        while True:
            try:
                fn, box, done = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                box.append(fn())
            except Exception as exc:  # noqa: BLE001 -- handed to the waiting request, never to the loop
                box.append(exc)
            done.set()

    def counters(self) -> dict[str, Any]:
        """Every counter the page and /metrics show (loop thread)."""
        fw, loop = self.fw, self.loop
        conns = fw.conns
        embryonic = 0
        for c in conns:
            trk = c.tcp
            if trk is not None and trk.state in _EMBRYONIC:
                embryonic += 1
        nat = getattr(fw, "nat", None)
        return {
            "time": fw.now if hasattr(fw, "now") else time.time(),
            "uptime": max(0.0, loop.now() - loop.started) if loop.started else 0.0,
            "interfaces": {p.name: p.counters() for p in loop.ports},
            "engine": dict(fw.stats),
            "drops": {r.keyword: n for r, n in sorted(fw.drops.items(), key=lambda x: -x[1])},
            "connections": len(conns),
            "connections_most_used": max(len(conns), conns.most_used),
            "embryonic": embryonic,
            "translations": len(nat.xlates) if nat is not None else 0,
            "translations_most_used": getattr(nat, "most_used", 0) if nat is not None else 0,
            "fast_path": loop.fast_path_counters(),
            "events": loop.events,
        }

    def state(self, page: int = 0) -> dict[str, Any]:
        """Counters, one page of connections, the translations and the recent drops (loop thread)."""
        fw = self.fw
        now = fw.now
        from ..logfmt.tables import xlate_records
        from ..showtables import conn_records

        records = conn_records(fw)
        total = len(records)
        records = records[page * PAGE_CONNS : (page + 1) * PAGE_CONNS]
        conns = [
            {
                "protocol": _PROTO.get(r.protocol, str(r.protocol)),
                "outside": f"{r.outside_if}:{r.outside_ip}"
                + (f"/{r.outside_port}" if r.outside_port else ""),
                "inside": f"{r.inside_if}:{r.inside_ip}" + (f"/{r.inside_port}" if r.inside_port else ""),
                "idle": round(max(0.0, now - r.last_activity), 1),
                "bytes": r.bytes,
                "flags": r.flags,
            }
            for r in records
        ]
        xlates = [
            {
                "real": f"{x.real_if}:{x.real_ip}/{x.real_port}",
                "mapped": f"{x.mapped_if}:{x.mapped_ip}/{x.mapped_port}",
                "kind": x.kind,
                "idle": round(max(0.0, now - x.last_activity), 1),
            }
            for x in xlate_records(fw)[:PAGE_CONNS]
        ]
        return {
            "counters": self.counters(),
            "connections": {"total": total, "page": page, "per_page": PAGE_CONNS, "rows": conns},
            "translations": xlates,
            "recent_drops": [_drop(d, fw) for d in reversed(self.drops)],
        }


def _drop(d: Drop, fw: Any) -> dict[str, Any]:
    from ..logfmt.asa import format_event

    lines = format_event(d, hostname=None, timestamp=False) if getattr(fw, "netfilter", None) is None else []
    return {
        "time": d.time,
        "reason": d.reason.keyword,
        "description": d.reason.description,
        "interface": d.interface,
        "from": f"{d.src}/{d.sport}" if d.sport else d.src,
        "to": f"{d.dst}/{d.dport}" if d.dport else d.dst,
        "message": d.message,
        "line": {"line": d.origin.line, "text": d.origin.text} if d.origin else None,
        "hint": d.hint,
        "syslog": lines[0] if lines else None,
    }


# --------------------------------------------------------------------------------------------------
# /metrics


def _metric_families(c: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for what in ("packets", "bytes", "errors"):
        fam = CounterMetricFamily(
            f"statewall_interface_{what}",
            f"{what.capitalize()} through each interface",
            labels=["interface", "direction"],
        )
        for name, k in c["interfaces"].items():
            fam.add_metric([name, "rx"], k[f"rx_{what}"])
            fam.add_metric([name, "tx"], k[f"tx_{what}"])
        yield fam
    fam = CounterMetricFamily(
        "statewall_drops", "Packets dropped, by reason (show asp drop)", labels=["reason"]
    )
    for reason, n in c["drops"].items():
        fam.add_metric([reason], n)
    yield fam
    eng = c["engine"]
    yield CounterMetricFamily(
        "statewall_engine_packets",
        "Packets the engine's Python path received",
        value=eng.get("packets_in", 0),
    )
    yield CounterMetricFamily(
        "statewall_connections_built", "Connections built since the start", value=eng.get("connections", 0)
    )
    yield GaugeMetricFamily("statewall_connections", "Connections in the table", value=c["connections"])
    yield GaugeMetricFamily(
        "statewall_connections_most_used", "Most connections at once", value=c["connections_most_used"]
    )
    yield GaugeMetricFamily(
        "statewall_embryonic_connections", "TCP connections not yet established", value=c["embryonic"]
    )
    yield GaugeMetricFamily(
        "statewall_translations", "Translation slots (xlates) in use", value=c["translations"]
    )
    fast = c["fast_path"]
    if fast is not None:
        yield GaugeMetricFamily(
            "statewall_fastpath_connections",
            "Connections in the compiled fast path",
            value=fast["connections"],
        )
        for key, doc in (
            ("packets", "Packets the fast path forwarded"),
            ("handed_back", "Packets the fast path handed to the Python path"),
            ("offloads", "Connections offloaded to the fast path"),
            ("syns", "SYNs of a known flow class built straight into a compiled record"),
            ("returns", "Connections taken back from the fast path"),
        ):
            yield CounterMetricFamily(f"statewall_fastpath_{key}", doc, value=fast[key])
    yield CounterMetricFamily("statewall_events", "Events the engine emitted", value=c["events"])


class _Collector:
    def __init__(self, view: WebView) -> None:
        self.view = view

    def collect(self) -> Iterator[Any]:
        yield from _metric_families(self.view.in_loop(self.view.counters))


def metrics_text(view: WebView) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(view))
    return generate_latest(registry)


# --------------------------------------------------------------------------------------------------
# The page


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:0 2em 3em;color:#1d232b;background:#fbfbfa}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em;border-bottom:1px solid #d8dce1}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}th{border-bottom:1px solid #c9ced4}
tr:nth-child(even) td{background:#f2f3f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
.mono{font-family:ui-monospace,monospace;font-size:12.5px}.drop td:first-child{border-left:3px solid #c0392b}
.note{color:#5b6571}"""


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    h = "".join(f"<th>{escape(x)}</th>" for x in head)
    body = "".join(
        f"<tr class='{cls}'>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{h}</tr>{body}</table>"


def render_page(s: dict[str, Any], view: WebView) -> str:
    c = s["counters"]
    ifs = [
        [n, k["rx_packets"], k["rx_bytes"], k["tx_packets"], k["tx_bytes"], k["rx_errors"] + k["tx_errors"]]
        for n, k in c["interfaces"].items()
    ]
    fast = c["fast_path"] or {}
    conns = s["connections"]
    pages = max(1, -(-conns["total"] // conns["per_page"]))
    nav = " ".join(
        f"<a href='/?page={p}'>{p + 1}</a>" if p != conns["page"] else f"<b>{p + 1}</b>"
        for p in range(min(pages, 50))
    )
    drops = [
        [
            time.strftime("%H:%M:%S", time.gmtime(d["time"])),
            d["reason"],
            f"{d['interface']} {d['from']} → {d['to']}",
            d["message"],
            f"line {d['line']['line']}: {d['line']['text']}" if d["line"] else "(default)",
            d["hint"] or "",
        ]
        for d in s["recent_drops"][:50]
    ]
    conn_rows = [
        [r["protocol"], r["outside"], r["inside"], r["idle"], r["bytes"], r["flags"]] for r in conns["rows"]
    ]
    xlate_rows = [[x["real"], x["mapped"], x["kind"], x["idle"]] for x in s["translations"]]
    drop_head = ["time", "reason", "packet", "why", "configuration", "to let it through"]
    name = escape(view.fw.policy.hostname or "firewall")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2"><title>statewall: {name}</title><style>{_CSS}</style></head><body>
<h1>statewall {name} <small class="note">up {c["uptime"]:.0f} s; read-only;
refreshed every 2 s; <a href="/report">timeline and ladders</a> <a href="/metrics">/metrics</a>
<a href="/state.json">/state.json</a></small></h1>
<h2>Counters</h2>
<p><b id="conns">{c["connections"]}</b> connections ({c["embryonic"]} embryonic,
{c["connections_most_used"]} most used), <b id="xlates">{c["translations"]}</b> translations,
{sum(c["drops"].values())} packets dropped; fast path: {fast.get("connections", 0)} connections,
{fast.get("packets", 0)} packets.</p>
{_table(["interface", "rx packets", "rx bytes", "tx packets", "tx bytes", "errors"], ifs)}
<h2>Drops by reason</h2>{_table(["reason", "packets"], [[r, n] for r, n in c["drops"].items()])}
<h2>Recent drops</h2>{_table(drop_head, drops, "drop")}
<h2>Connections <small class="note">{conns["total"]}; page {nav}</small></h2>
{_table(["proto", "outside", "inside", "idle s", "bytes", "flags"], conn_rows)}
<h2>Translations</h2>{_table(["real", "mapped", "kind", "idle s"], xlate_rows)}
</body></html>"""


def report_page(view: WebView) -> bytes:
    """/report: the report of the recording so far (module docstring), or why there is none."""
    rec = view.recorder
    if rec is None:
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>statewall: no report</title>"
            f"<style>{_CSS}</style></head><body><h1>No timeline or ladders for this run</h1><p>They are "
            "drawn from the run's packets, which only a recording keeps: start <code>statewall run</code> "
            "with <code>--record OUTDIR</code>. <a href='/'>Back to the live view</a>.</p></body></html>"
        ).encode()
    from ..report import build_model, render

    outdir = view.in_loop(rec.sync)
    model = build_model(outdir)
    model["title"] = f"statewall run {view.fw.policy.hostname or ''}: the run so far (reload for more)"
    return render(model).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass  # the firewall's log is its events; requests are not events

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def _refuse(self) -> None:
        self._send(
            405, b"read-only: GET and HEAD only\n", "text/plain", head=False, extra={"Allow": "GET, HEAD"}
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _answer(self, head: bool) -> None:
        view = self.server.view
        view.requests += 1
        url = urlsplit(self.path)
        try:
            if url.path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._send(200, metrics_text(view), CONTENT_TYPE_LATEST, head)
            elif url.path == "/report":
                self._send(200, report_page(view), "text/html; charset=utf-8", head)
            elif url.path in ("/", "/index.html", "/state.json"):
                q = parse_qs(url.query)
                try:
                    page = max(0, int(q.get("page", ["0"])[0]))
                except ValueError:
                    page = 0
                s = view.in_loop(lambda: view.state(page))
                if url.path == "/state.json":
                    body = json.dumps(s, default=str).encode()
                    self._send(200, body, "application/json", head)
                else:
                    self._send(200, render_page(s, view).encode(), "text/html; charset=utf-8", head)
            else:
                self._send(404, b"not found\n", "text/plain", head)
        except TimeoutError as exc:
            self._send(503, f"{exc}\n".encode(), "text/plain", head)
        except Exception as exc:  # noqa: BLE001 -- a view that fails says so; the firewall goes on
            self._send(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain", head)

    def _send(self, code: int, body: bytes, ctype: str, head: bool, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)
