"""TCP maximum segment size: what each side advertised, the ASA's ``sysopt connection tcpmss``
rewrite, and the clamp calculator behind ``statewall mss``.

Owns three things:

* **Recording** (``record``): the MSS each side announced in its SYN or SYN/ACK, 536 (IPv4) or 1220
  (IPv6) when the option is absent (RFC 879 / RFC 8200 defaults). The normalizer's ``exceed-mss`` check
  compares a segment with the MSS its *receiver* can take: what the receiver advertised, or more if
  the firewall itself raised it with ``sysopt connection tcpmss minimum`` (the sender was told so).
  Lowering to the maximum does not shrink that limit: the receiver still accepts what it announced,
  which is why seed 000's log shows ``MSS 1390`` through an ASA whose default maximum is 1380.
* **Rewriting** (``sysopt_rewrite``), ASA semantics (reference A.2): an MSS option above the maximum
  (default 1380, 0 = off) is lowered to it, one below the minimum (default off) raised to it, in SYNs
  and SYN/ACKs of both directions; a segment without the option is left without one. Linux's TCPMSS
  (lowers only, adds an option when absent) is the iptables side's (``statewall.netfilter``).
* **The calculator** (``clamp`` / ``IPSEC``): the MSS that keeps a TCP segment inside a link MTU once
  IPsec ESP (and optionally NAT-T and GRE) has wrapped it, each overhead named. Seed 001's case:
  1500 - (73 + 20 + 60) = 1347 for IPv4 over AES-256/SHA-1, 1327 for IPv6.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MSS = {4: 536, 6: 1220}
ASA_MAX_DEFAULT = 1380


def advertised(pkt) -> tuple[int, bool]:
    """(MSS, present) of a SYN or SYN/ACK: the option's value, else the IP version's default."""
    value = pkt.mss() if pkt.doff > 20 else None
    if value is None:
        return DEFAULT_MSS[pkt.version], False
    return value, True


def receive_limit(value: int, present: bool, minimum: int) -> int:
    """The largest segment the side that advertised ``value`` is expected to accept.

    ``sysopt connection tcpmss minimum`` raises an advertised option, and the firewall then holds the
    receiver to what it told the sender; an absent option is not added, so the default stands.
    """
    if present and minimum and value < minimum:
        return minimum
    return value


def sysopt_rewrite(pkt, maximum: int, minimum: int) -> tuple[int, int] | None:
    """Apply ``sysopt connection tcpmss [minimum]`` to a SYN/SYN-ACK; (old, new) when it changed."""
    if pkt.doff <= 20:
        return None
    return pkt.clamp_mss(maximum, minimum)  # mss() and set_mss() with one option lookup


# --------------------------------------------------------------------------------------------------
# The clamp calculator


@dataclass(frozen=True, slots=True)
class Cipher:
    """An ESP encryption transform: IV bytes, block size the padding aligns to, built-in ICV (AEAD)."""

    name: str
    iv: int
    block: int
    icv: int = 0  # AEAD ciphers carry their own integrity check value


@dataclass(frozen=True, slots=True)
class Integrity:
    name: str
    icv: int  # truncated HMAC length carried in each packet


CIPHERS: dict[str, Cipher] = {
    "3des": Cipher("3DES-CBC", 8, 8),
    "des": Cipher("DES-CBC", 8, 8),
    "aes128": Cipher("AES-128-CBC", 16, 16),
    "aes192": Cipher("AES-192-CBC", 16, 16),
    "aes256": Cipher("AES-256-CBC", 16, 16),
    # RFC 4106: 8-byte explicit IV, padding only to a 4-byte boundary, 16-byte ICV unless named.
    "aes128gcm": Cipher("AES-128-GCM", 8, 4, 16),
    "aes192gcm": Cipher("AES-192-GCM", 8, 4, 16),
    "aes256gcm": Cipher("AES-256-GCM", 8, 4, 16),
    "null": Cipher("NULL", 0, 4),
}
INTEGRITY: dict[str, Integrity] = {
    "md5": Integrity("HMAC-MD5-96", 12),
    "sha1": Integrity("HMAC-SHA1-96", 12),
    "sha": Integrity("HMAC-SHA1-96", 12),
    "sha256": Integrity("HMAC-SHA-256-128", 16),
    "sha384": Integrity("HMAC-SHA-384-192", 24),
    "sha512": Integrity("HMAC-SHA-512-256", 32),
    "none": Integrity("none", 0),
}
_GCM_ICV = re.compile(r"^(aes\d+gcm)(8|12|16)?$")

ESP_HEADER = 8  # SPI 4 + sequence number 4
ESP_TRAILER = 2  # pad length 1 + next header 1
NAT_T = 8  # UDP header, port 4500 (RFC 3948)
GRE_OVER_IPSEC = 24  # GRE header 4 + the GRE delivery IPv4 header 20
TCP_WORST = 60  # TCP header 20 + up to 40 bytes of options


class CalcError(ValueError):
    """An ``--ipsec`` transform statewall does not know."""


def parse_transform(text: str) -> tuple[Cipher, Integrity]:
    """``aes256-sha1``, ``3des-md5``, ``aes128gcm16``, ``aes256gcm``, ``null-sha256``: ESP transforms."""
    words = text.lower().replace("_", "-").split("-")
    cipher_word, integ_word = words[0], words[1] if len(words) > 1 else None
    if len(words) > 2:
        raise CalcError(f"unknown IPsec transform {text!r} (expected CIPHER-INTEGRITY, e.g. aes256-sha1)")
    m = _GCM_ICV.match(cipher_word)
    if m:
        base = CIPHERS.get(m[1])
        if base is None:
            raise CalcError(f"unknown cipher {cipher_word!r}")
        cipher = Cipher(
            base.name + (f" ({m[2]}-byte ICV)" if m[2] else ""), base.iv, base.block, int(m[2] or 16)
        )
        if integ_word not in (None, "none"):
            raise CalcError(f"{cipher_word} is an AEAD cipher: it takes no separate integrity ({integ_word})")
        return cipher, INTEGRITY["none"]
    cipher = CIPHERS.get(cipher_word)
    if cipher is None:
        known = ", ".join(sorted(CIPHERS))
        raise CalcError(f"unknown cipher {cipher_word!r} (known: {known}, aesNNNgcm8/12/16)")
    if integ_word is None:
        raise CalcError(f"{cipher_word} needs an integrity algorithm (e.g. {cipher_word}-sha1)")
    integ = INTEGRITY.get(integ_word)
    if integ is None:
        raise CalcError(f"unknown integrity {integ_word!r} (known: {', '.join(sorted(INTEGRITY))})")
    return cipher, integ


@dataclass(frozen=True, slots=True)
class Clamp:
    """A calculated MSS and the named terms that produced it (``terms``: (bytes, explanation))."""

    mtu: int
    mss: int
    ipsec_overhead: int
    terms: tuple[tuple[int, str], ...]


def clamp(
    mtu: int,
    transform: str,
    *,
    ipv6: bool = False,
    nat_t: bool = False,
    gre: bool = False,
    outer_ipv6: bool = False,
    tcp_header: int = TCP_WORST,
) -> Clamp:
    """The MSS for TCP over ESP tunnel mode through a link of ``mtu`` bytes, worst-case padding.

    IPsec overhead = outer IP + [NAT-T UDP] + ESP header + IV + padding at most (block - 1) + ESP
    trailer + ICV; then [GRE], the inner IP header and the TCP header are taken off.
    """
    cipher, integ = parse_transform(transform)
    outer = 40 if outer_ipv6 else 20
    icv = cipher.icv or integ.icv
    ipsec: list[tuple[int, str]] = [(outer, f"outer {'IPv6' if outer_ipv6 else 'IPv4'} header (tunnel mode)")]
    if nat_t:
        ipsec.append((NAT_T, "NAT-T UDP header (RFC 3948, port 4500)"))
    ipsec += [
        (ESP_HEADER, "ESP header (SPI 4 + sequence number 4)"),
        (cipher.iv, f"{cipher.name} IV" if cipher.iv else f"{cipher.name}: no IV"),
        (
            cipher.block - 1,
            f"padding at most ({cipher.name} pads payload + 2 to a multiple of {cipher.block})",
        ),
        (ESP_TRAILER, "ESP trailer (pad length 1 + next header 1)"),
        (icv, f"{'AEAD' if cipher.icv else integ.name} ICV" if icv else "no ICV"),
    ]
    overhead = sum(n for n, _ in ipsec)
    rest: list[tuple[int, str]] = []
    if gre:
        rest.append((GRE_OVER_IPSEC, "GRE over IPsec (GRE header 4 + GRE delivery IPv4 header 20)"))
    rest.append((40 if ipv6 else 20, f"inner {'IPv6' if ipv6 else 'IPv4'} header"))
    rest.append((tcp_header, f"TCP header with up to {tcp_header - 20} bytes of options"))
    mss = mtu - overhead - sum(n for n, _ in rest)
    if mss < 1:
        raise CalcError(f"MTU {mtu} leaves no room for TCP data after {mtu - mss} bytes of headers")
    return Clamp(mtu, mss, overhead, tuple(ipsec + rest))


def explain(c: Clamp, transform: str, ipv6: bool = False) -> list[str]:
    """The arithmetic as lines, ending with the clamp and the rules that apply it."""
    w = len(str(c.mtu))
    lines = [f"  {c.mtu:>{w}}  link MTU"]
    n_ipsec = len(c.terms) - 2 - any("GRE" in text for _, text in c.terms)
    for i, (n, text) in enumerate(c.terms):
        lines.append(f"- {n:>{w}}  {text}")
        if i == n_ipsec - 1:
            lines.append(
                f"  {'(' + str(c.ipsec_overhead):>{w}}) IPsec overhead of {transform} (the lines above)"
            )
    lines.append(f"= {c.mss:>{w}}  MSS")
    family = "ip6tables" if ipv6 else "iptables"
    lines += [
        "",
        f"clamp MSS to {c.mss}:",
        f"  ASA:       sysopt connection tcpmss {c.mss}",
        f"  netfilter: {family} -t mangle -A POSTROUTING -o ipsec0 -p tcp -m tcp --tcp-flags SYN,RST SYN "
        f"-j TCPMSS --set-mss {c.mss}",
    ]
    return lines
