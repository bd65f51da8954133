"""``report.html``: a replay seen as an engineer would draw it.

``write_report(outdir)`` reads a replay's output directory (``statewall.replay`` writes it) and writes
``OUTDIR/report.html``: one self-contained page with the summary, the drops by reason (each with the
configuration line responsible and the change that would let the packet through), a filterable timeline
of the connections, a ladder diagram per connection (drawn on demand), the configuration with its hit
counts, and the plain sentences of what happened to each connection.

    build.py    the model: events.jsonl, arrived/*.pcap, <iface>.pcap and summary.json put together
    narrate.py  "What happened" sentences per connection
    fixes.py    a drop's hint as configuration to paste
    records.py  events.jsonl lines back into events (their syslog lines through statewall.logfmt)
    html.py     the page (page.css and page.js inline)
"""

from __future__ import annotations

import os
from pathlib import Path

from .build import build_model
from .html import render

REPORT_NAME = "report.html"


def write_report(outdir: str | os.PathLike[str], config_text: str | None = None) -> Path:
    """Write ``OUTDIR/report.html`` from the replay results in OUTDIR; returns its path.

    ``config_text`` is the configuration the replay ran (for the hit counts); without it the file named
    in ``summary.json`` is read when it exists."""
    out = Path(outdir)
    path = out / REPORT_NAME
    tmp = out / (REPORT_NAME + ".tmp")
    tmp.write_text(render(build_model(out, config_text)), encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["REPORT_NAME", "build_model", "render", "write_report"]
