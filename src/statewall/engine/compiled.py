"""What the engine compiles from a policy: everything a policy reload rebuilds.

Owns the list of compiled attributes (``REBUILT``, ``MERGED``), their making (``compile_policy``) and
the reload's merge of the two parts that are both (``reload``). Compiled: the interfaces, routes,
access rules, NAT rules, timeouts, conntrack settings, service policies, inspections, netfilter's
rulesets and path, the fast path's table, and the data path itself:

- the box: the ASA's or Linux's TCP lifecycle (``statewall.engine.lifecycle``), how a refused TCP
  segment is counted (``invalid_drops``: the ASA names the normalizer check; Linux says TCP_INVALID),
  whether a TCP flow may start without a SYN (conntrack's ``tcp_loose``; never on the ASA);
- the stages: a policy with netfilter rulesets runs netfilter's path (``statewall.engine.nf_path``)
  for every packet; any other runs the ASA's (``statewall.engine.asa``), with the connection-limits
  stage only where service policies can set limits.

The box is the configuration's kind (``Policy.dialect``): read here and nowhere else in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import fastpath, seqrand
from ..acl import AccessControl
from ..addrclass import Classifier
from ..events import DropReason
from ..inspect import Inspectors
from ..mpf import ServicePolicies
from ..nat import NatTable
from ..policy import ConntrackSettings, Policy
from ..reassembly import AsaFragmentDb, LinuxDefrag
from ..routing import RouteTable
from ..tcptrack import InvalidReason
from . import asa, lifecycle, nf_path
from .context import Result
from .flowclass import FlowClasses
from .nf_path import NfPath
from .state import KEPT, asa_version_before

# The engine's attributes compiled from the policy: replaced whole by Firewall.reload.
REBUILT = (
    "policy",
    "interfaces",
    "routes",
    "acl",
    "timeouts",
    "box",
    "lifecycle",
    "invalid_drops",
    "ct",
    "acl_on_mapped",
    "nat_required",
    "faults",
    "nf_path",
    "netfilter",
    "new_flow_stages",
    "flow_classes",
    "path",
    "fast_offer",
    "addrs",
)
# Both: the new compiled part with the old state moved into it (``reload``).
MERGED = ("nat", "service_policies", "inspectors", "fast")
# NatTable: the translation slots are state, the rules (entries) compiled; ``_mapped_in_use`` is both
# (the new rules' static port reservations plus the ports live PAT slots hold).
NAT_KEPT = (
    "xlates", "_hosts_in_use", "_nat_hosts", "most_used", "port_share",
    "_pba_blocks", "_pba_hosts", "pba_events", "pba_tick",
)  # fmt: skip
NAT_REBUILT = ("_iface_address", "timeouts", "entries", "pba_size", "pba_max", "pba_interim")
NAT_MERGED = ("_mapped_in_use",)


# The ASA's platform connection limit: the most concurrent connections the box holds, a figure of the
# model (Cisco's ASA 5500-X data sheet: 5506-X 20 000, 5516-X 250 000, 5555-X 1 000 000). statewall
# takes the ASA 5516-X's; ``policy.conntrack.max`` set explicitly replaces it. A new connection past it
# is dropped as conn-limit and logged 201011 (Connection limit exceeded), the engine's ``build`` stage.
ASA_CONN_MAX = 250_000


@dataclass(slots=True)
class AsaTrackerSettings(ConntrackSettings):
    """The tracker's settings on the ASA's stages: Linux's defaults (a shared tracker) and what the ASA
    does differently. ``rst_exact``: an RST on an established connection must carry the next expected
    sequence number; one elsewhere in the window is dropped (tcp-rst-syn-in-win) and the connection
    kept, where Linux lets it through and keeps the state for the receiver's challenge ACK (RFC 5961).
    ``syn_on_conn_drop``: a SYN on an established connection is dropped (tcp-rst-syn-in-win in the
    window, tcp-syn-ooo outside it) and the connection kept, where Linux lets it through (IGNORE)."""

    rst_exact: bool = True
    syn_on_conn_drop: bool = True


class Box:
    """What differs between the boxes the dialects describe, as data (module docstring)."""

    __slots__ = ("name", "lifecycle", "invalid_drops", "new_tcp_invalid")

    def __init__(self, name, lifecycle_, invalid_drops, new_tcp_invalid) -> None:
        self.name = name
        self.lifecycle = lifecycle_
        self.invalid_drops = invalid_drops
        self.new_tcp_invalid = new_tcp_invalid


# The ASA refuses what conntrack calls INVALID with the normalizer check of the same meaning.
ASA = Box(
    "asa",
    lifecycle.AsaLifecycle,
    {
        InvalidReason.SEQ_OVER: DropReason.TCP_SEQ_PAST_WINDOW,
        InvalidReason.ACK_OVER: DropReason.TCP_INVALID_ACK,
        InvalidReason.INVALID_RST: DropReason.TCP_RST_SYN_IN_WINDOW,
        InvalidReason.RST_IN_WINDOW: DropReason.TCP_RST_SYN_IN_WINDOW,
    },
    DropReason.INVALID_TCP_FLAGS,
)
LINUX = Box("linux", lifecycle.LinuxLifecycle, {}, DropReason.TCP_INVALID)


class Compiled:
    """A policy's compiled part before it is put into an engine (``REBUILT`` and ``MERGED`` names)."""


