"""The nftables dialect's sets and maps: declarations (``set``, data ``map``), their elements and
timeouts, the keys a rule looks them up with (``ip saddr . tcp dport @s``, anonymous sets of
concatenations, ``th``), the packet path's updates (``add @s``, ``update @s``, ``meter``) and the
data maps NAT and marks take their values from. A mixin of ``parser.Parser``: the same tokens,
errors and policy. What becomes of them is in ``statewall.policy.NfSet`` (``keyed``, ``data``) and
runs in ``statewall.nft_sets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...policy import NfExtension, NfSet, NfTable
from .keys import KEY_TYPES, SET_TYPES, key_at, parse_time, value_text
from .lexer import Token

if TYPE_CHECKING:
    from .parser import _Rule

# Single-key sets of these types list their elements as written (the files tests compare are).
_AS_WRITTEN = ("ipv4_addr", "ipv6_addr", "inet_service")


class SetSyntax:
    """Sets, maps and keys, for ``parser.Parser`` (which provides ``next``, ``peek``, ``error``, ...)."""

    def set_(self, table: NfTable) -> None:
        """``set NAME { type T [. T ...]; [flags ...;] [timeout T;] [size N;] [elements = { ... }] }``."""
        name = self.next("a set name")
        self.expect("{")
        types: list[Token] = []
        elements: list = []
        flags: list[str] = []
        timeout = size = None
        elements_tok = None
        for tok in self.statements(name, "set"):
            if tok.text == "type":
                types = [self.next("a type")]
                while self.peek() is not None and self.peek().text == ".":
                    self.i += 1
                    types.append(self.next("a type"))
                for t in types:
                    if t.text not in SET_TYPES:
                        raise self.not_modelled(t, f"sets of type {t.text}")
            elif tok.text == "typeof":
                raise self.not_modelled(tok, "typeof in a set declaration (write its type)")
            elif tok.text == "flags":
                flags += self.set_flags(("interval", "timeout", "dynamic", "constant"), "set")
            elif tok.text == "timeout":
                timeout = self.duration(self.next("a time"))
            elif tok.text == "size":
                size = self.number(self.next("a size"))
            elif tok.text == "elements":
                self.expect("=")
                elements_tok = tok
                if not types:
                    raise self.error(tok, "the set's type comes before its elements")
                brace = self.next("'{'")
                if brace.text != "{":
                    self.i -= 1
                    elements = [self.set_element(brace, [t.text for t in types], table)]
                else:
                    elements = self.element_list(brace, [t.text for t in types], table)
            elif tok.text == "comment":
                table.comments[name.text] = self.next("a comment").text
            elif tok.text in ("gc-interval", "policy", "auto-merge", "counter"):
                while not self.at_end():
                    self.i += 1
            else:
                raise self.error(tok, f"set: type, flags or elements expected, not {tok.text!r}")
        if not types:
            raise self.error(name, f"set {name.text}: no type")
        kinds = tuple(t.text for t in types)
        key = f"{table.family} {table.name} {name.text}"
        family = 6 if "ipv6_addr" in kinds else 4
        s = NfSet(name.text, "nft:" + " . ".join(kinds), family, kinds, origin=self.origin(name), keyed=True)
        if (timeout is not None or any(e[2] is not None for e in elements)) and "timeout" not in flags:
            flags.append("timeout")  # nft sets the flag for a set with timeouts
        s.flags = tuple(flags)
        s.timeout = timeout
        s.size = size
        for parts, texts, tmo in elements:
            prefix = any(isinstance(p, tuple) and p[0] != p[1] for p in parts) or any(
                isinstance(p, str) and p.endswith("*") for p in parts
            )
            if prefix and "interval" not in flags and len(kinds) == 1:
                raise self.error(
                    elements_tok or name,
                    f"set {name.text}: add 'flags interval' to the set to hold ranges and prefixes",
                )
            s.members.append(tuple(parts))
            s.text.append(texts)
            s.timeouts.append(tmo)
        if not any(s.timeouts):
            s.timeouts = []
        s.options = ["interval"] if "interval" in flags else []
        self.policy.nf_sets[key] = s
        table.sets_order.append(name.text)

    def set_flags(self, allowed: tuple[str, ...], what: str) -> list[str]:
        """``flags a, b`` of a set or map (the word read): the flags, each one of ``allowed``."""
        flags = []
        while not self.at_end():
            flag = self.next()
            if flag.text == ",":
                continue
            if flag.text not in allowed:
                raise self.not_modelled(flag, f"{what} flag {flag.text}")
            flags.append(flag.text)
        return flags

    def duration(self, tok: Token) -> float:
        value = parse_time(tok.text)
        if value is None:
            raise self.error(tok, f"bad time {tok.text!r} (e.g. 30s, 1h30m, 500ms)")
        return value

    def typed_value(self, tok: Token, kind: str, table: NfTable | None = None):
        """One value of a set type: ``(lo, hi)``, or the name for ``ifname``."""
        if kind in ("ipv4_addr", "ipv6_addr"):
            return self.address_range(tok, 4 if kind == "ipv4_addr" else 6)
        if kind == "inet_service":
            return self.port_range(tok)
        if kind == "inet_proto":
            n = self.protocol_number(tok)
            return (n, n)
        if kind == "mark":
            n = self.number(tok)
            return (n, n)
        return tok.text  # ifname

    def set_element(self, at: Token, kinds: list[str], table: NfTable, mapped: bool = False) -> tuple:
        """``a [. b ...] [timeout T] [expires T] [comment "..."]``: (parts, text, (timeout, expires))."""
        parts = []
        texts = []
        for n, kind in enumerate(kinds):
            if n:
                dot = self.next("'.'")
                if dot.text != ".":
                    raise self.error(dot, f"'.' and a {kind} expected (the key is {' . '.join(kinds)})")
            tok = self.next(f"a {kind}")
            if tok.text in (":", "}", ","):
                raise self.error(tok, f"a {kind} expected")
            value = self.typed_value(tok, kind, table)
            parts.append(value)
            texts.append(tok.text if len(kinds) == 1 and kind in _AS_WRITTEN else value_text(kind, value))
        tmo = None
        while self.peek() is not None and self.peek().text in ("timeout", "expires", "comment"):
            word = self.next()
            value = self.next("a value")
            if word.text == "comment":
                continue
            t = self.duration(value)
            old = tmo or (None, None)
            tmo = (t, old[1]) if word.text == "timeout" else (old[0], t)
        nxt = self.peek()
        if not mapped and nxt is not None and nxt.text == ":" and not nxt.quoted:
            raise self.not_modelled(nxt, "maps other than verdict maps")
        return parts, " . ".join(texts), tmo

    def element_list(self, brace: Token, kinds: list[str], table: NfTable) -> list[tuple]:
        out = []
        for t in self.listed(brace):
            self.i -= 1
            out.append(self.set_element(t, kinds, table))
        return out

    def verdict_map_ahead(self) -> bool:
        """After a map's ``type``: whether its value type is ``verdict``."""
        j = self.i
        while j < len(self.toks) and self.toks[j].text not in (":", "\n", ";", "}"):
            j += 1
        return j + 1 < len(self.toks) and self.toks[j].text == ":" and self.toks[j + 1].text == "verdict"

    def keyed_map_ahead(self, tok: Token) -> bool:
        """Whether ``tok`` (consumed) starts ``KEY [. KEY] map ...``."""
        found = key_at([tok.text] + [t.text for t in self.toks[self.i : self.i + 1]])
        if found is None:
            return False
        j = self.i + found[1] - 1
        while j + 1 < len(self.toks) and self.toks[j].text == ".":
            nxt = key_at([t.text for t in self.toks[j + 1 : j + 3]])
            if nxt is None:
                return False
            j += 1 + nxt[1]
        return j < len(self.toks) and self.toks[j].text == "map"

    def map_value_parts(self) -> int:
        """How many parts the values of the map ahead have (an ``@map``'s declared ones; else the first
        entry's: ``k : a . p`` has two)."""
        j = self.i
        while j < len(self.toks) and self.toks[j].text != "map":
            j += 1
        ref = self.toks[j + 1] if j + 1 < len(self.toks) else None
        if ref is not None and ref.text.startswith("@"):
            table = self.table_now
            s = self.policy.nf_sets.get(f"{table.family} {table.name} {ref.text[1:]}")
            return len(s.data) if s is not None and s.data else 1
        j += 2
        while j < len(self.toks) and self.toks[j].text != ":":
            j += 1
        n = 1
        j += 2
        while j < len(self.toks) and self.toks[j].text == ".":
            n += 1
            j += 2
        return n

    def type_list(self, what: str) -> list[Token]:
        types = [self.next(what)]
        while self.peek() is not None and self.peek().text == "." and not self.peek().quoted:
            self.i += 1
            types.append(self.next(what))
        for t in types:
            if t.text not in SET_TYPES:
                raise self.not_modelled(t, f"maps of type {t.text}")
        return types

    def data_map(self, table: NfTable, name: Token, start: Token) -> None:
        """``map NAME { type K [. K] : V [. V]; [flags interval;] [elements = { k : v, ... }] }``
        (its ``type`` word read): a data map, in ``Policy.nf_sets`` with its values."""
        keys = [t.text for t in self.type_list("a key type")]
        self.expect(":")
        data = [t.text for t in self.type_list("a value type")]
        flags: list[str] = []
        entries: list = []
        for tok in self.statements(name, "map"):
            if tok.text == "flags":
                flags += self.set_flags(("interval", "constant"), "map")
            elif tok.text == "elements":
                self.expect("=")
                brace = self.expect("{")
                entries = self.map_entries(brace, keys, data, table)
            elif tok.text == "comment":
                table.comments[name.text] = self.next("a comment").text
            elif tok.text in ("size", "policy", "counter"):
                while not self.at_end():
                    self.i += 1
            else:
                raise self.error(tok, f"map: type, flags or elements expected, not {tok.text!r}")
        s = NfSet(name.text, "nft:" + " . ".join(keys), 6 if "ipv6_addr" in keys else 4, tuple(keys),
                  origin=self.origin(name), keyed=True)  # fmt: skip
        s.flags = tuple(flags)
        s.data = tuple(data)
        for parts, text, value in entries:
            s.members.append(parts)
            s.text.append(text)
            s.values.append(value)
        self.policy.nf_sets[f"{table.family} {table.name} {name.text}"] = s
        table.sets_order.append(name.text)

    def map_entries(self, brace: Token, keys: list[str], data: list[str], table: NfTable) -> list[tuple]:
        """``{ k [. k] : v [. v], ... }``: (key parts, text as nft prints it, value parts)."""
        out = []
        for t in self.listed(brace):
            self.i -= 1
            parts, text, tmo = self.set_element(t, keys, table, mapped=True)
            colon = self.next("':'")
            if colon.text != ":":
                raise self.error(colon, "':' and a value expected")
            vparts, vtext, _ = self.set_element(colon, data, table, mapped=True)
            if tmo is not None:
                raise self.not_modelled(t, "timeouts in maps")
            value_texts = [value_text(k, v) for k, v in zip(data, vparts, strict=True)]
            out.append((tuple(parts), f"{text} : {' . '.join(value_texts)}", tuple(vparts)))
        return out

    def map_ref(self, r: _Rule, tok: Token, table: NfTable, data: tuple[str, ...]) -> dict:
        """``KEY [. KEY] map { ... } | map @NAME`` (``tok`` is the first key word): the map's lookup."""
        keys, types = self.keys(tok)  # (a key of the other family misses the map: nothing to restrict)
        self.expect("map")
        value = self.next("'{' or @map")
        if value.text.startswith("@"):
            key = f"{table.family} {table.name} {value.text[1:]}"
            s = self.policy.nf_sets.get(key)
            if s is None or not s.data:
                raise self.error(value, f"map {value.text[1:]} does not exist in table {table.name}")
            if tuple(s.dims) != tuple(types) or tuple(s.data) != data:
                raise self.error(
                    value, f"map {s.name} is {' . '.join(s.dims)} : {' . '.join(s.data)} (datatype mismatch)"
                )
            return {"keys": tuple(keys), "set": key, "name": s.name, "data": data}
        if value.text != "{":
            raise self.error(value, "'{' or @map expected")
        entries = self.map_entries(value, list(types), list(data), table)
        return {
            "keys": tuple(keys),
            "set": None,
            "elements": tuple(e[0] for e in entries),
            "values": tuple(e[2] for e in entries),
            "data": data,
        }

    def keyed_ahead(self, tok: Token) -> bool:
        """Whether the rule element at ``tok`` is a key looked up in a set (``KEY @set``, ``KEY . KEY
        ...``, ``th ...``) rather than one of the plain matches."""
        words = [tok.text] + [t.text for t in self.toks[self.i : self.i + 1]]
        found = key_at(words)
        if found is None:
            return False
        after = self.toks[self.i + found[1] - 1 : self.i + found[1] + 1]
        if tok.text == "th" or (after and after[0].text == "."):
            return True
        if after and after[0].text == "vmap" and not after[0].quoted:
            # ip/ip6 addresses and meta mark as a verdict map's key (ct state, interfaces, l4proto
            # and tcp/udp ports have their own, ``Parser.vmap``).
            return found[0].startswith(("ip ", "ip6 ")) or found[0] == "meta mark"
        if after and after[0].text in ("!=", "==") and len(after) > 1:
            after = after[1:]
        return bool(after) and after[0].text.startswith("@") and not after[0].quoted

    def keys(self, first: Token) -> tuple[list[str], list[str]]:
        """``KEY [. KEY ...]`` starting at ``first`` (consumed): the key names and their types."""
        keys: list[str] = []
        tok = first
        while True:
            words = [tok.text] + [t.text for t in self.toks[self.i : self.i + 1]]
            found = key_at(words)
            if found is None:
                raise self.not_modelled(
                    tok,
                    f"{tok.text!r} as a key (ip/ip6 saddr|daddr, tcp/udp/th ports, l4proto, ifname, mark)",
                )
            self.i += found[1] - 1
            keys.append(found[0])
            nxt = self.peek()
            if nxt is None or nxt.text != "." or nxt.quoted:
                break
            self.i += 1
            tok = self.next("a key")
        return keys, [KEY_TYPES[k] for k in keys]

    def key_family(self, r: _Rule, tok: Token, keys: list[str]) -> None:
        for k in keys:
            if k.startswith("ip6 "):
                self.set_family(r, tok, 6)
            elif k.startswith("ip "):
                self.set_family(r, tok, 4)

    def set_ref(self, ref: Token, table: NfTable, keys: tuple[str, ...], neg: bool) -> dict:
        name = ref.text[1:]
        key = f"{table.family} {table.name} {name}"
        s = self.policy.nf_sets.get(key)
        if s is None or s.meter:
            raise self.error(ref, f"set {name} does not exist in table {table.name}")
        types = tuple(KEY_TYPES[k] for k in keys)
        if tuple(s.dims) != types:
            raise self.error(
                ref,
                f"set {name} holds {' . '.join(s.dims)}, the key is {' . '.join(types)} (datatype mismatch)",
            )
        return {"keys": keys, "set": key, "name": name, "negate": neg}

    def key_match(self, r: _Rule, tok: Token, table: NfTable) -> None:
        """``KEY [. KEY ...] [!=] @set | { v [. v], ... } | v [. v]``: a lookup (nft_lookup)."""
        keys, types = self.keys(tok)
        self.key_family(r, tok, keys)
        neg = False
        nxt = self.peek()
        if nxt is not None and nxt.text in ("!=", "=="):
            self.i += 1
            neg = nxt.text == "!="
        value = self.next("a value")
        if value.text == "vmap" and not value.quoted and not neg:
            self.keyed_vmap(r, value, keys, types, table)
            return
        if value.text in ("vmap", "map"):
            raise self.not_modelled(value, f"{value.text} on this key")
        if value.text.startswith("@") and not value.quoted:
            r.extensions.append(NfExtension("nftset", self.set_ref(value, table, tuple(keys), neg)))
            return
        if value.text == "{" and not value.quoted:
            elements = self.element_list(value, types, table)
            braced = True
        else:
            self.i -= 1
            elements = [self.set_element(value, types, table)]
            braced = False
        if any(e[2] is not None for e in elements):
            raise self.error(value, "an anonymous set's elements take no timeout")
        r.extensions.append(
            NfExtension(
                "nftset",
                {
                    "keys": tuple(keys),
                    "set": None,
                    "elements": tuple(tuple(e[0]) for e in elements),
                    "negate": neg,
                    "braced": braced,
                },
            )
        )

    def dynset(self, r: _Rule, tok: Token, table: NfTable) -> None:
        """``add|update @set { KEY [. KEY] [timeout T] [limit rate ...] }`` (nft_dynset)."""
        ref = self.next("@set")
        if not ref.text.startswith("@"):
            raise self.error(ref, f"@set expected after {tok.text}, not {ref.text!r}")
        name = ref.text[1:]
        key = f"{table.family} {table.name} {name}"
        s = self.policy.nf_sets.get(key)
        if s is None or s.meter:
            raise self.error(ref, f"set {name} does not exist in table {table.name}")
        if "interval" in s.flags or "constant" in s.flags:
            kind = "an interval" if "interval" in s.flags else "a constant"
            raise self.error(
                ref, f"set {name} is {kind} set: no updates from the packet path (Operation not supported)"
            )
        args = self.dynset_body(r, tok, table, s)
        args.update(op=tok.text, set=key, name=name, meter=False)
        # nft makes a set that rules update dynamic, 65535 elements when its size is unsaid.
        if "dynamic" not in s.flags:
            s.flags = ("dynamic", *s.flags)
        if s.size is None:
            s.size = 65535
        r.extensions.append(NfExtension("dynset", args))

    def dynset_body(self, r: _Rule, tok: Token, table: NfTable, s: NfSet | None) -> dict:
        brace = self.expect("{")
        first = self.next("a key")
        keys, types = self.keys(first)
        self.key_family(r, first, keys)
        if s is not None and tuple(s.dims) != tuple(types):
            raise self.error(
                first, f"set {s.name} holds {' . '.join(s.dims)}, the key is {' . '.join(types)}"
            )
        timeout = limit = None
        while True:
            nxt = self.next("'}'")
            if nxt.text == "}":
                break
            if nxt.text == "timeout":
                timeout = self.duration(self.next("a time"))
                if s is not None and "timeout" not in s.flags:
                    raise self.error(nxt, f"set {s.name} has no 'flags timeout'")
            elif nxt.text == "limit":
                limit = self.limit_args()
            else:
                raise self.not_modelled(nxt, f"{nxt.text!r} in a set update (timeout and limit are read)")
        del brace
        return {"keys": tuple(keys), "timeout": timeout, "limit": limit}

    def meter(self, r: _Rule, tok: Token, table: NfTable) -> None:
        """``meter NAME [size N] { KEY [timeout T] limit rate ... }``: a dynamic set of the table that
        nft lists in the rule, not among the sets."""
        name = self.next("a meter name")
        size = 65535
        if self.peek() is not None and self.peek().text == "size":
            self.i += 1
            size = self.number(self.next("a size"))
        key = f"{table.family} {table.name} {name.text}"
        existing = self.policy.nf_sets.get(key)
        if existing is not None and not existing.meter:
            raise self.error(name, f"{name.text} is a set of table {table.name}, not a meter")
        args = self.dynset_body(r, tok, table, None)
        types = tuple(KEY_TYPES[k] for k in args["keys"])
        if existing is None:
            family = 6 if "ipv6_addr" in types else 4
            existing = NfSet(
                name.text, "nft:" + " . ".join(types), family, types, origin=self.origin(name), keyed=True
            )
            existing.meter = True
            existing.flags = ("dynamic",) + (("timeout",) if args["timeout"] is not None else ())
            existing.size = size
            self.policy.nf_sets[key] = existing
        elif tuple(existing.dims) != types:
            raise self.error(name, f"meter {name.text} holds {' . '.join(existing.dims)}")
        args.update(op="update", set=key, name=name.text, meter=True, size=size)
        r.extensions.append(NfExtension("dynset", args))

    def verdict_entries(self, brace: Token, kinds: list[str], table: NfTable) -> list[tuple]:
        """``{ k [. k ...] : verdict, ... }`` of a verdict map declared in ``table`` (``brace`` read):
        ``(value, verdict, chain or None)`` for a map keyed by ``ifname`` or ``inet_service`` alone,
        else ``(parts, verdict, chain or None)``."""
        single = len(kinds) == 1 and kinds[0] in ("ifname", "inet_service")
        holder = self.chain_placeholder(table)
        out = []
        for t in self.listed(brace):
            self.i -= 1
            if single:
                first = self.next(f"a {kinds[0]}")
                value = first.text if kinds[0] == "ifname" else self.port_range(first)
            else:
                parts, _text, tmo = self.set_element(t, kinds, table, mapped=True)
                if tmo is not None:
                    raise self.not_modelled(t, "timeouts in verdict maps")
                value = tuple(parts)
            out.append((value, *self.map_verdict(table, holder)))
        return out

    def map_verdict(self, table: NfTable, chain) -> tuple[str, str | None]:
        """``: verdict [chain]`` of a verdict map's entry: (verdict, chain or None)."""
        colon = self.next("':'")
        if colon.text != ":":
            raise self.error(colon, "':' and a verdict expected")
        verdict = self.next("a verdict")
        if verdict.text in ("jump", "goto"):
            target = self.next("a chain")
            self.jumps.append((table, chain.name, target))
            return verdict.text, target.text
        if verdict.text not in ("accept", "drop", "return", "continue"):
            raise self.error(verdict, f"unknown verdict {verdict.text!r}")
        return verdict.text, None

    def check_intervals(self, name: Token, kinds: list[str], entries: list, flags: list[str]) -> None:
        """A named map keyed by anything but ``ifname``/``inet_service`` alone holds ranges and prefixes
        only with ``flags interval``, as nft requires."""
        if len(kinds) == 1 and kinds[0] in ("ifname", "inet_service") or "interval" in flags:
            return
        for parts, _, _ in entries:
            if any(not isinstance(p, str) and p[0] != p[1] for p in parts):
                raise self.error(
                    name, f"map {name.text}: add 'flags interval' to the map to hold ranges and prefixes"
                )

    def keyed_vmap(self, r: _Rule, start: Token, keys: list[str], types: list[str], table: NfTable) -> None:
        """``KEY [. KEY ...] vmap @map | { k [. k] : verdict, ... }`` (``start`` is ``vmap``): the rule's
        target VMAP keyed by ``keys`` (read as sets read them, ``statewall.nft_sets``)."""
        if r.target:
            raise self.error(start, "a rule has one verdict")
        ref = self.next("'{' or @map")
        if ref.text.startswith("@") and not ref.quoted:
            found = table.vmaps.get(ref.text[1:])
            if found is None:
                raise self.error(ref, f"map {ref.text[1:]} does not exist in table {table.name}")
            if found[0] != " . ".join(types):
                raise self.error(
                    ref,
                    f"map {ref.text[1:]} is keyed by {found[0]}, the key is {' . '.join(types)} "
                    "(datatype mismatch)",
                )
            r.target = "VMAP"
            r.target_args = {"key": "keys", "keys": tuple(keys), "types": tuple(types), "entries": (),
                             "map": ref.text[1:]}  # fmt: skip
            return
        if ref.text != "{" or ref.quoted:
            raise self.error(ref, "'{' or @map expected")
        entries = []
        for t in self.listed(ref):
            self.i -= 1
            parts, _text, tmo = self.set_element(t, types, table, mapped=True)
            if tmo is not None:
                raise self.not_modelled(t, "timeouts in verdict maps")
            entries.append((tuple(parts), *self.map_verdict(table, self.chain_now)))
        if not entries:
            raise self.error(ref, "an empty verdict map")
        r.target = "VMAP"
        r.target_args = {"key": "keys", "keys": tuple(keys), "types": tuple(types), "entries": tuple(entries)}

    def numgen(self, r: _Rule, tok: Token, table: NfTable) -> None:
        """``numgen random|inc mod N [offset M] vmap { v : verdict, ... }`` (nft_numgen; kube-proxy's
        endpoint choice): the rule's target VMAP keyed by the generated number."""
        mode = self.next("random or inc")
        if mode.text not in ("random", "inc"):
            raise self.error(mode, f"numgen {mode.text!r}: random or inc")
        self.expect("mod")
        mod = self.number(self.next("a modulus"))
        if mod == 0:
            raise self.error(tok, "numgen: the modulus must not be 0 (Numerical result out of range)")
        offset = 0
        if self.peek() is not None and self.peek().text == "offset":
            self.i += 1
            offset = self.number(self.next("an offset"))
        if offset + mod - 1 > 0xFFFFFFFF:
            raise self.error(
                tok, "numgen: offset + modulus overflows (Value too large for defined data type)"
            )
        start = self.next("vmap")
        if start.text != "vmap":
            raise self.not_modelled(start, "numgen other than as a verdict map's key")
        if r.target:
            raise self.error(start, "a rule has one verdict")
        brace = self.next("'{'")
        if brace.text != "{" or brace.quoted:
            raise self.not_modelled(brace, "numgen with a named map")
        entries = []
        for t in self.listed(brace):
            entries.append((self.number_range(t), *self.map_verdict(table, self.chain_now)))
        if not entries:
            raise self.error(brace, "an empty verdict map")
        r.target = "VMAP"
        r.target_args = {
            "key": "numgen",
            "mode": mode.text,
            "mod": mod,
            "offset": offset,
            "entries": tuple(entries),
        }

    def add_elements(self, table: NfTable) -> None:
        """``add element [FAMILY] TABLE SET { a, b }``: elements to a set or map declared before."""
        name = self.next("a set")
        key = f"{table.family} {table.name} {name.text}"
        s = self.policy.nf_sets.get(key)
        if name.text in table.vmaps:
            kind, entries = table.vmaps[name.text]
            more = self.verdict_entries(self.expect("{"), kind.split(" . "), table)
            self.check_intervals(name, kind.split(" . "), more, list(table.vmap_flags.get(name.text, ())))
            table.vmaps[name.text] = (kind, (*entries, *more))
            return
        if s is None or s.meter:
            raise self.error(
                name, f"set {name.text} does not exist in table {table.name} (No such file or directory)"
            )
        brace = self.expect("{")
        if s.data:
            for parts, text, value in self.map_entries(brace, list(s.dims), list(s.data), table):
                s.members.append(parts)
                s.text.append(text)
                s.values.append(value)
            return
        for parts, text, tmo in self.element_list(brace, list(s.dims), table):
            if s.timeouts or tmo is not None:
                s.timeouts = s.timeouts or [None] * len(s.members)
                s.timeouts.append(tmo)
            s.members.append(tuple(parts))
            s.text.append(text)
