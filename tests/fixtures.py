"""The devices the tests share, and the small helpers every engine test reaches for.

Three networks recur through the articles:

- Seed 000's PIX: the client 10.0.0.2 on ``inside`` (10.0.0.1/24, security 100), the server 192.168.9.2 on
  ``outside`` (192.168.9.30/24, security 0), the inside network PAT'd to the outside address. The
  seed's transcript is ``configs/seed000.cfg``; the same device as a running-config is built here from
  its parts, so a test can take it with or without the translation.
- The published web server: an ASA 9 with ``outside`` 203.0.113.1/24 and ``inside`` 192.168.1.1/24,
  the server 192.168.1.10 reached from outside through the access list ``OUTSIDE_IN``.
- A dual-stack ASA 9 for object NAT: ``outside`` 192.0.2.1/24 and 2001:db8:ffff::1/64, ``inside``
  10.0.0.1/24 and 2001:db8:1::1/64.

A configuration whose point is the test itself stays inline in that test.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"


def config(name: str) -> str:
    """The text of ``configs/<name>``."""
    return (CONFIGS / name).read_text()


def kinds(events, cls) -> list:
    """The events of type ``cls``, in order."""
    return [e for e in events if isinstance(e, cls)]


# --------------------------------------------------------------------------------------------------
# Seed 000's PIX

CLIENT, SERVER, MAPPED = "10.0.0.2", "192.168.9.2", "192.168.9.30"

# The transcript as the seed gives it, prompts and all.
SEED000 = config("seed000.cfg")

PIX_INTERFACES = """\
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.168.9.30 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
"""
PIX_ROUTE = "route outside 0.0.0.0 0.0.0.0 192.168.9.2 1\n"
# Seed 000 as a running-config: PAT of the inside network to the outside interface.
PIX_PAT = PIX_INTERFACES + "global (outside) 1 interface\nnat (inside) 1 10.0.0.0 255.0.0.0\n" + PIX_ROUTE
# The same device without translation.
PIX_NO_NAT = PIX_INTERFACES + PIX_ROUTE


# --------------------------------------------------------------------------------------------------
# The published web server

ASA_INTERFACES = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
"""
# The interfaces, the access list letting the outside reach the server's port 80, the default route.
ASA_WEB = (
    ASA_INTERFACES
    + """\
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 eq www
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.254
"""
)


# --------------------------------------------------------------------------------------------------
# Browsing from the inside

# Its interfaces: outside 203.0.113.1/24, inside 10.1.1.1/24.
BROWSING_INTERFACES = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
"""
# The inside network 10.1.1.0/24 may reach web servers (tcp/80) outside, untranslated.
ASA_BROWSING = (
    "hostname fw\n"
    + BROWSING_INTERFACES
    + """\
route outside 0.0.0.0 0.0.0.0 203.0.113.254
access-list INSIDE_IN extended permit tcp 10.1.1.0 255.255.255.0 any eq www
access-group INSIDE_IN in interface inside
"""
)
# The same, the inside translated to the outside interface's address (PAT).
ASA_BROWSING_PAT = (
    ASA_BROWSING
    + """\
global (outside) 1 interface
nat (inside) 1 10.1.1.0 255.255.255.0
"""
)


# --------------------------------------------------------------------------------------------------
# The dual-stack ASA 9

DUAL_STACK_INTERFACES = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
 ipv6 address 2001:db8:ffff::1/64
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
 ipv6 address 2001:db8:1::1/64
"""


# iptables-save's nat table of a box that masquerades everything leaving by eth0.
MASQUERADE_ETH0 = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
"""
