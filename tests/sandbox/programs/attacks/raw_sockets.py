"""Case 35: raw, packet and exotic sockets; netlink changes to the interfaces."""

import socket
import struct

from probe import errname, outcome, say

AF_VSOCK, AF_ALG, AF_KEY, AF_XDP = 40, 38, 15, 44
for name, args in (
    ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0)),
    ("inet-raw-icmp", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
    ("ping", (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)),
    ("inet6-raw", (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
    ("vsock", (AF_VSOCK, socket.SOCK_STREAM, 0)),
    ("alg", (AF_ALG, socket.SOCK_SEQPACKET, 0)),
    ("key", (AF_KEY, socket.SOCK_RAW, 2)),
    ("xdp", (AF_XDP, socket.SOCK_RAW, 0)),
):
    say(name, outcome(lambda: socket.socket(*args).close()))

RTM_NEWLINK, RTM_NEWADDR = 16, 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL = 1, 4, 0x400, 0x200
IFF_UP = 1


def netlink(message_type: int, flags: int, body: bytes) -> str:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(1)
        header = struct.pack("=LHHLL", 16 + len(body), message_type, flags, 1, 0)
        sock.send(header + body)
        reply = sock.recv(65536)
        code = struct.unpack("=i", reply[16:20])[0]
        return "ok" if code == 0 else errname(OSError(-code, ""))


say("netlink-open", outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()))
lo = socket.if_nametoindex("lo")
link = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, lo, IFF_UP, IFF_UP)
say("netlink-lo-up", netlink(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, link))
address = struct.pack("=BBBBi", socket.AF_INET, 8, 0, 0, lo)
attribute = struct.pack("=HH4s", 8, 2, socket.inet_aton("10.66.0.1"))
say("netlink-add-address", netlink(
    RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, address + attribute
))
