"""The Internet checksum (RFC 1071) and its incremental updates (RFC 1624), full and partial.

This module owns the arithmetic only; ``statewall.packet`` decides which field feeds which checksum.

One fact makes everything here short: a one's-complement sum of 16-bit words is congruent to the
data read as one big-endian integer modulo 0xFFFF, because 2**16 == 1 (mod 0xFFFF). So summing a
whole packet is ``int.from_bytes(...) % 0xFFFF`` (C speed, no per-word Python loop), a 32- or
128-bit address contributes simply its integer value, and replacing a field changes the sum by
``new - old`` (times 256 when the field ends at an odd offset). The only subtlety is that the folded
sum of non-zero data is never 0 but 0xFFFF ("negative zero"), which :func:`fold` encodes.

Two kinds of checksum fields are updated:

* complete checksums (IPv4 header, TCP/UDP/ICMP): ``HC' = ~(~HC + ~m + m')`` (RFC 1624 eqn. 3);
* *partial* checksums (``CHECKSUM_PARTIAL``, TUN ``VIRTIO_NET_HDR_F_NEEDS_CSUM``): the L4 field holds
  the folded, non-complemented pseudo-header sum and the kernel or NIC adds the rest later, so the
  update is ``fold(P + ~m + m')`` without the outer complements, and only pseudo-header fields
  (addresses, length) ever change it (see docs packet-io.md "Partial checksums").
"""

from __future__ import annotations

_M = 0xFFFF


def fold(total: int) -> int:
    """Fold a (possibly huge or negative) sum to 16 bits; a non-zero-data sum folds to 1..0xFFFF.

    Callers only fold sums known to cover non-zero data (checksummed headers always have a non-zero
    protocol or length), so a remainder of 0 is the one's-complement "negative zero" 0xFFFF.
    """
    return total % _M or _M


def ones_sum(data, start: int = 0, end: int | None = None, initial: int = 0) -> int:
    """The folded one's-complement sum of ``data[start:end]`` plus ``initial`` (an unfolded sum).

    Returns 0 only for all-zero input; odd lengths are padded with a zero byte as RFC 1071 says.
    """
    if end is None:
        end = len(data)
    n = int.from_bytes(memoryview(data)[start:end], "big")
    if (end - start) & 1:
        n <<= 8
    n += initial
    return n % _M or (_M if n else 0)


def internet_checksum(data, start: int = 0, end: int | None = None, initial: int = 0) -> int:
    """The Internet checksum (complemented one's-complement sum) of ``data[start:end]``.

    ``initial`` is added to the sum before complementing, e.g. a pseudo-header sum from
    :func:`pseudo_header_sum`. The checksum field itself must be zero in ``data`` when computing.
    """
    return _M - ones_sum(data, start, end, initial)


def verify(data, start: int = 0, end: int | None = None, initial: int = 0) -> bool:
    """True if ``data[start:end]`` (checksum field included) plus ``initial`` sums to 0xFFFF."""
    return ones_sum(data, start, end, initial) == _M


# --------------------------------------------------------------------------------------------------
# Pseudo-headers (RFC 793 / RFC 768 for IPv4, RFC 8200 section 8.1 for IPv6)


def pseudo_header_sum(version: int, src: int, dst: int, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 or IPv6 pseudo-header; add it to the L4 data sum.

    Addresses are integers: their 16-bit words sum to the integer itself modulo 0xFFFF, so the same
    expression serves both families (the IPv6 length is 32 bits, the IPv4 one 16; both are small).
    """
    return src + dst + proto + length


def pseudo_header_sum4(src: int, dst: int, proto: int, length: int) -> int:
    return src + dst + proto + length


def pseudo_header_sum6(src: int, dst: int, proto: int, length: int) -> int:
    return src + dst + proto + length


def partial_pseudo_csum(version: int, src: int, dst: int, proto: int, length: int) -> int:
    """The value a ``CHECKSUM_PARTIAL`` packet carries in its L4 checksum field (``~csum_tcpudp_magic``)."""
    return fold(src + dst + proto + length)


# --------------------------------------------------------------------------------------------------
# Incremental updates of complete checksums (RFC 1624 eqn. 3)


def csum_delta(old: bytes, new: bytes, offset: int = 0) -> int:
    """The change in the checksummed sum when ``old`` becomes ``new`` at byte ``offset`` of the data.

    ``offset`` only matters through its parity: a field ending at an odd offset sits in the high
    bytes of its words and weighs 256. Deltas add up, so a NAT entry can precompute one per flow.
    """
    d = int.from_bytes(new, "big") - int.from_bytes(old, "big")
    if (offset + len(new)) & 1:
        d <<= 8
    return d


def csum_apply(csum: int, delta: int) -> int:
    """Apply a sum delta (from :func:`csum_delta` or ``new - old`` of aligned integers) to a checksum."""
    return _M - (((csum ^ _M) + delta) % _M or _M)


def csum_replace2(csum: int, old16: int, new16: int) -> int:
    """Checksum after a 16-bit aligned word changed from ``old16`` to ``new16``."""
    return _M - (((csum ^ _M) + new16 - old16) % _M or _M)


def csum_replace4(csum: int, old32: int, new32: int) -> int:
    """Checksum after a 32-bit aligned field (an IPv4 address, a sequence number) changed."""
    return _M - (((csum ^ _M) + new32 - old32) % _M or _M)


def csum_replace16(csum: int, old128: int, new128: int) -> int:
    """Checksum after a 128-bit aligned field (an IPv6 address) changed."""
    return _M - (((csum ^ _M) + new128 - old128) % _M or _M)


def csum_adjust(csum: int, old_bytes: bytes, new_bytes: bytes, offset: int = 0) -> int:
    """Checksum after ``old_bytes`` at byte ``offset`` of the checksummed data became ``new_bytes``."""
    return _M - (((csum ^ _M) + csum_delta(old_bytes, new_bytes, offset)) % _M or _M)


# --------------------------------------------------------------------------------------------------
# Incremental updates of partial checksums (CHECKSUM_PARTIAL: no outer complements)


def csum_apply_partial(partial: int, delta: int) -> int:
    """Apply a pseudo-header delta to a partial (folded, non-complemented) checksum field."""
    return (partial + delta) % _M or _M


def csum_replace2_partial(partial: int, old16: int, new16: int) -> int:
    return (partial + new16 - old16) % _M or _M


def csum_replace4_partial(partial: int, old32: int, new32: int) -> int:
    """Partial-checksum update for an IPv4 address change (Linux ``inet_proto_csum_replace4``)."""
    return (partial + new32 - old32) % _M or _M


def csum_replace16_partial(partial: int, old128: int, new128: int) -> int:
    return (partial + new128 - old128) % _M or _M


def csum_adjust_partial(partial: int, old_bytes: bytes, new_bytes: bytes, offset: int = 0) -> int:
    return (partial + csum_delta(old_bytes, new_bytes, offset)) % _M or _M
