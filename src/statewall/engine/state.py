"""What a running firewall knows, as opposed to what it was told: the state a policy reload keeps.

Owns the list of the engine's state (``KEPT``) and its making (``init_state``): the connection table,
the timers, the expectations, the NAT slots in use (inside ``nat``, moved across a reload by
``statewall.engine.compiled``) and Linux's NAT bindings, the drop and packet counters, the clock, the
connection ids, the randomization secret, the replay index and the first fragments' notes, and the
tallies of connection limits, TCP Intercept and basic threat detection.
"""

from __future__ import annotations

from collections import Counter

from .. import intercept, seqrand, threat
from ..conntrack import ConnTable
from ..events import DropReason
from ..expect import ExpectTable
from ..limits import Limits
from ..nf_nat import NfNat
from ..policy import Policy
from ..reassembly import AsaFragmentDb, LinuxDefrag
from ..timers import Timers

# The engine's attributes that are state: kept as they are by Firewall.reload.
KEPT = (
    "conns",
    "timers",
    "expect",
    "nf_nat",
    "drops",
    "stats",
    "now",
    "next_id",
    # Connection numbers go up by this (a live worker k of N numbers k+1, k+1+N, ...: statewall.live.workers).
    "id_step",
    "seq_secret",
    "shifting",
    "trace_log",
    "replay_index",
    "frag_flows",
    # Fragments waiting for the rest of their datagram (statewall.reassembly).
    "reasm",
    "reasm_dg",
    # Tallies of live connections per class, client and NAT rule, and the SYN cookies in flight:
    # connections built after a reload count against the new NAT rules (their tallies start at 0).
    "limits",
    "intercept",
    # Basic threat detection's rates and cumulative counts (statewall.threat).
    "threat",
)


def asa_version_before(version: str | None, major: int, minor: int) -> bool:
    if not version:
        return False
    try:
        parts = version.split("(")[0].split(".")
        return (int(parts[0]), int(parts[1])) < (major, minor)
    except (ValueError, IndexError):
        return False


def init_state(fw, policy: Policy, seed) -> None:
    """The state of a new firewall for ``policy`` (which decides whether the ASA's limits, TCP
    Intercept and threat detection have tallies to keep)."""
    asa = policy.dialect == "asa"
    fw.conns = ConnTable()
    fw.timers = Timers()
    # Application inspection's announced data connections (statewall.expect); its NAT table is set
    # with the compiled rules.
    fw.expect = ExpectTable(None, fw.timers)
    fw.nf_nat = NfNat()
    fw.drops: Counter[DropReason] = Counter()  # show asp drop: counted only by context.drop
    fw.stats = Counter()
    fw.now = 0.0
    fw.next_id = 1
    fw.id_step = 1
    fw.seq_secret = seqrand.make_secret(seed)
    fw.shifting = False  # a connection's sequence numbers are shifted: replay must follow
    # packet-tracer's record of the stages' phases (statewall.tracer); None: nobody listens.
    fw.trace_log = None
    # How captures taken without the firewall show each translated half (replay_rewrite): None
    # until a replay adapter first calls replay_rewrite, so that a firewall that never replays
    # keeps no entry per connection (memory, docs/performance.md).
    fw.replay_index = None
    fw.frag_flows = {}
    # Reassembly as the box does it: the ASA's fragment database, Linux's defragmentation before
    # conntrack (its settings follow the policy: ``compiled.install``). ``reasm_dg``: the datagram the
    # packet being processed was reassembled into (its fragments' largest size is the MTU check's).
    fw.reasm = AsaFragmentDb(policy.fragment_settings) if asa else LinuxDefrag(policy.defrag)
    fw.reasm_dg = None
    # Connection limits and TCP Intercept (statewall.limits, statewall.intercept): the ASA's; the
    # iptables dialect's connlimit is a match of statewall.netfilter.
    fw.limits = Limits() if asa else None
    fw.intercept = intercept.Intercept(intercept.make_secret(fw.seq_secret)) if asa else None
    # Basic threat detection (733100 for the rates of those drops), on by default from ASA 8.0(2).
    fw.threat = threat.BasicThreat() if asa and not asa_version_before(policy.version, 8, 0) else None
