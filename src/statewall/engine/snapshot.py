"""A running firewall's state as bytes, and back: what lets connections survive a restart.

Owns the snapshot format. A snapshot holds what a policy reload keeps (``state.KEPT``: connections,
timers, expectations, Linux's NAT bindings, counters, the clock, the connection ids, the randomization
secret, the tallies of limits, TCP Intercept and threat detection), the NAT table's slots
(``compiled.NAT_KEPT``) and the service policies' counters. It is a pickle of those objects, inside a
header naming the format and its version and the box (``Policy.dialect``); ``restore`` refuses any
other format, version or box with ``SnapshotError``. Version 2 (PAT's shorter translation key,
``nat.pat_key``) reads version 1's files too: their PAT keys are made again in the new form, and
their objects' older layouts are read by the objects themselves (``Xlate.__setstate__``, the
``Connection`` fields' setters). A pickle runs code of whoever wrote it: a snapshot
file is as trusted as the configuration (the run adapter writes it 0600).

Restoring puts the state into a new engine as ``Firewall.reload`` puts a policy under a running one:
each connection keeps its translation, TCP state, sequence offsets, class settings and inspector from
the snapshot; the NAT slots move into the engine's rules (``compiled.merge_nat``); everything compiled
is built again from the engine's policy, the same configuration or a changed one. The compiled fast
path's connections are copied back first (``FastPath.sync``), so the snapshot holds the state the leaf
left; restored connections re-qualify for it on their next packet.

Not kept, as across a reload: netfilter's per-rule counters, the replay index and packet-tracer's log.
"""

from __future__ import annotations

import gc
import pickle
from contextlib import contextmanager

from ..nat import pat_key_of_v1
from . import compiled, state

FORMAT = "statewall-state"
VERSION = 2
READS = (1, 2)  # the format versions restore reads (module docstring)
# Rebuilt from the policy on restore, or only a reader's (replay index, packet-tracer's record).
NOT_KEPT = ("replay_index", "trace_log")


@contextmanager
def _no_gc():
    """The cyclic garbage collector off while pickling or unpickling: a snapshot allocates no garbage
    cycles, and collections triggered by its many new objects would scan the whole heap again and
    again (measured: docs/state.md)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class SnapshotError(ValueError):
    """A snapshot that cannot be restored: not one, another format version, another box."""


def snapshot(fw) -> bytes:
    """``fw``'s kept state as bytes (module docstring)."""
    fast = fw.fast
    flows = fast.table.flows() if fast is not None else []
    dropped = []
    if fast is not None:
        fast.sync()
        dropped = fast.keep_objects()
    # An offloaded connection points at its compiled flow, which is the leaf's, not state: copied back
    # (its objects made again where it kept none) above and left out of the pickle.
    for f in flows:
        f.conn.fast = None
    try:
        sp = fw.service_policies
        body = {
            "kept": {n: getattr(fw, n) for n in state.KEPT if n not in NOT_KEPT},
            "nat": {n: getattr(fw.nat, n) for n in compiled.NAT_KEPT},
            "service_counters": None if sp is None else (sp.uses, sp.default_counters),
        }
        with _no_gc():
            data = pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for f in flows:
            f.conn.fast = f
        if fast is not None:
            fast.drop_objects(dropped)
    header = {"format": FORMAT, "version": VERSION, "box": fw.policy.dialect}
    return pickle.dumps((header, data), protocol=pickle.HIGHEST_PROTOCOL)


def read_header(data: bytes) -> tuple[dict, bytes]:
    try:
        header, body = pickle.loads(data)
        fmt, version, _ = header["format"], header["version"], header["box"]
    except Exception as exc:  # noqa: BLE001 - any damage is "not a snapshot"
        raise SnapshotError(f"not a statewall state snapshot ({type(exc).__name__})") from None
    if fmt != FORMAT:
        raise SnapshotError(f"not a statewall state snapshot (format {fmt!r})")
    if version not in READS:
        raise SnapshotError(
            f"state snapshot format version {version}, this statewall reads versions "
            f"{', '.join(map(str, READS))}"
        )
    return header, body


def restore(fw, data: bytes) -> dict:
    """Replace ``fw``'s state by the snapshot ``data``'s (module docstring). Raises SnapshotError,
    changing nothing, for a damaged snapshot, another format version or another box. Returns what was
    restored: ``connections``, ``translations``, ``expectations`` and ``statics_dropped``."""
    header, body = read_header(data)
    if header["box"] != fw.policy.dialect:
        raise SnapshotError(
            f"the state snapshot is of a {header['box']} configuration, this one is {fw.policy.dialect}"
        )
    try:
        with _no_gc():
            b = pickle.loads(body)
        kept, nat, service_counters = b["kept"], b["nat"], b["service_counters"]
        # Written before port block interim logging (305017) was: no round of it queued.
        nat.setdefault("pba_tick", None)
        missing = [n for n in state.KEPT if n not in NOT_KEPT and n not in kept]
        missing += [f"nat.{n}" for n in compiled.NAT_KEPT if n not in nat]
    except Exception as exc:  # noqa: BLE001
        raise SnapshotError(f"damaged state snapshot ({type(exc).__name__}: {exc})") from None
    if missing:
        raise SnapshotError(f"damaged state snapshot (no {', '.join(missing)})")
    if header["version"] in READS:
        # Version 1's PAT keys were flat 8-tuples (nat.pat_key): made again, in the table's order. Done
        # for every version (a key already short is kept): a file main wrote as "version 2" for a while
        # (port block interim logging, since numbered 1 again) holds the flat keys too.
        rekeyed = {}
        for k, x in nat["xlates"].items():
            nk = pat_key_of_v1(k)
            x.key = nk if x.key == k else pat_key_of_v1(x.key)
            rekeyed[nk] = x
        nat["xlates"] = rekeyed
    extra_faults = fw.faults - frozenset(fw.policy.faults)
    for name, value in kept.items():
        setattr(fw, name, value)
    for name in NOT_KEPT:
        setattr(fw, name, None)
    # Compiled again over the restored state: the inspections and netfilter's path hold the engine's
    # expectation table and connection table.
    c = compiled.compile_policy(fw, fw.policy, extra_faults, fw.fast is not None)
    dropped = compiled.merge_nat(c.nat, nat)
    if c.service_policies is not None and service_counters is not None:
        c.service_policies.uses, c.service_policies.default_counters = service_counters
    compiled.install(fw, c)
    return {
        "connections": len(fw.conns),
        "translations": len(fw.nat.xlates) + len(fw.nf_nat.nf),
        "expectations": len(fw.expect),
        "statics_dropped": dropped,
    }