def compile_policy(fw, policy: Policy, faults, fast_path: bool) -> Compiled:
    """Everything ``fw`` runs ``policy`` with (``REBUILT``, ``MERGED``); ``fw`` is only handed to the
    parts that act on the engine (netfilter's path, the fast path). Raises ValueError for a fault name
    statewall does not know, or another error of a policy that cannot run."""
    box = ASA if policy.dialect == "asa" else LINUX
    faults = frozenset(faults) | frozenset(policy.faults)
    unknown = faults - set(seqrand.FAULTS)
    if unknown:
        known = ", ".join(seqrand.FAULTS)
        raise ValueError(f"unknown fault(s) {', '.join(sorted(unknown))} (known: {known})")
    c = Compiled()
    c.policy = policy
    c.faults = faults
    c.box = box
    c.lifecycle = box.lifecycle
    c.invalid_drops = box.invalid_drops
    c.interfaces = {n: i for n, i in policy.interfaces.items() if not i.shutdown}
    c.routes = RouteTable(policy)
    c.addrs = Classifier(policy)
    c.acl = AccessControl(policy)
    c.nat = NatTable(policy, c.routes.interface_address)
    c.timeouts = policy.timeouts
    if box is ASA:
        # The ASA's normalizer needs a SYN to start a flow (reference A.1) and has no "loose" pickup.
        ct = AsaTrackerSettings(
            **{f: getattr(policy.conntrack, f) for f in ConntrackSettings.__slots__ if f != "origins"}
        )
        ct.tcp_loose = False
        if "max" not in policy.conntrack.origins:
            ct.max = ASA_CONN_MAX
        c.ct = ct
    else:
        c.ct = policy.conntrack
    # ASA before 8.3 matches access lists against mapped (global) addresses; 8.3+ against real ones.
    c.acl_on_mapped = box is ASA and asa_version_before(policy.version, 8, 3)
    # ASA 8.2's translation requirements (nat-control; a nat rule's addresses translated on every lower
    # interface): checked by the NAT stage where the policy has 8.2 dynamic NAT or nat-control.
    nat_control = policy.nat_control and asa_version_before(policy.version, 8, 3)
    c.nat_required = box is ASA and (
        nat_control or any(r.kind == "dynamic" and r.section == 0 for r in policy.nat_rules)
    )
    # The ASA's modular policy framework: per-connection settings, the TCP normalizer, MSS rewriting
    # and sequence randomization (statewall.mpf, .normalizer, .mss, .seqrand).
    c.service_policies = ServicePolicies(policy) if box is ASA else None
    c.inspectors = Inspectors(policy, fw.expect)
    # The stages: netfilter's path for a policy with rulesets, the ASA's otherwise.
    c.nf_path = c.netfilter = None
    c.new_flow_stages = asa.stages(c.service_policies is not None, reverse_path=bool(policy.reverse_path))
    c.path = asa.process
    c.flow_classes = None
    if policy.netfilter is not None or policy.ip6_netfilter is not None:
        c.nf_path = NfPath(fw, policy, c.inspectors)
        c.netfilter = c.nf_path.nf  # the rulesets and their counters
        c.new_flow_stages = ()
        c.path = nf_path.process
    else:
        # The answers of the stages before NAT kept per class of flow (statewall.engine.flowclass):
        # new with every compiled policy, so a reload applies from the next first packet on.
        c.flow_classes = FlowClasses(c.new_flow_stages, asa.source_nat, policy, c.nat)
    # Established connections offloaded to the compiled fast path (statewall.fastpath): the ASA's
    # stages only; netfilter's path counts every packet per rule, as the kernel does without a
    # flowtable.
    use_fast = fast_path and fastpath.AVAILABLE and c.nf_path is None
    c.fast = fastpath.FastPath(fw) if use_fast else None
    c.fast_offer = None  # bound by install
    return c


