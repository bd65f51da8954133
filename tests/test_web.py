"""The web view of a running firewall (``statewall run --http``): its page, /state.json and /metrics.

Without root the view is attached to a loop with no TUN, and packets are handed to the engine in the
loop's thread as the TUN reads would; as root ``statewall run --http 127.0.0.1:0`` forwards a real
transfer between namespaces while the test scrapes /metrics, and the counters move.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import IP, TCP

from fixtures import ASA_BROWSING_PAT
from requires import live_reason
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.live.loop import Loop
from statewall.live.web import WebView, parse_listen

ASA = ASA_BROWSING_PAT


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_listen_address_is_loopback_unless_given() -> None:
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    for bad in ("localhost:80", "1.2.3.4:99999", "x"):
        with pytest.raises(ValueError):
            parse_listen(bad)


@pytest.fixture
def view():
    fw = Firewall(parse_policy(ASA, "web.cfg"))
    loop = Loop(fw, [])
    web = WebView(fw, loop, "127.0.0.1", 0)
    web.start()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        loop.stop()
        thread.join(5)
        web.close()
        loop.close()


def test_metrics_count_what_the_engine_did_in_the_loop(view: WebView) -> None:
    fw = view.fw
    base = view.url
    before = samples(get(base + "metrics")[2])
    assert before[("statewall_connections", ())] == 0

    def traffic() -> None:
        # As the loop's TUN reads would: the engine called in the loop thread, its events to the loop.
        now = view.loop.now()
        for dport in (80, 22):
            pkt = bytearray(bytes(IP(src="10.1.1.5", dst="198.51.100.9") / TCP(sport=40000, dport=dport)))
            res = fw.receive("inside", pkt, now)
            view.loop._events(res.events)

    view.in_loop(traffic)
    status, ctype, text = get(base + "metrics")
    assert status == 200 and ctype.startswith("text/plain")
    after = samples(text)
    assert after[("statewall_connections", ())] == 1
    assert after[("statewall_embryonic_connections", ())] == 1
    assert after[("statewall_translations", ())] == 1
    assert after[("statewall_drops_total", (("reason", "acl-drop"),))] == 1
    assert after[("statewall_connections_built_total", ())] == 1
    # The recent drops on the page: the packet, the line that refused it, the change that would let it by.
    status, ctype, page = get(base)
    assert status == 200 and "text/html" in ctype
    assert "acl-drop" in page and "10.1.1.5/40000 → 198.51.100.9/22" in page
    assert "access-group INSIDE_IN in interface inside" in page
    state = __import__("json").loads(get(base + "state.json")[2])
    assert state["connections"]["total"] == 1 and state["recent_drops"][0]["line"]["line"] == 12
    assert state["connections"]["rows"][0]["inside"] == "inside:10.1.1.5/40000"


def test_the_view_is_read_only(view: WebView) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert get(view.url, method)[0] == 405
    assert get(view.url + "nothing-here")[0] == 404


def test_the_report_page_draws_a_recorded_run_so_far_and_says_why_not_without_a_recording(
    view: WebView, tmp_path: Path
) -> None:
    import json

    from statewall.live.record import Recorder

    status, _, page = get(view.url + "report")
    assert status == 200 and "--record OUTDIR" in page
    fw = view.fw
    rec = view.recorder = Recorder(tmp_path / "rec", fw.policy, view.loop.now)

    def traffic() -> None:
        # As the loop does with --record: each arrival and departure to the recorder, events too.
        now = round(view.loop.now(), 6)
        for dport in (80, 22):
            pkt = bytearray(bytes(IP(src="10.1.1.5", dst="198.51.100.9") / TCP(sport=40000, dport=dport)))
            rec.hook("inside")(pkt, now, False)
            res = fw.receive("inside", pkt, now)
            for iface, out in res.packets:
                rec.hook(iface)(out, None, True)
            rec.events(res.events)
            view.loop._events(res.events)

    view.in_loop(traffic)
    status, ctype, page = get(view.url + "report")
    assert status == 200 and "text/html" in ctype
    data = json.loads(
        page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>")[0]
    )
    assert "the run so far" in page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    (conn,) = [c for c in data["conns"] if c["id"] > 0]
    assert conn["r"]["port"] == 80 and [(r[1], r[2]) for r in conn["rows"]] == [(0, 0), (1, 1)]
    (denied,) = [c for c in data["conns"] if c["v"] == "denied"]
    assert denied["r"]["port"] == 22 and denied["rows"][0][2] == 2  # the SYN, dropped: acl-drop
    assert 'data-reason="acl-drop"' in page.split('<section id="reasons">', 1)[1]
    assert 'href="/report"' in get(view.url)[2]
    rec.close(report=False)


# --------------------------------------------------------------------------------------------------
# Live: statewall run --http, scraped during a transfer

ROOT_REASON = live_reason("ip")


@pytest.mark.root
@pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")
@pytest.mark.timeout(120)
def test_metrics_move_during_a_transfer(tmp_path: Path) -> None:
    from statewall.lab import transfer
    from statewall.lab.netns import Lab
    from statewall.lab.scenarios.smoke import CONFIG
    from statewall.lab.topology import OUTSIDE, FirewallTopology

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        topo.start_firewall(str(cfg), extra=["--http", "127.0.0.1:0", "--no-ctl"])
        deadline = time.monotonic() + 10
        url = None
        while url is None and time.monotonic() < deadline:
            url = next((ln.split()[4] for ln in topo.firewall_output if "web view" in ln), None)
            time.sleep(0.05)
        assert url and url.startswith("http://127.0.0.1:"), topo.firewall_output

        def rx(s: dict) -> float:
            return s[("statewall_interface_packets_total", (("direction", "rx"), ("interface", "inside")))]

        first = samples(get(url + "metrics")[2])
        result: list = []
        nbytes = 128 << 20
        t = threading.Thread(
            target=lambda: result.append(
                transfer.between(topo.host("inside"), topo.host("outside"), OUTSIDE.host, nbytes, timeout=60)
            )
        )
        t.start()
        during = []
        while t.is_alive():
            during.append(samples(get(url + "metrics")[2]))
            time.sleep(0.02)
        t.join()
        last = samples(get(url + "metrics")[2])
        assert topo.stop_firewall() == 0
    sent, received = result[0]
    assert sent["error"] is None and received["bytes"] == nbytes, result
    # Scraped while the transfer ran: the connection was in the table and the counters kept rising.
    assert any(s[("statewall_connections", ())] >= 1 for s in during), during
    values = [rx(first)] + [rx(s) for s in during] + [rx(last)]
    assert values == sorted(values) and values[-1] > values[0]
    assert len({v for v in values}) >= 3, values  # it moved while we watched, not only at the end
    in_bytes = last[("statewall_interface_bytes_total", (("direction", "rx"), ("interface", "inside")))]
    assert in_bytes >= nbytes
    fast = ("statewall_fastpath_packets_total", ())
    if fast in last:
        assert last[fast] > first[fast]
