// statewall report: the connection list, its timeline and filters, and the ladder diagrams, drawn
// from the JSON in #report-data. Nothing is fetched: the page works from a file, offline.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 100, LADDER_PAGE = 400;
  const ARRIVED = 0, LEFT = 1, DROPPED = 2, DROP_ONLY = 3;
  const PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"};
  const SVGNS = "http://www.w3.org/2000/svg";
  const byId = new Map(D.conns.map((c) => [c.id, c]));
  let shown = D.conns, page = 0;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  const sock = (a, p, proto) => (proto === 6 || proto === 17 ? `${a}/${p}` : a);
  const name = (c) => (c.id < 0 ? `denied ${-c.id}` : `${c.id}`);
  function flags(f, proto) {
    if (proto !== 6) return PROTO[proto] === "ICMP" || PROTO[proto] === "ICMPv6" ? `type ${f}` : "";
    let s = "";
    for (const [bit, ch] of [[2, "S"], [1, "F"], [4, "R"], [8, "P"], [16, "A"], [32, "U"]]) if (f & bit) s += ch;
    return s || ".";
  }

  // ---- filters, pagination, timeline ----------------------------------------------------------
  const fHost = document.getElementById("f-host"), fPort = document.getElementById("f-port");
  const fIf = document.getElementById("f-iface"), fV = document.getElementById("f-verdict");
  const ifaces = new Set(), verdicts = new Set();
  for (const c of D.conns) { ifaces.add(c.i.interface); ifaces.add(c.r.interface); verdicts.add(c.v); }
  for (const i of [...ifaces].sort()) fIf.append(el("option", {value: i, text: i}));
  for (const v of [...verdicts].sort()) fV.append(el("option", {value: v, text: v}));

  function matches(c, host, port, iface, verdict) {
    if (verdict && c.v !== verdict) return false;
    if (iface && c.i.interface !== iface && c.r.interface !== iface) return false;
    if (port && ![c.i.port, c.i.mapped_port, c.r.port, c.r.mapped_port].includes(port)) return false;
    if (host && ![c.i.address, c.i.mapped_address, c.r.address, c.r.mapped_address].some((a) => a.includes(host)))
      return false;
    return true;
  }
  function applyFilters() {
    const host = fHost.value.trim(), port = parseInt(fPort.value, 10) || 0;
    shown = D.conns.filter((c) => matches(c, host, port, fIf.value, fV.value));
    page = 0;
    renderList();
  }
  let timer = 0;
  for (const f of [fHost, fPort, fIf, fV]) {
    f.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(applyFilters, 150); });
  }
  document.getElementById("prev").addEventListener("click", () => { if (page > 0) { page--; renderList(); } });
  document.getElementById("next").addEventListener("click", () => {
    if ((page + 1) * PAGE < shown.length) { page++; renderList(); }
  });

  function renderList() {
    const body = document.getElementById("conn-rows");
    const story = document.getElementById("stories");
    body.replaceChildren(); story.replaceChildren();
    const span = D.span > 0 ? D.span : 1;
    const slice = shown.slice(page * PAGE, (page + 1) * PAGE);
    for (const c of slice) {
      const left = (100 * c.t0) / span, width = Math.max(0.4, (100 * (c.t1 - c.t0)) / span);
      const bar = el("div", {class: "track"}, el("div", {
        class: `bar v-${c.v}`, style: `left:${Math.min(left, 99.6)}%;width:${Math.min(width, 100 - Math.min(left, 99.6))}%`,
        title: `${c.t0.toFixed(3)} s to ${c.t1.toFixed(3)} s`,
      }));
      const drops = Object.entries(c.drops).map(([r, n]) => `${r} ×${n}`).join(", ");
      const tr = el("tr", {class: "conn", "data-id": String(c.id)},
        el("td", {text: name(c) + (c.master !== undefined ? ` (data of ${c.master})` : "")}),
        el("td", {text: PROTO[c.p] || String(c.p)}),
        el("td", {text: `${c.i.interface}:${sock(c.i.address, c.i.port, c.p)}`}),
        el("td", {text: `${c.r.interface}:${sock(c.r.address, c.r.port, c.p)}`}),
        el("td", {class: `verdict v-${c.v}`, text: c.v}),
        el("td", {class: "num", text: String(c.n[0][0] + c.n[0][2] + c.n[1][0] + c.n[1][2])}),
        el("td", {class: "drops", text: drops}), el("td", {class: "tl"}, bar));
      tr.addEventListener("click", () => openConn(c.id, true));
      body.append(tr);
      if (c.story) {
        story.append(el("li", {"data-id": String(c.id)}, el("a", {href: `#conn=${c.id}`, text: `${name(c)}: `}),
          c.story.join(" ")));
      }
    }
    const n = shown.length;
    document.getElementById("page-info").textContent = n
      ? `${page * PAGE + 1}–${Math.min(n, (page + 1) * PAGE)} of ${n}` : "no connection matches";
  }

  // ---- the ladder -----------------------------------------------------------------------------
  const W = 1200, XL = 160, XF = 600, XR = 1040, ROW = 24, TOP = 64;

  function relBases(rows) {
    // Sequence numbers relative to the first one seen per interface side and direction (the ISN when
    // the SYN is there), as Wireshark shows them.
    const base = {};
    for (const r of rows) {
      const k = `${r[1]}:${r[3]}`;
      if (!(k in base) && (r[2] !== DROP_ONLY)) base[k] = r[5];
    }
    return base;
  }
  const rel = (x, b) => (b === undefined ? x : (x - b + 4294967296) % 4294967296);

  function label(c, r, base) {
    const [, side, , dir, f, seq, ack, len] = r;
    if (c.p !== 6) return `${flags(f, c.p)} len ${len}`.trim();
    const s = rel(seq, base[`${side}:${dir}`]), a = rel(ack, base[`${side}:${1 - dir}`]);
    let t = `${flags(f, 6)} seq ${s} (${seq})`;
    if (f & 16) t += ` ack ${a}`;
    return t + ` len ${len}`;
  }

  function ladder(c, from) {
    const rows = c.rows || [];
    const items = [];
    for (const r of rows.slice(from, from + LADDER_PAGE)) items.push({t: r[0], r});
    const t0 = items.length ? items[0].t : 0, t1 = items.length ? items[items.length - 1].t : Infinity;
    for (const [t, line] of c.log || []) if (t >= t0 && (t <= t1 || from + LADDER_PAGE >= rows.length)) items.push({t, line});
    items.sort((a, b) => a.t - b.t || (a.line ? 1 : 0) - (b.line ? 1 : 0));
    const base = relBases(rows);
    // Lay out: a forwarded packet's arrival and departure share a row.
    let y = TOP, prev = null;
    const placed = [];
    for (const it of items) {
      if (it.line) { y += ROW; placed.push({...it, y}); prev = null; continue; }
      const r = it.r;
      if (prev && r[2] === LEFT && prev.r[2] === ARRIVED && prev.r[0] === r[0] && prev.r[1] !== r[1] && !prev.out) {
        prev.out = true; placed.push({...it, y: prev.y}); continue;
      }
      y += ROW;
      const p = {...it, y};
      placed.push(p);
      prev = r[2] === ARRIVED ? p : null;
      if (r[2] === DROPPED || r[2] === DROP_ONLY) { y += ROW * (2 + ((D.drops[r[8]] || {}).fixes || []).length); prev = null; }
    }
    const H = y + ROW * 2;
    const svg = sv("svg", {class: "ladder", "data-conn": String(c.id), width: W, height: H, viewBox: `0 0 ${W} ${H}`});
    const iside = `${c.i.interface}: ${sock(c.i.address, c.i.port, c.p)} ⇄ ${sock(c.r.mapped_address, c.r.mapped_port, c.p)}`;
    const rside = `${c.r.interface}: ${sock(c.i.mapped_address, c.i.mapped_port, c.p)} ⇄ ${sock(c.r.address, c.r.port, c.p)}`;
    svg.append(sv("text", {x: XL, y: 18, class: "host"}, sock(c.i.address, c.i.port, c.p)));
    svg.append(sv("text", {x: XF, y: 18, class: "host fw"}, "firewall"));
    svg.append(sv("text", {x: XR, y: 18, class: "host"}, sock(c.r.address, c.r.port, c.p)));
    svg.append(sv("text", {x: (XL + XF) / 2, y: 40, class: "side"}, iside));
    svg.append(sv("text", {x: (XF + XR) / 2, y: 40, class: "side"}, rside));
    for (const x of [XL, XF, XR]) svg.append(sv("line", {x1: x, y1: 50, x2: x, y2: H - 10, class: x === XF ? "axis fw" : "axis"}));
    for (const p of placed) {
      if (p.line) {
        svg.append(sv("rect", {x: 4, y: p.y - 9, width: W - 8, height: 16, class: "logbg"}));
        svg.append(sv("text", {x: 8, y: p.y + 3, class: "syslog"}, `+${(p.t / 1e6).toFixed(6)}  ${p.line}`));
        continue;
      }
      const r = p.r, side = r[1], kind = r[2];
      const host = side === 0 ? XL : XR, dx = side === 0 ? 1 : -1;
      const g = sv("g", {class: `arrow k${kind}`, "data-kind": ["arrived", "left", "dropped", "held"][kind], "data-side": String(side)});
      if (kind === ARRIVED || kind === DROPPED) {
        const x2 = kind === DROPPED ? XF - dx * 14 : XF;
        g.append(sv("line", {x1: host, y1: p.y, x2, y2: p.y + 8, "marker-end": kind === DROPPED ? "url(#xhead)" : "url(#head)"}));
      } else if (kind === LEFT) {
        g.append(sv("line", {x1: XF, y1: p.y, x2: host, y2: p.y + 8, "marker-end": "url(#head)"}));
      }
      const mid = (host + XF) / 2;
      if (kind !== DROP_ONLY) g.append(sv("text", {x: mid, y: p.y - 3, class: "lbl"}, label(c, r, base)));
      g.append(sv("title", {}, `t=+${(r[0] / 1e6).toFixed(6)} s  ${label(c, r, base)}`));
      svg.append(g);
      if (kind === DROPPED || kind === DROP_ONLY) {
        const d = D.drops[r[8]] || {};
        const m = sv("g", {class: "drop", "data-reason": d.reason || ""});
        m.append(sv("text", {x: XF - 10, y: p.y + 13, class: "x"}, "✖"));
        let yy = p.y + ROW;
        const nlines = 2 + (d.fixes || []).length;
        m.prepend(sv("rect", {x: 34, y: yy - 15, width: W - 40, height: nlines * ROW, class: "dropbg"}));
        const head = `${d.asa_id ? "%ASA-" + d.asa_id + " " : ""}${d.reason || "dropped"}: ${d.message || d.description || ""}`;
        m.append(sv("text", {x: 40, y: yy, class: "why"}, head.length > 170 ? head.slice(0, 169) + "…" : head));
        m.append(sv("title", {}, head));
        yy += ROW;
        const line = d.origin ? `line ${d.origin.line}: ${d.origin.text}` : "no configuration line: a default of the box";
        m.append(sv("text", {x: 40, y: yy, class: "cfg"}, d.consequence ? d.consequence : `caused by ${line}`));
        for (const fx of d.fixes || []) {
          yy += ROW;
          m.append(sv("text", {x: 40, y: yy, class: "fix"}, `fix: ${fx.title}` + (fx.config && fx.config !== fx.title ? "  (the commands are below)" : "")));
        }
        svg.append(m);
      }
    }
    const defs = sv("defs");
    for (const [id, cls] of [["head", "hd"], ["xhead", "hd x"]]) {
      const mk = sv("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"});
      mk.append(sv("path", {d: "M0,0 L10,5 L0,10 z", class: cls}));
      defs.append(mk);
    }
    svg.prepend(defs);
    return svg;
  }

  function dropList(c) {
    const ids = (c.rows || []).filter((r) => r[2] === DROPPED || r[2] === DROP_ONLY).map((r) => r[8]);
    if (!ids.length) return null;
    const box = el("div", {class: "droplist"}, el("h4", {text: "Drops on this connection"}));
    const seen = new Set();
    for (const k of ids) {
      const d = D.drops[k];
      if (!d || seen.has(d.reason + d.hint)) continue;
      seen.add(d.reason + d.hint);
      const div = el("div", {class: "dropbox"},
        el("p", {class: "why", text: `${d.asa_id ? "%ASA-" + d.asa_id + " " : ""}${d.reason} (${d.description}): ${d.message}`}),
        d.consequence ? el("p", {class: "cfg consequence", text: d.consequence}) :
          el("p", {class: "cfg", text: d.origin ? `configuration line ${d.origin.line}: ${d.origin.text}` : "no configuration line: the box's default"}),
        d.hint ? el("p", {class: "hint", text: `to let it through: ${d.hint}`}) : null);
      for (const fx of d.fixes || []) {
        div.append(el("p", {class: "fixtitle", text: `fix: ${fx.title}`}));
        if (fx.config) div.append(el("pre", {class: "fix", text: fx.config}));
      }
      box.append(div);
    }
    return box;
  }

  function openConn(id, scroll) {
    const c = byId.get(id);
    const panel = document.getElementById("detail");
    panel.replaceChildren();
    if (!c) { panel.append(el("p", {text: `no connection ${id} in this report`})); return; }
    const links = [];
    if (c.master !== undefined) links.push(el("span", {}, "data connection of FTP control connection ", el("a", {href: `#conn=${c.master}`, class: "master", text: String(c.master)})));
    if (c.children) {
      const s = el("span", {class: "children"}, "data connections: ");
      c.children.forEach((k, n) => { if (n) s.append(", "); s.append(el("a", {href: `#conn=${k}`, text: String(k)})); });
      links.push(s);
    }
    panel.append(el("h3", {text: `Connection ${name(c)} — ${PROTO[c.p] || c.p} ${c.dir}, ${c.v}`}));
    if (links.length) panel.append(el("p", {class: "links"}, ...links));
    if (c.story) panel.append(el("ul", {class: "story"}, ...c.story.map((s) => el("li", {text: s}))));
    if (!c.rows) {
      panel.append(el("p", {class: "note", text: `Packets not kept for this connection: only the first ${D.detail_limit} connections (those with drops first) have ladders; its packets are in the output captures.`}));
    } else {
      const holder = el("div", {class: "ladder-holder"});
      const nav = el("p", {class: "note"});
      let from = 0;
      const draw = () => {
        holder.replaceChildren(ladder(c, from));
        nav.replaceChildren(`packets ${from + 1}–${Math.min(c.rows.length, from + LADDER_PAGE)} of ${c.rows.length} kept` + (c.omitted ? ` (${c.omitted} more in the middle left out: see the captures)` : ""));
        if (from > 0) { const b = el("button", {text: "earlier"}); b.onclick = () => { from -= LADDER_PAGE; draw(); }; nav.append(" ", b); }
        if (from + LADDER_PAGE < c.rows.length) { const b = el("button", {text: "later"}); b.onclick = () => { from += LADDER_PAGE; draw(); }; nav.append(" ", b); }
      };
      draw();
      panel.append(nav, holder);
      const dl = dropList(c);
      if (dl) panel.append(dl);
    }
    if (scroll === true) history.replaceState(null, "", `#conn=${c.id}`);
    if (scroll) panel.scrollIntoView();
  }

  function fromHash() {
    const m = /conn=(-?\d+)/.exec(location.hash);
    if (m) openConn(parseInt(m[1], 10), false);
  }
  window.addEventListener("hashchange", fromHash);
  document.getElementById("conn-count").textContent = String(D.conns.filter((c) => c.id > 0).length);
  renderList();
  fromHash();
  // Milliseconds from the start of navigation until the page was drawn (read by the browser test).
  document.body.dataset.drawnMs = performance.now().toFixed(0);
})();