def install(fw, c: Compiled) -> None:
    """Put a compiled policy into ``fw`` (a new engine's, or a reload's after the merge)."""
    for name in REBUILT + MERGED:
        setattr(fw, name, getattr(c, name))
    fw.expect.nat = fw.nat
    # Reassembly keeps its queues (unless the box changed); the limits are the policy's.
    if fw.box.name == "asa":
        if not isinstance(fw.reasm, AsaFragmentDb):
            fw.reasm = AsaFragmentDb()
        fw.reasm.settings_for = fw.policy.fragment_settings
    else:
        if not isinstance(fw.reasm, LinuxDefrag):
            fw.reasm = LinuxDefrag()
        fw.reasm.settings = fw.policy.defrag
    if fw.fast is not None:
        fw.fast_offer = fw.fast.attach(fw, Result)


def reload(fw, policy: Policy) -> tuple[int, list[str]]:
    """Put ``policy`` under the running ``fw`` in place: compiled attributes new, state kept, and for
    ``MERGED`` the new object takes the old state: the NAT table's slots and ports in use move into the
    new rules' table (a connection's xlate stays its xlate; static slots no connection uses are dropped
    so that the new statics make them again), the service policies keep their per-class counters
    (matched by scope, policy-map and class name), and the inspections are new for new connections
    while each existing one keeps its inspector and expectations. The compiled fast path copied the
    old policy's MTUs, timeouts and tcp-map switches: every connection goes back to the Python path
    and re-qualifies under the new policy on its next packet. Nothing changes when compiling raises.

    Returns the number of static translations dropped and the engine attributes it does not know
    (kept as they were).
    """
    # Faults given to the Firewall itself (not by the configuration) stay on.
    extra_faults = fw.faults - frozenset(fw.policy.faults)
    c = compile_policy(fw, policy, extra_faults, fw.fast is not None)
    unknown = sorted(set(vars(fw)) - set(REBUILT) - set(MERGED) - set(KEPT))
    if fw.fast is not None:
        fw.fast.flush()
    # NAT: new rules, old slots.
    nat = c.nat
    unknown += sorted(f"nat.{n}" for n in set(vars(nat)) - set(NAT_KEPT) - set(NAT_REBUILT) - set(NAT_MERGED))
    dropped = merge_nat(nat, {name: getattr(fw.nat, name) for name in NAT_KEPT})
    # Service policies: new classes, the counters carried by name.
    if c.service_policies is not None and fw.service_policies is not None:
        c.service_policies.uses = fw.service_policies.uses
        c.service_policies.default_counters = fw.service_policies.default_counters
    install(fw, c)
    return dropped, unknown


def merge_nat(nat, kept: dict) -> int:
    """Put the translation slots ``kept`` (``NAT_KEPT`` names) into the new rules' table ``nat``: static
    slots no connection uses are dropped (the new statics make them again), the ports live PAT slots
    hold are reserved. Returns the number of static slots dropped (``reload``, and a restored
    snapshot: ``statewall.engine.snapshot``)."""
    for name in NAT_KEPT:
        setattr(nat, name, kept[name])
    dropped = 0
    for x in list(nat.xlates.values()):
        if x.kind == "static" and x.refcount == 0:
            nat.remove(x)
            dropped += 1
        elif x.kind == "dynamic" and x.pat:
            nat._ports(x.version, x.proto, x.mapped_addr).add(x.mapped_port)
    return dropped
