"""The report's model as one self-contained HTML file: the CSS, the script and the data inline, no
request to anything (the page works offline, from a file).

The summary, the drops by reason and the configuration are written here as HTML; the connection list
(timeline, filters, pages of 100) and each connection's ladder diagram (SVG, drawn when the connection
is opened, a few hundred packets at a time) are drawn by ``page.js`` from the JSON in
``#report-data``, so a capture of a million packets still gives a page that opens at once.
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from typing import Any


def _asset(name: str) -> str:
    return (resources.files("statewall.report") / name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    # "<" escaped: nothing in the data can end the script element or open a comment.
    return json.dumps(obj, separators=(",", ":"), default=str).replace("<", "\\u003c")


def _card(value: Any, what: str) -> str:
    return f'<div class="card"><b>{escape(str(value))}</b><span>{escape(what)}</span></div>'


def _summary(m: dict[str, Any]) -> str:
    s = m["summary"]
    conns = s.get("connections") or {}
    xl = s.get("xlates") or {}
    verdicts: dict[str, int] = {}
    for c in m["conns"]:
        verdicts[c["v"]] = verdicts.get(c["v"], 0) + 1
    cards = [
        _card(s.get("packets_in", 0), "packets in"),
        _card(s.get("forwarded", 0), "forwarded"),
        _card(s.get("dropped", m["drops_total"]), "dropped"),
        '<div class="card"><b id="conn-count">'
        + escape(str(sum(1 for c in m["conns"] if c["id"] > 0)))
        + "</b><span>connections</span></div>",
        _card(conns.get("torn_down", 0), "torn down"),
        _card(f"{xl.get('built', 0)} / {xl.get('torn_down', 0)}", "translations built / freed"),
    ]
    if s.get("held"):
        cards.append(_card(s["held"], "held (neither forwarded nor dropped yet)"))
    legend = " ".join(
        f'<span class="v-{escape(v)}">{escape(v)} {n}</span>' for v, n in sorted(verdicts.items())
    )
    caps = "".join(
        f"<li><code>{escape(str(c.get('path')))}</code>: {escape(str(c.get('ip', '?')))} IP packets, "
        f"ingress {escape(str(c.get('ingress')))}</li>"
        for c in s.get("captures", [])
    )
    notes = []
    if m["unlisted_conns"]:
        notes.append(f"{m['unlisted_conns']} further connections are counted but not listed.")
    if m["other_packets"]:
        notes.append(
            f"{m['other_packets']} packets belong to no listed connection (ICMP errors, fragments, ...)."
        )
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{"".join(cards)}</div>'
        f'<p class="legend">Verdicts: {legend}</p>'
        + (f"<ul class='note'>{caps}</ul>" if caps else "")
        + "".join(f"<p class='note'>{escape(n)}</p>" for n in notes)
        + "</section>"
    )


def _reasons(m: dict[str, Any]) -> str:
    if not m["reasons"]:
        return '<section id="reasons"><h2>Drops by reason</h2><p>Nothing was dropped.</p></section>'
    parts = ['<section id="reasons"><h2>Drops by reason</h2>']
    for r in m["reasons"]:
        ex = r["example"] or {}
        lines = "".join(
            f"<li><code>line {ln['line']}: {escape(ln['text'])}</code> ({ln['count']})</li>"
            for ln in r["lines"]
        )
        if r["unattributed"]:
            lines += (
                f"<li>{r['unattributed']} with no configuration line (the box's default behaviour"
                + (f": {escape(ex.get('message', ''))}" if ex.get("message") and not r["lines"] else "")
                + ")</li>"
            )
        hints = "".join(f"<li>{escape(h)}</li>" for h in r["hints"])
        fixes = "".join(
            f"<p class='fixtitle'>fix: {escape(f['title'])}</p>"
            + (f"<pre class='fix'>{escape(f['config'])}</pre>" if f["config"] else "")
            for f in ex.get("fixes") or []
        )
        where = ""
        if ex:
            conn = ex.get("conn")
            link = f' <a href="#conn={conn}">connection {conn}</a>' if conn is not None and conn > 0 else ""
            where = (
                f"<p class='note'>first: {escape(ex['interface'])} {escape(ex['src'])}/{ex['sport']} to "
                f"{escape(ex['dst'])}/{ex['dport']}{link}</p>"
            )
        asa = f"%ASA-{ex['asa_id']} " if ex.get("asa_id") else ""
        if "under" in r:
            # Every drop of this reason is a consequence of an earlier drop: inside its cause's entry,
            # with no fix of its own.
            causes = ", ".join(r.get("caused_by") or [r["under"]])
            block = (
                f'<div class="reason consequence" data-reason="{escape(r["reason"])}" '
                f'data-under="{escape(r["under"])}">'
                f"<h4>{escape(asa)}{escape(r['reason'])}: {escape(r['description'])} — {r['count']}, "
                f"consequences of the {escape(causes)} drops</h4>{where}"
                f"<p class='note'>{escape((ex.get('consequence') or '').capitalize())}.</p></div>"
            )
            if parts and parts[-1].endswith("</div>") and parts[-1].startswith('<div class="reason'):
                parts[-1] = parts[-1][: -len("</div>")] + block + "</div>"
            else:
                parts.append(block)
            continue
        partly = (
            f"<p class='note'>{r['consequences']} of them are consequences of earlier drops on their "
            "connection (marked on the ladders), with no fix of their own.</p>"
            if r.get("consequences")
            else ""
        )
        parts.append(
            f'<div class="reason" data-reason="{escape(r["reason"])}">'
            f"<h3>{escape(asa)}{escape(r['reason'])}: "
            f"{escape(r['description'])} — {r['count']}</h3>{where}{partly}"
            + (f"<p>Configuration:</p><ul>{lines}</ul>" if lines else "")
            + (f"<p>What would let it through:</p><ul>{hints}</ul>{fixes}" if hints else "")
            + "</div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _config(m: dict[str, Any]) -> str:
    cfg = m["config"]
    if not cfg["lines"]:
        return (
            '<section id="config"><h2>Configuration</h2><p class="note">The configuration file was not '
            "available (give it to <code>statewall report -c</code>).</p></section>"
        )
    rows = []
    for line, text, hits, drops in cfg["lines"]:
        dr = ", ".join(f"{r} ×{n}" for r, n in drops.items())
        cls = ' class="caused"' if drops else ""
        rows.append(
            f"<tr{cls} data-line='{line}'><td class='num'>{line}</td><td class='mono'>{escape(text)}</td>"
            f"<td class='num hit'>{f'(hitcnt={hits})' if hits else ''}</td>"
            f"<td class='dr'>{escape(dr)}</td></tr>"
        )
    note = (
        ""
        if cfg["complete"]
        else "<p class='note'>The configuration file was not available: only the lines the events name.</p>"
    )
    return (
        f'<section id="config"><h2>Configuration <small class="note">{escape(cfg["name"])}</small></h2>{note}'
        "<p class='note'>hitcnt: connections a line permitted or translations it made, as <code>show "
        "access-list</code> counts them; lines in red caused drops.</p>"
        f"<table class='config'><tr><th class='num'>line</th><th>text</th><th class='num'>hits</th>"
        f"<th>drops</th></tr>{''.join(rows)}</table></section>"
    )


def _page_data(model: dict[str, Any]) -> dict[str, Any]:
    """What the script needs (the rest is already HTML)."""
    return {k: model[k] for k in ("conns", "drops", "span", "detail_limit")}


def render(model: dict[str, Any]) -> str:
    """The whole page for ``build_model``'s result."""
    title = escape(model["title"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="generator" content="statewall report">
<title>{title}</title><style>{_asset("page.css")}</style></head>
<body>
<h1>{title}</h1>
<p class="sub">configuration {escape(str(model["summary"].get("config") or "?"))};
{model["span"]:.3f} s of traffic</p>
{_summary(model)}
{_reasons(model)}
<section id="conns"><h2>Connections</h2>
<div class="filters">
 <label>host <input id="f-host" placeholder="address" size="16"></label>
 <label>port <input id="f-port" placeholder="port" size="6"></label>
 <label>interface <select id="f-iface"><option value="">any</option></select></label>
 <label>verdict <select id="f-verdict"><option value="">any</option></select></label>
 <button id="prev">◀</button><span id="page-info"></span><button id="next">▶</button>
</div>
<table id="conn-table"><thead><tr><th>#</th><th>proto</th><th>initiator</th><th>responder</th><th>verdict</th>
<th class="num">packets</th><th>drops</th><th>timeline</th></tr></thead><tbody id="conn-rows"></tbody></table>
<p class="note">Click a connection for its ladder: both hosts and the firewall, each packet as it arrived and
as it left, with the addresses each side saw.</p>
<div id="detail"><p class="note">No connection open.</p></div>
</section>
<section id="what"><h2>What happened</h2><ul id="stories"></ul></section>
{_config(model)}
<script type="application/json" id="report-data">{_json_for_script(_page_data(model))}</script>
<script>{_asset("page.js")}</script>
</body></html>
"""
