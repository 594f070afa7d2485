"""An mDNS asker for tests/image.rs: run in a network namespace beside the
board's, it prints one line per answer it got for NAME:
  announce ADDRESS        an unsolicited announcement (with --announce)
  multicast ADDRESS TTL   the answer to a QM question, sent to the group
  unicast ADDRESS TTL     the answer to a QU question, sent to us
  legacy ID ADDRESS TTL   the answer to a plain DNS query from a random port
and "ready" once it listens. Each wait is bounded (10 s)."""
import socket
import struct
import sys

GROUP = "224.0.0.251"
name = sys.argv[1]
announce = "--announce" in sys.argv


def encode(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"


def query(qid, qclass):
    return struct.pack(">6H", qid, 0, 1, 0, 0, 0) + encode(name) + struct.pack(">2H", 1, qclass)


def skip_name(p, at):
    while True:
        n = p[at]
        if n & 0xC0 == 0xC0:
            return at + 2
        if n == 0:
            return at + 1
        at += 1 + n


def answer(p):
    """(id, address, ttl) of a response's first A record, or None."""
    qid, flags, qd, an = struct.unpack(">4H", p[:8])
    if not flags & 0x8000 or an == 0:
        return None
    at = 12
    for _ in range(qd):
        at = skip_name(p, at) + 4
    at = skip_name(p, at)
    rtype, _, ttl, rdlen = struct.unpack(">HHIH", p[at:at + 10])
    if rtype != 1 or rdlen != 4:
        return None
    return qid, socket.inet_ntoa(p[at + 10:at + 14]), ttl


def wait(sock):
    sock.settimeout(10)
    while True:
        data, _ = sock.recvfrom(9000)
        got = answer(data)
        if got:
            return got


mdns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
mdns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
mdns.bind(("", 5353))
mdns.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton(GROUP) + socket.inet_aton("0.0.0.0"))
print("ready", flush=True)
if announce:
    print("announce", wait(mdns)[1], flush=True)
    # The second announcement, a second later, is not waited for; drain it.
    try:
        mdns.settimeout(2)
        mdns.recvfrom(9000)
    except socket.timeout:
        pass

mdns.sendto(query(0, 1), (GROUP, 5353))
_, address, ttl = wait(mdns)
print("multicast", address, ttl, flush=True)

mdns.sendto(query(0, 0x8001), (GROUP, 5353))
_, address, ttl = wait(mdns)
print("unicast", address, ttl, flush=True)

legacy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
legacy.bind(("", 0))
legacy.sendto(query(0x4242, 1), (GROUP, 5353))
qid, address, ttl = wait(legacy)
print("legacy", hex(qid), address, ttl, flush=True)
