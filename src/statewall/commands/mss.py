"""``statewall mss --mtu 1500 --ipsec aes256-sha1 [--ipv6] [--nat-t] [--gre]``: the MSS to clamp to.

Prints the arithmetic, one named overhead per line, the result and the ASA / netfilter lines that
apply it (``statewall.mss.clamp``); ``--quiet`` prints the number alone, for scripts.
"""

from __future__ import annotations

import argparse

from .. import mss
from . import EXIT_OK, UsageError


def run(args: argparse.Namespace) -> int:
    try:
        result = mss.clamp(
            args.mtu,
            args.ipsec,
            ipv6=args.ipv6,
            nat_t=args.nat_t,
            gre=args.gre,
            outer_ipv6=args.outer_ipv6,
            tcp_header=args.tcp_header,
        )
    except mss.CalcError as exc:
        raise UsageError(str(exc)) from None
    if args.quiet:
        print(result.mss)
        return EXIT_OK
    family = "IPv6" if args.ipv6 else "IPv4"
    extras = "".join(f" + {x}" for x, on in (("NAT-T", args.nat_t), ("GRE", args.gre)) if on)
    print(f"TCP over {family} through IPsec ESP {args.ipsec}{extras}, link MTU {args.mtu}:")
    for line in mss.explain(result, args.ipsec, args.ipv6):
        print(line)
    return EXIT_OK


def _mtu(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid MTU {text!r}") from None
    if not 68 <= value <= 65535:
        raise argparse.ArgumentTypeError("MTU must be 68..65535")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mss",
        help="calculate the TCP MSS clamp for an IPsec tunnel",
        description="The MSS that keeps TCP segments inside the link MTU once IPsec ESP (tunnel mode, "
        "worst-case padding) wraps them, with each overhead explained. Ciphers: 3des, aes128, aes192, "
        "aes256, aes128gcm, aes256gcm (ICV 8/12/16: aes256gcm16), null; integrity: md5, sha1, sha256, "
        "sha384, sha512.",
    )
    p.add_argument("--mtu", type=_mtu, default=1500, help="link MTU in bytes (default 1500)")
    p.add_argument(
        "--ipsec", required=True, metavar="CIPHER-INTEGRITY", help="ESP transform, e.g. aes256-sha1"
    )
    p.add_argument("--ipv6", action="store_true", help="the TCP traffic is IPv6 (inner header 40 bytes)")
    p.add_argument("--outer-ipv6", action="store_true", help="the tunnel itself runs over IPv6")
    p.add_argument("--nat-t", action="store_true", help="ESP in UDP (NAT traversal, 8 bytes)")
    p.add_argument("--gre", action="store_true", help="GRE over IPsec (24 bytes)")
    p.add_argument(
        "--tcp-header",
        type=int,
        default=mss.TCP_WORST,
        metavar="BYTES",
        help="TCP header allowance (default 60: 20 + up to 40 of options)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the MSS")
    p.set_defaults(func=run)
