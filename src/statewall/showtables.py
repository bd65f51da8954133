"""The ASA's ``show`` commands over a firewall's tables: one adapter for every place that shows them
(``statewall show CMD --after-replay``, ``replay --show``, ``statewall ctl``).

This module reads the engine's tables and counters (connections, translations, ACE hit counts, drop
counters) into the record types of ``statewall.logfmt``, which owns the text; the configuration's
``ASA Version`` picks the release form. Per-interface packet counts come from the caller (the replay
counts what entered and left each interface; the live loop its TUN ports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .logfmt import show as fmt
from .logfmt.asa import (
    ConnRecord,
    format_show_conn,
    format_show_conn_count,
    format_show_xlate,
    release_of,
)
from .logfmt.counters import format_show_asp_drop
from .logfmt.tables import xlate_records

# The show commands, as typed (after "show"); each takes the words that follow it.
COMMANDS = (
    "conn",
    "conn detail",
    "conn count",
    "xlate",
    "local-host",
    "access-list",
    "nat",
    "route",
    "interface",
    "asp drop",
)


class ShowError(Exception):
    """An unknown show command or argument."""


@dataclass(slots=True)
class InterfaceCounts:
    """Packets and bytes into and out of one interface, and the drops of packets it received."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    drops: int = 0


def _dur(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s // 60 % 60}m"
    return f"{s // 86400}D{s // 3600 % 24}h"


def _notes(c: Any) -> tuple[str, ...]:
    """statewall's own facts about a connection: translation, TCP state, the MSS each side is held to,
    class settings, sequence offsets (what the ASA's detail lines do not say)."""
    from .conntrack import ORIGINAL, REPLY

    out = [f"conn {c.id}, timeout {_dur(c.timeout) if c.timeout > 0 else 'never'} ({c.timeout_kind})"]
    ini, res = c.initiator, c.responder
    for ep in (ini, res):
        if (ep.mapped_address, ep.mapped_port) != (ep.address, ep.port):
            out.append(
                f"translated {ep.interface}:{ep.address}/{ep.port} to {ep.mapped_address}/{ep.mapped_port}"
            )
    if c.tcp is not None:
        facts = [f"tcp {c.tcp.state.name}"]
        norm = c.norm
        if norm is not None:
            held = [
                f"{ep.interface} {norm.mss_limit[d]}"
                for d, ep in ((ORIGINAL, ini), (REPLY, res))
                if norm.mss_limit[d] is not None
            ]
            if held:
                facts.append("segments held to mss " + ", ".join(held))
        out.append("; ".join(facts))
    eff = c.mpf
    if eff is not None:
        classes = ", ".join(
            f"{u.class_map} ({'global' if u.scope == 'global' else 'interface ' + u.scope})" for u in eff.uses
        )
        tcp_map = eff.tcp_map.name if eff.tcp_map is not None else "default"
        parts = [f"class {classes}" if classes else "no class", f"tcp-map {tcp_map}"]
        parts += [f"inspect {ins.engine}" for ins, _ in eff.inspects]
        out.append(", ".join(parts))
    shift = c.seqrand
    if shift is not None:
        offs = [
            f"{ep.interface} +{shift.offsets[d]:#010x}"
            for d, ep in ((ORIGINAL, ini), (REPLY, res))
            if shift.offsets[d]
        ]
        if offs:
            note = ", SACK blocks untranslated (pix-sack-bug)" if shift.sack_untranslated else ""
            out.append("sequence numbers randomized: " + ", ".join(offs) + note)
    return tuple(out)


def conn_records(fw: Any, *, detail: bool = False) -> list[ConnRecord]:
    """``show conn`` rows in connection-id order, with both ends' addresses and, for ``detail``,
    statewall's notes."""
    from .engine import asa_conn_flags

    rows = []
    for c in sorted(fw.conns, key=lambda c: c.id):
        ini, res = c.initiator, c.responder
        outside, inside = (res, ini) if c.inside_is_initiator else (ini, res)
        rows.append(
            ConnRecord(
                c.proto,
                outside.interface,
                outside.address,
                outside.port,
                inside.interface,
                inside.address,
                inside.port,
                c.last,
                c.bytes,
                asa_conn_flags(c),
                c.created,
                c.timeout,
                c.id,
                ini.address,
                res.address,
                _notes(c) if detail else (),
            )
        )
    return rows


def _acl_lines(fw: Any, name: str | None, release: tuple[int, int]) -> str:
    from .dialects.asa.render import _rule

    policy = fw.policy
    compiled = getattr(fw.acl, "compiled", {})
    hits: dict[int, int] = {}
    element_hits: dict[int, list[int]] = {}
    for rules in compiled.values():
        for cr in rules:
            hits[id(cr.rule)] = cr.hits
            element_hits[id(cr.rule)] = cr.element_hits
    acls = [policy.access_lists[name]] if name else list(policy.access_lists.values())
    records = []
    for acl in acls:
        entries = []
        for rule in acl.rules:
            objects, services = policy.network_objects, policy.service_objects
            text = _rule(rule, objects, services) if acl.kind != "standard" else rule.origin.text
            counts = element_hits.get(id(rule), [])
            elements = [
                (e.text, e.hash, counts[i] if i < len(counts) else 0)
                for i, e in enumerate(fmt.ace_elements(rule, objects, services))
            ]
            entries.append(
                fmt.AceRecord(
                    text=text,
                    hits=hits.get(id(rule), 0),
                    origin=rule.origin,
                    elements=tuple(elements),
                    inactive=rule.inactive,
                )
            )
        records.append(fmt.AclRecord(acl.name, tuple(entries)))
    return fmt.format_show_access_list(records, release=release)


def show(
    fw: Any,
    words: list[str],
    now: float | None = None,
    *,
    interfaces: Mapping[str, InterfaceCounts] | None = None,
    xlate_hits: Mapping[object, int] | None = None,
    untranslate_hits: Mapping[object, int] | None = None,
) -> str:
    """The output of ``show WORDS`` for ``fw`` at ``now`` (default: the engine's clock)."""
    now = fw.now if now is None else now
    release = release_of(getattr(fw.policy, "version", None))
    if not words:
        raise ShowError(f"show what? ({', '.join(COMMANDS)})")
    what, rest = words[0].lower(), [w.lower() for w in words[1:]]
    handlers: dict[str, Callable[[], str]] = {}

    def conn() -> str:
        if len(rest) == 1:
            # The ASA's abbreviations: "sh conn det".
            rest[0] = next((w for w in ("detail", "count") if w.startswith(rest[0])), rest[0])
        if rest == ["count"]:
            return format_show_conn_count(len(fw.conns), fw.conns.most_used)
        if rest not in ([], ["detail"]):
            raise ShowError("show conn [detail | count]")
        detail = rest == ["detail"]
        return format_show_conn(
            conn_records(fw, detail=detail), now, most_used=fw.conns.most_used, detail=detail, release=release
        )

    handlers["conn"] = conn
    handlers["xlate"] = lambda: format_show_xlate(
        xlate_records(fw), now, most_used=fw.nat.most_used, release=release
    )
    handlers["local-host"] = lambda: fmt.format_show_local_host(
        fw.policy, conn_records(fw), xlate_records(fw), now, release=release
    )
    handlers["access-list"] = lambda: _acl_lines(fw, words[1] if len(words) > 1 else None, release)
    handlers["nat"] = lambda: fmt.format_show_nat(
        fw.policy, xlate_hits or {}, untranslate_hits or {}, release=release
    )
    handlers["route"] = lambda: fmt.format_show_route(fw.policy, release=release)
    handlers["interface"] = lambda: fmt.format_show_interface(fw.policy, interfaces or {})

    def asp() -> str:
        if len(rest) != 1 or not "drop".startswith(rest[0]):
            raise ShowError("show asp drop")
        return format_show_asp_drop(dict(fw.drops))

    handlers["asp"] = asp
    matches = [k for k in handlers if k == what] or [k for k in handlers if k.startswith(what)]
    if len(matches) != 1:
        raise ShowError(f"unknown show command {what!r} (known: {', '.join(COMMANDS)})")
    if matches[0] == "access-list" and len(words) > 1 and words[1] not in fw.policy.access_lists:
        raise ShowError(f"no access-list named {words[1]!r}")
    if matches[0] in ("xlate", "local-host", "nat", "route", "interface") and rest:
        raise ShowError(f"show {matches[0]} takes no arguments here")
    return handlers[matches[0]]()


__all__ = ["COMMANDS", "InterfaceCounts", "ShowError", "conn_records", "show"]
