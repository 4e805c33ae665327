"""Socket options of BGP connections on Linux: TCP MD5 signatures (RFC 2385) and GTSM (RFC 5082)."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
import termios

# Linux numbers the socket module does not export (linux/tcp.h, linux/in.h, linux/in6.h)
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21
IPV6_MINHOPCOUNT = 73


def md5sig(address: str, key: bytes) -> bytes:
    """struct tcp_md5sig for `address`; an empty key removes the entry."""
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP MD5 key longer than {TCP_MD5SIG_MAXKEYLEN} octets")
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + ip.packed
    else:
        sockaddr = (
            struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + ip.packed + struct.pack("=I", 0)
        )
    sockaddr = sockaddr.ljust(128, b"\0")  # struct __kernel_sockaddr_storage
    return sockaddr + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")


def set_md5(sock: socket.socket, peer: str, password: str | None) -> None:
    """Install (or with None remove) the TCP MD5 key for `peer` on `sock`."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, (password or "").encode()))
    except OSError as error:
        if password is None and error.errno == errno.ENOENT:
            return  # there was no key to remove
        raise


def set_ttl_security(sock: socket.socket, hops: int) -> None:
    """GTSM: send with TTL 255, accept only what left its sender at most `hops` hops away."""
    minimum = 256 - hops
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, minimum)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, minimum)


def ttl_options(sock: socket.socket) -> tuple[int, int]:
    """(outgoing TTL, minimum incoming TTL) as the kernel has them, for checks and status."""
    if sock.family == socket.AF_INET6:
        return (
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
            sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT),
        )
    return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL)


def unread_bytes(sock: socket.socket | None) -> int:
    if sock is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("=i", buf)[0])




# struct tcp_info (linux/tcp.h): eight one-octet fields, then 32-bit counters; tcpi_last_data_recv,
# milliseconds since the connection last received data (or since its handshake completed, before any
# data), is the 12th of those
_TCP_INFO_LAST_DATA_RECV = 8 + 11 * 4


def last_received(sock: socket.socket | None) -> float | None:
    """Seconds since an accepted connection last received data, or completed its handshake when no
    data came yet: how long a connection with the peer's OPEN in it has waited in the accept queue.
    None when the kernel does not say."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LAST_DATA_RECV + 4)
    except OSError:
        return None
    if len(info) < _TCP_INFO_LAST_DATA_RECV + 4:
        return None
    return float(struct.unpack_from("=I", info, _TCP_INFO_LAST_DATA_RECV)[0]) / 1000.0
