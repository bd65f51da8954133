"""ASA configuration text to located lines and tokens, and the typed token readers commands use.

Owns what is common to every command: stripping console prompts (``pixfirewall(config-if)#``) from
pasted transcripts, recognising comment and header lines of a running-config and what the console
itself prints in a transcript (``INFO:``/``WARNING:``/``ERROR:`` messages, ``--More--``, the output of
``show`` and ``write memory``), splitting a line into
tokens that remember their column, and reading typed values (addresses, masks, ports, numbers,
durations) with ``ConfigError`` messages that point at the offending token.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import ConfigError
from . import names

# A console prompt: hostname, an optional "(config...)" mode and "#" (privileged) or ">" (user).
# The hostname must touch the mode/"#" so that ordinary command text never looks like a prompt.
# A failover pair or a security context adds "/pri/act" or "/context" to the hostname.
_PROMPT = re.compile(r"^\s*([A-Za-z][\w.\-]*)(?:/[\w.\-]+)*(?:\((config[\w\-]*)\))?[#>]\s*")
# What the console prints that is not configuration: its messages (a refused command's ERROR, the
# INFO a nameif prints), IOS-style "%" errors and their caret line, write/copy progress, prompts for
# file names, and the pager.
_CONSOLE = re.compile(
    r"^\s*(?:(?:INFO|WARNING|ERROR|Info|Warning|Error|NOTICE|Notice)\s*:"
    r"|%\s|\^\s*$|\[OK\]\s*$|Building configuration"
    r"|Type help or '\?' for a list of available commands"
    r"|(?:Source|Destination) filename \[|Address or name of remote host \["
    r"|\d+ bytes copied in |Copy in progress|Proceed with reload\?|Password:|Username:)"
)
_MORE = re.compile(r"\s*(?:<-+\s*More\s*-+>|-+\s*More\s*-+)\s*")
# Exec commands whose output (up to the next prompt) a transcript may hold; the output of "show
# running-config" and "more system:running-config" is configuration and is read.
_OUTPUT_COMMANDS = re.compile(
    r"^(?:do\s+)?(?:sh(?:o(?:w)?)?|write|wr|copy|more|dir|ping|traceroute|packet-tracer)\b"
)
_CONFIG_OUTPUT = re.compile(
    r"^(?:do\s+)?(?:sh(?:o(?:w)?)?\s+(?:run|running-config|start|startup-config)\S*"
    r"|more\s+system:running-config)",
    re.IGNORECASE,
)
_DURATION = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})$")


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    col: int  # 1-based column in the physical line

    @property
    def word(self) -> str:
        """The token as a keyword: ASA keywords are case-insensitive."""
        return self.text.lower()


@dataclass(slots=True)
class Line:
    """One command line. ``text`` is the line without prompt and surrounding blanks (the Origin text)."""

    number: int
    raw: str
    text: str
    tokens: list[Token]
    indent: int  # leading blanks before the command (running-config sub-commands are indented)
    prompt_mode: str | None  # "config", "config-if", ... from a prompt; "" for an exec prompt; None
    prompt_host: str | None = None  # the hostname a prompt shows
    refused: str | None = None  # the console's ERROR for this command, when a transcript shows one

    @property
    def words(self) -> list[str]:
        return [t.word for t in self.tokens]

    def rest(self, index: int) -> str:
        """The raw text from token ``index`` to the end of the line (descriptions, remarks)."""
        if index >= len(self.tokens):
            return ""
        return self.raw[self.tokens[index].col - 1 :].rstrip()


def is_comment(text: str) -> bool:
    """Running-config decoration that carries no configuration."""
    return (
        text.startswith("!")
        or text.startswith(":")
        or text.startswith("Cryptochecksum:")
        or text in ("Building configuration...", "Current configuration :")
    )


def is_console(text: str) -> bool:
    """A line the console printed (a message, progress, a question), not a command."""
    return _CONSOLE.match(text) is not None


def lines(text: str) -> Iterator[Line]:
    """Located command lines of ``text``; blank, comment, prompt-only and console-output lines are
    skipped (the output of an exec command runs up to the next prompt). A command the console answered
    with an error (``ERROR: ...`` or ``% Invalid input`` after it) comes with ``refused`` set."""
    pending: Line | None = None
    for line, console in _scan(text):
        if line is None:
            if pending is not None and console and pending.prompt_mode is not None:
                pending.refused = pending.refused or console
            continue
        if pending is not None:
            yield pending
        pending = line
    if pending is not None:
        yield pending


def _scan(text: str) -> Iterator[tuple[Line | None, str | None]]:
    """(line, None) for each command line; (None, message) for a console error line; (None, None) for
    other skipped lines."""
    in_output = False
    erased = 0  # the pager's prompt is erased with as many blanks, which a paste keeps
    for number, raw in enumerate(text.splitlines(), start=1):
        raw = raw.rstrip("\r\n").replace("\x08", "").expandtabs(1)
        if erased and raw.startswith(" " * erased):
            raw = raw[erased:]
        erased = 0
        if "More" in raw:
            m_more = _MORE.search(raw)
            if m_more is not None:
                erased = len(m_more.group().strip())
            raw = _MORE.sub("", raw)
        start = 0
        prompt_mode = prompt_host = None
        m = _PROMPT.match(raw)
        if m:
            start = m.end()
            prompt_host, prompt_mode = m.group(1), m.group(2) or ""
        body = raw[start:]
        stripped = body.strip()
        if m is not None:
            in_output = bool(_OUTPUT_COMMANDS.match(stripped.lower())) and not _CONFIG_OUTPUT.match(stripped)
            if in_output or _CONFIG_OUTPUT.match(stripped):
                yield None, None
                continue
        elif in_output:
            yield None, None
            continue
        if not stripped or is_comment(stripped) or is_console(stripped):
            error = stripped.startswith(("ERROR:", "Error:")) or (
                stripped.startswith("%") and "Invalid input" in stripped
            )
            yield None, (stripped if error else None)
            continue
        indent = 0 if m else len(body) - len(body.lstrip(" "))
        tokens = [Token(t.group(), start + t.start() + 1) for t in re.finditer(r"\S+", body)]
        yield Line(number, raw, stripped, tokens, indent, prompt_mode, prompt_host), None


class Cursor:
    """Reads one line's tokens left to right; every reader raises ``ConfigError`` at the bad token."""

    __slots__ = ("file", "line", "pos")

    def __init__(self, file: str, line: Line, pos: int = 0) -> None:
        self.file = file
        self.line = line
        self.pos = pos

    # -- errors ----------------------------------------------------------------------------------

    def error(self, token: Token | None, message: str) -> ConfigError:
        col = token.col if token is not None else self.end_col()
        return ConfigError(self.file, self.line.number, col, message)

    def end_col(self) -> int:
        return len(self.line.raw.rstrip()) + 1

    # -- raw tokens ------------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.line.tokens)

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.line.tokens[i].word if i < len(self.line.tokens) else None

    def peek_token(self) -> Token | None:
        return self.line.tokens[self.pos] if self.pos < len(self.line.tokens) else None

    def next(self, what: str) -> Token:
        """The next token, or an error saying which value is missing."""
        tok = self.peek_token()
        if tok is None:
            raise self.error(None, f"missing {what}")
        self.pos += 1
        return tok

    def accept(self, *words: str) -> Token | None:
        """Consume the next token if it is one of ``words`` (keywords, case-insensitive)."""
        tok = self.peek_token()
        if tok is not None and tok.word in words:
            self.pos += 1
            return tok
        return None

    def keyword(self, choices: tuple[str, ...] | list[str], what: str) -> str:
        tok = self.next(what)
        if tok.word not in choices:
            raise self.error(tok, f"invalid {what} '{tok.text}' (expected {' or '.join(choices)})")
        return tok.word

    def rest(self) -> str:
        text = self.line.rest(self.pos)
        self.pos = len(self.line.tokens)
        return text

    def end(self) -> None:
        """The command is complete: anything left over is an error."""
        tok = self.peek_token()
        if tok is not None:
            raise self.error(tok, f"unexpected '{tok.text}'")

    # -- typed values ----------------------------------------------------------------------------

    def integer(self, lo: int, hi: int, what: str) -> int:
        tok = self.next(what)
        return self.integer_of(tok, lo, hi, what)

    def integer_of(self, tok: Token, lo: int, hi: int, what: str) -> int:
        if not tok.text.isdigit() or not lo <= int(tok.text) <= hi:
            raise self.error(tok, f"{what} must be {lo}..{hi}")
        return int(tok.text)

    def ipv4(self, what: str = "IP address", hosts: dict[str, str] | None = None) -> ipaddress.IPv4Address:
        return self.ipv4_of(self.next(what), hosts)

    def ipv4_of(self, tok: Token, hosts: dict[str, str] | None = None) -> ipaddress.IPv4Address:
        text = tok.text
        if hosts and text in hosts:  # ASA "name" aliases
            text = hosts[text]
        if text == "0":  # ASA shorthand for 0.0.0.0 in nat/global/static/route
            text = "0.0.0.0"
        try:
            return ipaddress.IPv4Address(text)
        except ValueError:
            raise self.error(tok, f"invalid IP address '{tok.text}'") from None

    def netmask(self) -> int:
        """A dotted netmask, returned as a prefix length; it must be contiguous."""
        tok = self.next("netmask")
        return self.netmask_of(tok)

    def netmask_of(self, tok: Token) -> int:
        text = "0.0.0.0" if tok.text == "0" else tok.text
        try:
            value = int(ipaddress.IPv4Address(text))
        except ValueError:
            raise self.error(tok, f"invalid netmask '{tok.text}'") from None
        inverted = ~value & 0xFFFFFFFF
        if inverted & (inverted + 1):
            raise self.error(tok, f"invalid netmask '{tok.text}'")
        return 32 - inverted.bit_length()

    def network(self, addr_tok: Token, prefix: int, addr: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network((addr, prefix))
        except ValueError:
            raise self.error(addr_tok, f"address '{addr_tok.text}' has bits outside its netmask") from None

    def ipv6_prefix(self, what: str = "IPv6 prefix") -> tuple[Token, ipaddress.IPv6Interface]:
        tok = self.next(what)
        return tok, self.ipv6_prefix_of(tok)

    def ipv6_prefix_of(self, tok: Token) -> ipaddress.IPv6Interface:
        if "/" not in tok.text:
            raise self.error(tok, f"invalid IPv6 prefix '{tok.text}' (expected address/length)")
        try:
            return ipaddress.IPv6Interface(tok.text)
        except ValueError:
            raise self.error(tok, f"invalid IPv6 prefix '{tok.text}'") from None

    def ipv6(self, what: str = "IPv6 address") -> ipaddress.IPv6Address:
        tok = self.next(what)
        try:
            return ipaddress.IPv6Address(tok.text)
        except ValueError:
            raise self.error(tok, f"invalid IPv6 address '{tok.text}'") from None

    def port(self, protocol: str) -> int:
        """A port number or an ASA port name valid for ``protocol`` (tcp, udp or tcp-udp)."""
        tok = self.next("port")
        if tok.text.isdigit():
            return self.integer_of(tok, 0, 65535, "port")
        number = names.port_number(tok.word, protocol)
        if number is None:
            raise self.error(tok, f"unknown {protocol} port '{tok.text}'")
        return number

    def duration(self, what: str) -> tuple[Token, int]:
        """An ASA ``hh:mm:ss`` duration (or ``0``) in seconds."""
        tok = self.next(f"{what} duration")
        if tok.text == "0":
            return tok, 0
        m = _DURATION.match(tok.text)
        if not m or int(m.group(2)) > 59 or int(m.group(3)) > 59:
            raise self.error(tok, f"invalid duration '{tok.text}' (expected hh:mm:ss)")
        h, mi, s = (int(g) for g in m.groups())
        return tok, h * 3600 + mi * 60 + s


def format_duration(seconds: float) -> str:
    """Seconds as the ASA prints a duration: ``1:00:00``, ``0:00:30``."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
