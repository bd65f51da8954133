"""The Internet checksum and its incremental updates: incremental always equals a full recompute."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from statewall.checksum import (
    csum_adjust,
    csum_adjust_partial,
    csum_apply,
    csum_apply_partial,
    csum_delta,
    csum_replace2,
    csum_replace2_partial,
    csum_replace4,
    csum_replace4_partial,
    csum_replace16,
    csum_replace16_partial,
    fold,
    internet_checksum,
    ones_sum,
    partial_pseudo_csum,
    pseudo_header_sum,
    verify,
)


def reference_sum(data: bytes) -> int:
    """RFC 1071 the slow way: 16-bit words, end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_example():
    # RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0xFFFF - 0xDDF2


def test_edges():
    assert ones_sum(b"") == 0
    assert internet_checksum(b"\x00\x00") == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x01") == 0x0100
    assert fold(0xFFFF) == 0xFFFF and fold(0x1FFFE) == 0xFFFF and fold(0x10000) == 1


@given(st.binary(max_size=300))
def test_matches_reference_and_scapy(data):
    assert ones_sum(data) == reference_sum(data)
    assert internet_checksum(data) == scapy_checksum(data)


@given(st.binary(max_size=100), st.integers(0, 100), st.integers(0, 100))
def test_ranges(data, a, b):
    a, b = min(a, b, len(data)), min(max(a, b), len(data))
    assert ones_sum(data, a, b) == reference_sum(data[a:b])


@given(st.binary(min_size=2, max_size=64).filter(lambda d: any(d)), st.integers(0, 2**32))
def test_verify_with_initial(data, initial):
    data = bytearray(data) + b"\x00" * (len(data) % 2) + b"\x00\x00"
    c = internet_checksum(data, initial=initial)
    data[-2:] = c.to_bytes(2, "big")
    assert verify(data, initial=initial)


def place(data: bytearray, off: int, value: bytes) -> bytearray:
    out = bytearray(data)
    out[off : off + len(value)] = value
    return out


@settings(max_examples=300)
@given(st.binary(min_size=40, max_size=80), st.data())
def test_incremental_equals_full(data, draw):
    data = bytearray(data)
    data[0] |= 1  # never all-zero data, as with any real header
    full = internet_checksum(data)
    size = draw.draw(st.sampled_from([1, 2, 3, 4, 6, 16]))
    off = draw.draw(st.integers(2, len(data) - size))
    new = draw.draw(st.binary(min_size=size, max_size=size))
    old = bytes(data[off : off + size])
    changed = place(data, off, new)
    expect = internet_checksum(changed)
    assert csum_adjust(full, old, new, off) == expect
    assert csum_apply(full, csum_delta(old, new, off)) == expect
    if off % 2 == 0:
        o, n = int.from_bytes(old, "big"), int.from_bytes(new, "big")
        if size == 2:
            assert csum_replace2(full, o, n) == expect
        elif size == 4:
            assert csum_replace4(full, o, n) == expect
        elif size == 16:
            assert csum_replace16(full, o, n) == expect


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(8, 65535))
def test_partial_updates_track_the_pseudo_header(src, dst, new_src, length):
    partial = partial_pseudo_csum(4, src, dst, 6, length)
    assert (
        partial
        == reference_sum(
            src.to_bytes(4, "big") + dst.to_bytes(4, "big") + bytes([0, 6]) + length.to_bytes(2, "big")
        )
        or partial == 0xFFFF
    )
    moved = partial_pseudo_csum(4, new_src, dst, 6, length)
    assert csum_replace4_partial(partial, src, new_src) % 0xFFFF == moved % 0xFFFF
    assert (
        csum_replace2_partial(partial, length, 8) % 0xFFFF == partial_pseudo_csum(4, src, dst, 6, 8) % 0xFFFF
    )
    d = csum_delta(src.to_bytes(4, "big"), new_src.to_bytes(4, "big"))
    assert csum_apply_partial(partial, d) % 0xFFFF == moved % 0xFFFF
    assert csum_adjust_partial(partial, src.to_bytes(4, "big"), new_src.to_bytes(4, "big")) % 0xFFFF == (
        moved % 0xFFFF
    )


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_ipv6_pseudo_header(src, new_src):
    dst = 0x20010DB8 << 96 | 1
    raw = src.to_bytes(16, "big") + dst.to_bytes(16, "big") + (40).to_bytes(4, "big") + bytes([0, 0, 0, 17])
    assert pseudo_header_sum(6, src, dst, 17, 40) % 0xFFFF == reference_sum(raw) % 0xFFFF
    p = partial_pseudo_csum(6, src, dst, 17, 40)
    assert (
        csum_replace16_partial(p, src, new_src) % 0xFFFF
        == partial_pseudo_csum(6, new_src, dst, 17, 40) % 0xFFFF
    )
