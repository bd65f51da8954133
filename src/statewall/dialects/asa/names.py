"""The ASA's symbolic names: IP protocols, TCP/UDP ports, ICMP and ICMPv6 types, logging levels.

Tables only, both directions, so that parsing accepts what an ASA accepts and printing uses the
names an ASA's ``show running-config`` shows (``eq www``, ``echo-reply``).
"""

from __future__ import annotations

PROTOCOLS: dict[str, int] = {
    "ah": 51,
    "ahp": 51,
    "eigrp": 88,
    "esp": 50,
    "gre": 47,
    "icmp": 1,
    "icmp6": 58,
    "igmp": 2,
    "igrp": 9,
    "ipinip": 4,
    "ipsec": 50,
    "nos": 94,
    "ospf": 89,
    "pcp": 108,
    "pim": 103,
    "pptp": 47,
    "sctp": 132,
    "snp": 109,
    "tcp": 6,
    "udp": 17,
}
# The name printed for a number; aliases (ahp, ipsec, pptp) parse but do not print.
PROTOCOL_NAMES: dict[int, str] = {
    1: "icmp",
    2: "igmp",
    4: "ipinip",
    6: "tcp",
    9: "igrp",
    17: "udp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmp6",
    88: "eigrp",
    89: "ospf",
    94: "nos",
    103: "pim",
    108: "pcp",
    109: "snp",
    132: "sctp",
}

# ASA port literals (Cisco "Protocols and Applications" table), per protocol.
_BOTH = {
    "cifs": 3020,
    "discard": 9,
    "domain": 53,
    "echo": 7,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "nfs": 2049,
    "pim-auto-rp": 496,
    "sip": 5060,
    "sunrpc": 111,
    "tacacs": 49,
    "talk": 517,
}
TCP_PORTS: dict[str, int] = {
    **_BOTH,
    "aol": 5190,
    "bgp": 179,
    "chargen": 19,
    "citrix-ica": 1494,
    "cmd": 514,
    "ctiqbe": 2748,
    "daytime": 13,
    "exec": 512,
    "finger": 79,
    "ftp": 21,
    "ftp-data": 20,
    "gopher": 70,
    "h323": 1720,
    "hostname": 101,
    "https": 443,
    "ident": 113,
    "imap4": 143,
    "irc": 194,
    "klogin": 543,
    "kshell": 544,
    "ldap": 389,
    "ldaps": 636,
    "login": 513,
    "lotusnotes": 1352,
    "lpd": 515,
    "netbios-ssn": 139,
    "nntp": 119,
    "pcanywhere-data": 5631,
    "pop2": 109,
    "pop3": 110,
    "pptp": 1723,
    "rsh": 514,
    "rtsp": 554,
    "smtp": 25,
    "sqlnet": 1521,
    "ssh": 22,
    "telnet": 23,
    "uucp": 540,
    "whois": 43,
}
UDP_PORTS: dict[str, int] = {
    **_BOTH,
    "biff": 512,
    "bootpc": 68,
    "bootps": 67,
    "dnsix": 195,
    "isakmp": 500,
    "mobile-ip": 434,
    "nameserver": 42,
    "netbios-dgm": 138,
    "netbios-ns": 137,
    "ntp": 123,
    "pcanywhere-status": 5632,
    "radius": 1645,
    "radius-acct": 1646,
    "rip": 520,
    "secureid-udp": 5510,
    "snmp": 161,
    "snmptrap": 162,
    "syslog": 514,
    "tftp": 69,
    "time": 37,
    "who": 513,
    "xdmcp": 177,
}


def _reverse(table: dict[str, int], preferred: dict[int, str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, number in sorted(table.items()):
        out.setdefault(number, name)
    out.update(preferred)
    return out


# Where several names share a number, the ASA prints the preferred one (80 is "www", not "http").
TCP_PORT_NAMES = _reverse(TCP_PORTS, {80: "www", 514: "rsh"})
UDP_PORT_NAMES = _reverse(UDP_PORTS, {80: "www"})


def port_number(name: str, protocol: str) -> int | None:
    """The number of a port name for tcp, udp, or tcp-udp (which needs the name in both tables)."""
    if protocol == "tcp":
        return TCP_PORTS.get(name)
    if protocol == "udp":
        return UDP_PORTS.get(name)
    tcp, udp = TCP_PORTS.get(name), UDP_PORTS.get(name)
    return tcp if tcp is not None and tcp == udp else None


def port_name(number: int, protocol: str) -> str:
    """How the ASA prints a port: its name when it has one for the protocol, else the number."""
    if protocol == "tcp":
        return TCP_PORT_NAMES.get(number, str(number))
    if protocol == "udp":
        return UDP_PORT_NAMES.get(number, str(number))
    tcp, udp = TCP_PORT_NAMES.get(number), UDP_PORT_NAMES.get(number)
    return tcp if tcp is not None and tcp == udp else str(number)


ICMP_TYPES: dict[str, int] = {
    "echo-reply": 0,
    "unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "alternate-address": 6,
    "echo": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
    "information-request": 15,
    "information-reply": 16,
    "mask-request": 17,
    "mask-reply": 18,
    "traceroute": 30,
    "conversion-error": 31,
    "mobile-redirect": 32,
}
ICMP6_TYPES: dict[str, int] = {
    "unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo": 128,
    "echo-reply": 129,
    "membership-query": 130,
    "membership-report": 131,
    "membership-reduction": 132,
    "router-solicitation": 133,
    "router-advertisement": 134,
    "neighbor-solicitation": 135,
    "neighbor-advertisement": 136,
    "neighbor-redirect": 137,
    "router-renumbering": 138,
}
ICMP_TYPE_NAMES = {v: k for k, v in ICMP_TYPES.items()}
ICMP6_TYPE_NAMES = {v: k for k, v in ICMP6_TYPES.items()}

LOG_LEVELS: dict[str, int] = {
    "emergencies": 0,
    "alerts": 1,
    "critical": 2,
    "errors": 3,
    "warnings": 4,
    "notifications": 5,
    "informational": 6,
    "debugging": 7,
}
