"""The symbolic names iptables accepts and prints: protocols, services, ICMP types, TCP flags, states.

Owns every name table of the dialect, as data. iptables reads protocol and service names from the
host's ``/etc/protocols`` and ``/etc/services``; statewall never reads the host, so the tables below
carry the names a Debian/Ubuntu host has for the numbers firewall rules use. The ICMP tables, TCP flag
names, REJECT types and log levels are those compiled into iptables 1.8 (libxt_icmp, libip6t_icmp6,
libxt_tcp, libipt_REJECT, libip6t_REJECT, libxt_LOG).
"""

from __future__ import annotations

from ...policy import NF_REJECT_REPLIES

# /etc/protocols: the names ``-p`` accepts and iptables-save prints (first name of each number).
PROTOCOLS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "ipencap": 4,
    "tcp": 6,
    "egp": 8,
    "udp": 17,
    "dccp": 33,
    "ipv6": 41,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "eigrp": 88,
    "ospf": 89,
    "ipip": 94,
    "etherip": 97,
    "pim": 103,
    "ipcomp": 108,
    "vrrp": 112,
    "l2tp": 115,
    "sctp": 132,
    "mobility-header": 135,
    "udplite": 136,
}
SAVE_PROTOCOL_NAMES: dict[int, str] = {n: name for name, n in PROTOCOLS.items()}

# libxtables' xtables_chain_protos: names -p accepts without /etc/protocols, and the only names the
# listing's "prot" column shows with -n (first entry wins for a number). iptables 1.8.9 alone printed
# numbers there (netfilter bugzilla 1729, fixed in 1.8.10); statewall prints names as the others do.
CHAIN_PROTOCOLS: tuple[tuple[str, int], ...] = (
    ("tcp", 6),
    ("sctp", 132),
    ("udp", 17),
    ("udplite", 136),
    ("icmp", 1),
    ("icmpv6", 58),
    ("ipv6-icmp", 58),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-mh", 135),
    ("mh", 135),
    ("all", 0),
)
LISTING_PROTOCOL_NAMES: dict[int, str] = {}
for _name, _num in CHAIN_PROTOCOLS:
    LISTING_PROTOCOL_NAMES.setdefault(_num, _name)

# Protocols whose ports the nat targets can rewrite ("Need TCP, UDP, SCTP or DCCP with port
# specification") and that multiport accepts.
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})

# /etc/services names (TCP and UDP share numbers for these).
SERVICES: dict[str, int] = {
    "tcpmux": 1,
    "echo": 7,
    "discard": 9,
    "daytime": 13,
    "chargen": 19,
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "time": 37,
    "whois": 43,
    "tacacs": 49,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "gopher": 70,
    "finger": 79,
    "http": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "auth": 113,
    "nntp": 119,
    "ntp": 123,
    "epmap": 135,
    "netbios-ns": 137,
    "netbios-dgm": 138,
    "netbios-ssn": 139,
    "imap2": 143,
    "snmp": 161,
    "snmp-trap": 162,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "isakmp": 500,
    "syslog": 514,
    "submission": 587,
    "ldaps": 636,
    "rsync": 873,
    "imaps": 993,
    "pop3s": 995,
    "openvpn": 1194,
    "ms-sql-s": 1433,
    "l2f": 1701,
    "pptp": 1723,
    "radius": 1812,
    "radius-acct": 1813,
    "nfs": 2049,
    "mysql": 3306,
    "ms-wbt-server": 3389,
    "ipsec-nat-t": 4500,
    "sip": 5060,
    "sip-tls": 5061,
    "postgresql": 5432,
    "x11": 6000,
    "http-alt": 8080,
}

# ICMP type names (libxt_icmp): name -> (type, lowest code, highest code). Type 255 is "any".
ICMP_TYPES: dict[str, tuple[int, int, int]] = {
    "any": (0xFF, 0, 0xFF),
    "echo-reply": (0, 0, 0xFF),
    "pong": (0, 0, 0xFF),
    "destination-unreachable": (3, 0, 0xFF),
    "network-unreachable": (3, 0, 0),
    "host-unreachable": (3, 1, 1),
    "protocol-unreachable": (3, 2, 2),
    "port-unreachable": (3, 3, 3),
    "fragmentation-needed": (3, 4, 4),
    "source-route-failed": (3, 5, 5),
    "network-unknown": (3, 6, 6),
    "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9),
    "host-prohibited": (3, 10, 10),
    "TOS-network-unreachable": (3, 11, 11),
    "TOS-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13),
    "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15),
    "source-quench": (4, 0, 0xFF),
    "redirect": (5, 0, 0xFF),
    "network-redirect": (5, 0, 0),
    "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2),
    "TOS-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 0xFF),
    "ping": (8, 0, 0xFF),
    "router-advertisement": (9, 0, 0xFF),
    "router-solicitation": (10, 0, 0xFF),
    "time-exceeded": (11, 0, 0xFF),
    "ttl-exceeded": (11, 0, 0xFF),
    "ttl-zero-during-transit": (11, 0, 0),
    "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 0xFF),
    "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1),
    "timestamp-request": (13, 0, 0xFF),
    "timestamp-reply": (14, 0, 0xFF),
    "address-mask-request": (17, 0, 0xFF),
    "address-mask-reply": (18, 0, 0xFF),
}

