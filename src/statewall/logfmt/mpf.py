"""``show service-policy`` and ``show running-config policy-map`` as the ASA prints them.

Owns the text of the modular policy framework's show commands. The configuration comes from the
policy model, the counters from ``statewall.mpf.ClassUse`` records (what each class application saw:
connections, normalizer drops and clears, inspected packets), never from the engine's internals.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..dialects.asa import mpf as asa_mpf
from ..dialects.asa import passthrough
from ..dialects.asa.lexer import format_duration
from ..inspect import MODELLED_ENGINES
from ..mpf import ClassUse
from ..normalizer import COUNTERS, OPTION_COUNTERS
from ..policy import ConnectionSettings, Policy

_COL = 47  # the ASA prints the normalizer counters in two columns (second one at this column)


def format_running_config_policy_map(policy: Policy) -> str:
    """``show running-config policy-map``: every policy map, ``set connection`` lines combined.

    The ASA's factory ``global_policy`` is shown when it is in effect, as on the device; inspect-type
    policy maps kept verbatim are printed first, as the ASA orders them.
    """
    rel = asa_mpf.release(policy)
    lines = ["!"]
    for block in passthrough.blocks_of(policy.passthrough):
        if block[0][1].split()[:3] == ["policy-map", "type", "inspect"]:
            lines += [text for _, text in block]
    for pm in policy.policy_maps.values():
        lines += asa_mpf.policy_map_lines(pm, rel)
    lines.append("!")
    return "\n".join(lines) + "\n"


def _two_columns(pairs: list[tuple[str, int]], indent: str) -> list[str]:
    out = []
    for i in range(0, len(pairs), 2):
        left = f"{indent}{pairs[i][0]}: {pairs[i][1]}"
        if i + 1 < len(pairs):
            out.append(f"{left:<{_COL}}{pairs[i + 1][0]}: {pairs[i + 1][1]}")
        else:
            out.append(left)
    return out


def _connection(cs: ConnectionSettings, use: ClassUse | None, policy: Policy) -> list[str]:
    lines = []
    counters = use.counters if use is not None else {}
    conn_lines = asa_mpf.connection_lines(cs, asa_mpf.release(policy))
    limits = [ln for ln in conn_lines if ln.startswith("set connection ") and "timeout" not in ln]
    limits = [ln for ln in limits if "advanced-options" not in ln]
    if limits:
        lines.append(f"      Set connection policy: {limits[0].removeprefix('set connection ')}")
        # Current counts come from statewall.limits (only a class with a limit is counted).
        lines.append(
            f"        current embryonic conns {counters.get('current_embryonic', 0)}, "
            f"current conns {counters.get('current_conns', 0)}, drop {counters.get('conn_limit_drops', 0)}"
        )
    timeouts = [ln for ln in conn_lines if ln.startswith("set connection timeout")]
    if timeouts:
        lines.append("      Set connection timeout policy:")
        words = timeouts[0].removeprefix("set connection timeout ").split(" dcd")[0]
        if words and not words.startswith("dcd"):
            lines.append(f"        {words}")
        if cs.dcd:
            lines.append(
                f"        DCD: enabled, retry-interval {format_duration(cs.dcd_retry_interval)}, "
                f"max-retries {cs.dcd_max_retries}"
            )
            lines.append(
                f"        DCD: client-probe {counters.get('dcd_client_probes', 0)}, "
                f"server-probe {counters.get('dcd_server_probes', 0)}, "
                f"conn-expiration {counters.get('dcd_expirations', 0)}"
            )
    if cs.tcp_map is not None:
        lines.append(f"      Set connection advanced-options: {cs.tcp_map}")
        lines += _two_columns([(label, counters.get(key, 0)) for key, label in COUNTERS], "        ")
        lines.append("        TCP-options:")
        lines += _two_columns([(label, counters.get(key, 0)) for key, label in OPTION_COUNTERS], "          ")
    return lines


def format_show_service_policy(
    policy: Policy, uses: Mapping[tuple[str, str, str], ClassUse] | None = None
) -> str:
    """``show service-policy``: each applied policy (global first), its classes and their counters.

    ``uses`` are the engine's class applications (``statewall.mpf.ServicePolicies.uses``); without
    them (no traffic yet) every counter is 0.
    """
    uses = uses or {}
    ordered = sorted(policy.service_policies, key=lambda sp: (sp.interface is not None, sp.interface or ""))
    lines: list[str] = []
    for sp in ordered:
        pm = policy.policy_maps.get(sp.policy_map)
        if pm is None:
            continue
        scope = "global" if sp.interface is None else sp.interface
        if lines:
            lines.append("")
        lines.append("Global policy:" if sp.interface is None else f"Interface {sp.interface}:")
        lines.append(f"  Service-policy: {pm.name}")
        for pc in pm.classes:
            use = uses.get((scope, pm.name, pc.class_map))
            lines.append(f"    Class-map: {pc.class_map}")
            for ins in pc.inspects:
                name = ins.engine + (" strict" if ins.strict else "") + (f" {ins.map}" if ins.map else "")
                if ins.max_length is not None:
                    name += f" maximum-length {ins.max_length}"
                packets = use.inspect_packets.get(ins.engine, 0) if use else 0
                drops = use.counters.get(f"inspect_{ins.engine}_drops", 0) if use else 0
                resets = use.counters.get(f"inspect_{ins.engine}_resets", 0) if use else 0
                if ins.engine not in MODELLED_ENGINES:
                    # Parsed but not implemented: never shown as an active inspection.
                    lines.append(
                        f"      Inspect: {name} (not modelled: statewall does not inspect {ins.engine})"
                    )
                    continue
                lines.append(f"      Inspect: {name}, packet {packets}, drop {drops}, reset-drop {resets}")
            if pc.connection is not None:
                lines += _connection(pc.connection, use, policy)
            for _, text in pc.other:
                lines.append(f"      {text} (not modelled)")
    return "\n".join(lines) + ("\n" if lines else "")
