"""Device-wide ASA commands: the version header, ``hostname``, ``names`` / ``name`` aliases and
``same-security-traffic``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from . import passthrough
from .lexer import Cursor
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

# The ASA's rule is RFC 1035's (letters, digits, hyphens, 63 at most), but running-configs of 8.x and 9.x
# carry underscores too (so do the Batfish project's fixtures), so they are accepted.
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[\w-]{0,61}[A-Za-z0-9])?$")
# Every form a running-config's header shows: 9.9, 9.12(4), 9.20(2)10, 8.2(5)13, 8.0(4)32 ...
_VERSION = re.compile(r"^\d+\.\d+(?:\(\d+[^)]*\)\S*)?$")


def version_header(p: Parser, c: Cursor) -> None:
    """``ASA Version 8.2(1)`` / ``PIX Version 7.2(1)``: the release decides some defaults (A.1)."""
    c.keyword(("version",), "keyword")
    tok = c.next("version")
    # A multi-context header names the context ("ASA Version 8.2(1) <context>"); nothing to keep.
    c.rest()
    if not _VERSION.match(tok.text):
        p.warn(
            c.line,
            f"'{tok.text}' is not an ASA release (e.g. 9.12(4)); the newest release's defaults apply",
            tok.col,
        )
        return
    if int(tok.text.split(".")[0]) < 7:
        # PIX 6.x: interfaces named by ``nameif ethernet0 outside security0`` and addressed by ``ip
        # address outside ...``, inspections as ``fixup protocol``, ``conduit`` and ``outbound`` ACLs.
        raise c.error(
            tok,
            f"PIX {tok.text} is not read by statewall (ASA 8.0 to 9.20 and PIX 7.x are): its "
            "interface, nameif, ip address and fixup syntax predate 7.0; the lines below are read as "
            "7.x would read them",
        )
    p.policy.version = tok.text


def hostname(p: Parser, c: Cursor) -> None:
    tok = c.next("hostname")
    if not valid_hostname(tok.text):
        raise c.error(tok, f"invalid hostname '{tok.text}'")
    c.end()
    p.policy.hostname = tok.text
    p.hostname_set = True
    p.no_effect()


def valid_hostname(text: str) -> bool:
    return _HOSTNAME.match(text) is not None


def names(p: Parser, c: Cursor) -> None:
    c.end()
    p.keep(c.line)
    p.no_effect()  # names only abbreviate addresses in other commands


def name(p: Parser, c: Cursor) -> None:
    """``name 10.0.0.5 server1 [description ...]``: later commands may write ``server1``."""
    addr_tok = c.next("IP address")
    try:
        addr = ipaddress.ip_address(addr_tok.text)
    except ValueError:
        raise c.error(addr_tok, f"invalid IP address '{addr_tok.text}'") from None
    alias = c.next("name")
    if c.accept("description") is None:
        c.end()
    p.hosts[alias.text] = str(addr)
    p.keep(c.line)
    p.no_effect()


def same_security_traffic(p: Parser, c: Cursor) -> None:
    c.keyword(("permit",), "keyword")
    which = c.keyword(("inter-interface", "intra-interface"), "traffic type")
    c.end()
    if which == "inter-interface":
        p.policy.same_security_inter = True
    else:
        p.policy.same_security_intra = True


# ``dns server-group`` sub-commands with a range (Cisco ASA command reference: timeout 1-30 seconds,
# retries 0-10, poll-timer and expire-entry-timer 1-65535 minutes).
_DNS_RANGES = {
    "timeout": (1, 30),
    "retries": (0, 10),
    "poll-timer": (1, 65535),
    "expire-entry-timer": (1, 65535),
}


def dns(p: Parser, c: Cursor) -> None:
    """``dns ...`` (the box's own resolver: no effect on traffic through it), kept as written; the ranges
    of a server-group's settings are checked as the ASA checks them."""
    passthrough.COMMANDS["dns"](p, c)
    if c.line.words[:2] != ["dns", "server-group"] or not p.modes:
        return
    mode = p.modes[-1]
    keep = mode.handle

    def handle(p: Parser, c: Cursor) -> None:
        keep(p, c)
        word = c.next("dns server-group command").word
        if word in _DNS_RANGES:
            if word in ("poll-timer", "expire-entry-timer"):
                c.keyword(("minutes",), "keyword")
            low, high = _DNS_RANGES[word]
            c.integer(low, high, f"dns {word}")
            c.end()

    mode.handle = handle


def nat_control(p: Parser, c: Cursor) -> None:
    """ASA 8.2 ``nat-control``: traffic to a lower security level needs a NAT rule (305005 "No
    translation group found" otherwise); applied by the engine's NAT stage (statewall.engine.asa). ASA
    8.3 removed the command (NAT is never required there): in a configuration of 8.3 or later it is kept
    for printing back, with a warning, and has no effect."""
    from .mpf import release

    c.end()
    p.policy.nat_control = True
    p.policy.nat_control_origin = p.origin(c.line)
    if release(p.policy) >= (8, 3):
        p.warn(c.line, "nat-control does not exist from ASA 8.3 on (NAT is never required); no effect")
        p.no_effect()


def ip(p: Parser, c: Cursor) -> None:
    """Top-level ``ip``: ``ip verify reverse-path interface NAME`` (unicast RPF, 106021; applied by the
    engine's RPF-CHECK stage) is modelled; other ``ip`` commands (``ip local pool``, ``ip audit``) are
    kept."""
    if c.peek() != "verify":
        passthrough.COMMANDS["ip"](p, c)
        return
    c.next("verify")
    c.keyword(("reverse-path",), "ip verify keyword")
    c.keyword(("interface",), "keyword")
    tok = c.next("interface name")
    c.end()
    p.require(
        lambda: tok.text in p.policy.interfaces,
        c.error(tok, f"ip verify reverse-path refers to unknown interface '{tok.text}'"),
    )
    p.policy.reverse_path[tok.text] = p.origin(c.line)


COMMANDS: dict[str, Handler] = {
    "dns": dns,
    "nat-control": nat_control,
    "ip": ip,
    "asa": version_header,
    "pix": version_header,
    "hostname": hostname,
    "names": names,
    "name": name,
    "same-security-traffic": same_security_traffic,
}
