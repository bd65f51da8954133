"""Device-wide ASA commands: the version header, ``hostname``, ``names`` / ``name`` aliases and
``same-security-traffic``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from .lexer import Cursor
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_VERSION = re.compile(r"^\d+\.\d+\(\d+[^)]*\)\S*$")


def version_header(p: Parser, c: Cursor) -> None:
    """``ASA Version 8.2(1)`` / ``PIX Version 7.2(1)``: the release decides some defaults (A.1)."""
    c.keyword(("version",), "keyword")
    tok = c.next("version")
    if not _VERSION.match(tok.text):
        raise c.error(tok, f"invalid version '{tok.text}' (expected e.g. 8.2(1))")
    p.policy.version = tok.text
    # A multi-context header names the context ("ASA Version 8.2(1) <context>"); nothing to keep.


def hostname(p: Parser, c: Cursor) -> None:
    tok = c.next("hostname")
    if not valid_hostname(tok.text):
        raise c.error(tok, f"invalid hostname '{tok.text}'")
    c.end()
    p.policy.hostname = tok.text
    p.hostname_set = True


def valid_hostname(text: str) -> bool:
    return _HOSTNAME.match(text) is not None


def names(p: Parser, c: Cursor) -> None:
    c.end()
    p.keep(c.line)


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


def same_security_traffic(p: Parser, c: Cursor) -> None:
    c.keyword(("permit",), "keyword")
    which = c.keyword(("inter-interface", "intra-interface"), "traffic type")
    c.end()
    if which == "inter-interface":
        p.policy.same_security_inter = True
    else:
        p.policy.same_security_intra = True


COMMANDS: dict[str, Handler] = {
    "asa": version_header,
    "pix": version_header,
    "hostname": hostname,
    "names": names,
    "name": name,
    "same-security-traffic": same_security_traffic,
}