# ICMPv6 type names (libip6t_icmp6).
ICMPV6_TYPES: dict[str, tuple[int, int, int]] = {
    "destination-unreachable": (1, 0, 0xFF),
    "no-route": (1, 0, 0),
    "communication-prohibited": (1, 1, 1),
    "beyond-scope": (1, 2, 2),
    "address-unreachable": (1, 3, 3),
    "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5),
    "reject-route": (1, 6, 6),
    "packet-too-big": (2, 0, 0xFF),
    "time-exceeded": (3, 0, 0xFF),
    "ttl-exceeded": (3, 0, 0xFF),
    "ttl-zero-during-transit": (3, 0, 0),
    "ttl-zero-during-reassembly": (3, 1, 1),
    "parameter-problem": (4, 0, 0xFF),
    "bad-header": (4, 0, 0),
    "unknown-header-type": (4, 1, 1),
    "unknown-option": (4, 2, 2),
    "echo-request": (128, 0, 0xFF),
    "ping": (128, 0, 0xFF),
    "echo-reply": (129, 0, 0xFF),
    "pong": (129, 0, 0xFF),
    "mld-listener-query": (130, 0, 0xFF),
    "mld-listener-report": (131, 0, 0xFF),
    "mld-listener-done": (132, 0, 0xFF),
    "mld-listener-reduction": (132, 0, 0xFF),
    "router-solicitation": (133, 0, 0xFF),
    "router-advertisement": (134, 0, 0xFF),
    "neighbour-solicitation": (135, 0, 0xFF),
    "neighbor-solicitation": (135, 0, 0xFF),
    "neighbour-advertisement": (136, 0, 0xFF),
    "neighbor-advertisement": (136, 0, 0xFF),
    "redirect": (137, 0, 0xFF),
}

# libxt_tcp flag names, in the order iptables-save prints them. ALL is the six classic flags
# (ECE and CWR are not names libxt_tcp knows).
TCP_FLAGS: dict[str, int] = {
    "FIN": 0x01,
    "SYN": 0x02,
    "RST": 0x04,
    "PSH": 0x08,
    "ACK": 0x10,
    "URG": 0x20,
}
TCP_FLAGS_ALL = 0x3F
# --syn is --tcp-flags FIN,SYN,RST,ACK SYN.
SYN_FLAGS = (0x17, 0x02)

# Conntrack states in the order libxt_state / libxt_conntrack print them.
STATES: tuple[str, ...] = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED")
CTSTATES: tuple[str, ...] = (*STATES, "SNAT", "DNAT")

# REJECT --reject-with: accepted spellings -> the name iptables-save prints.
REJECT_TYPES_V4: dict[str, str] = {
    "icmp-net-unreachable": "icmp-net-unreachable",
    "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable",
    "host-unreach": "icmp-host-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable",
    "port-unreach": "icmp-port-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited",
    "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited",
    "host-prohib": "icmp-host-prohibited",
    "tcp-reset": "tcp-reset",
    "tcp-rst": "tcp-reset",
    "icmp-admin-prohibited": "icmp-admin-prohibited",
    "admin-prohib": "icmp-admin-prohibited",
}
REJECT_TYPES_V6: dict[str, str] = {
    "icmp6-no-route": "icmp6-no-route",
    "no-route": "icmp6-no-route",
    "icmp6-adm-prohibited": "icmp6-adm-prohibited",
    "adm-prohibited": "icmp6-adm-prohibited",
    "icmp6-addr-unreachable": "icmp6-addr-unreachable",
    "addr-unreach": "icmp6-addr-unreachable",
    "icmp6-port-unreachable": "icmp6-port-unreachable",
    "port-unreach": "icmp6-port-unreachable",
    "icmp6-policy-fail": "icmp6-policy-fail",
    "policy-fail": "icmp6-policy-fail",
    "icmp6-reject-route": "icmp6-reject-route",
    "reject-route": "icmp6-reject-route",
    "tcp-reset": "tcp-reset",
    "tcp-rst": "tcp-reset",
}
# What each REJECT type sends: ("icmp", type, code) or ("tcp-reset",).
REJECT_REPLIES = NF_REJECT_REPLIES

# syslog levels for LOG --log-level.
LOG_LEVELS: dict[str, int] = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "error": 3,
    "err": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
# LOG option flags (NF_LOG_*), in the order iptables-save prints them.
LOG_FLAGS: tuple[tuple[str, int], ...] = (
    ("--log-tcp-sequence", 0x01),
    ("--log-tcp-options", 0x02),
    ("--log-ip-options", 0x04),
    ("--log-uid", 0x08),
    ("--log-macdecode", 0x20),
)

# Conntrack helpers a kernel provides (``CT --helper``, ``-m helper``); statewall inspects ftp.
HELPERS = frozenset(
    {"ftp", "tftp", "irc", "sip", "amanda", "pptp", "sane", "snmp", "netbios-ns", "RAS", "Q.931"}
)
