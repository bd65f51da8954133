"""Words of an nftables file (``nft -f``, ``nft list ruleset``): tokens with their line and column.

Owns how text becomes tokens: words, quoted strings, the punctuation nft gives meaning to (``{ } ; ,
( ) |``), newlines (a rule ends at one), ``#`` comments, ``\\`` line continuations and ``define`` /
``$NAME`` substitution.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

_PUNCT = frozenset("{};,()|")


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    line: int
    col: int
    quoted: bool = False

    @property
    def newline(self) -> bool:
        return self.text == "\n" and not self.quoted


def tokens(text: str, file: str) -> list[Token]:
    out: list[Token] = []
    defines: dict[str, list[Token]] = {}
    line_no = 0
    lines = text.split("\n")
    i_line = 0
    while i_line < len(lines):
        raw = lines[i_line]
        line_no = i_line + 1
        i_line += 1
        continued = raw.rstrip().endswith("\\")
        if continued:
            raw = raw.rstrip()[:-1]
        words = _split(raw, line_no, file)
        if words and words[0].text == "define" and not words[0].quoted:
            if len(words) < 4 or words[2].text != "=":
                raise ConfigError(file, line_no, words[0].col, "define NAME = VALUE expected")
            defines[words[1].text] = words[3:]
            continue
        for w in words:
            if w.text.startswith("$") and not w.quoted:
                value = defines.get(w.text[1:])
                if value is None:
                    raise ConfigError(file, w.line, w.col, f"unknown identifier {w.text[1:]!r} (no define)")
                out.extend(Token(v.text, w.line, w.col, v.quoted) for v in value)
            else:
                out.append(w)
        if not continued:
            out.append(Token("\n", line_no, len(raw) + 1))
    return out


def _split(raw: str, line: int, file: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            break
        if c in _PUNCT:
            out.append(Token(c, line, i + 1))
            i += 1
            continue
        if c == '"':
            end = raw.find('"', i + 1)
            if end < 0:
                raise ConfigError(file, line, i + 1, "unterminated string")
            out.append(Token(raw[i + 1 : end], line, i + 1, True))
            i = end + 1
            continue
        start = i
        while i < n and raw[i] not in " \t\r" and raw[i] not in _PUNCT and raw[i] != '"':
            i += 1
        out.append(Token(raw[start:i], line, start + 1))
    return out
