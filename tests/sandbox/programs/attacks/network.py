"""Case 3 (and the reverse shell): reach the outside world. argv: host address, port."""

import socket
import sys
import urllib.request

from probe import outcome, probe, say

host, port = sys.argv[1], int(sys.argv[2])


def fetch() -> None:
    urllib.request.urlopen("https://example.com", timeout=1)


def tcp(address: str, target_port: int) -> None:
    with socket.create_connection((address, target_port), timeout=1):
        pass


def dns_query() -> None:
    query = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(1)
        udp.sendto(query, ("8.8.8.8", 53))
        udp.recv(512)


def resolve() -> None:
    socket.getaddrinfo("example.com", 443)


urllib_result = outcome(fetch)
say("urllib", "fail" if urllib_result != "ok" else "ok")
say("resolve", "fail" if outcome(resolve) != "ok" else "ok")
probe("tcp-literal", tcp, "93.184.215.14", 80)
probe("udp-dns", dns_query)
probe("host-loopback", tcp, "127.0.0.1", port)
probe("host-address", tcp, host, port)
