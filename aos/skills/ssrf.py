"""The SSRF guard of http.request: which hosts and addresses a skill may connect to.

A plan comes from an agent or a user, so its URLs cannot be trusted to point at
the public internet: ``http://169.254.169.254/`` hands out cloud credentials and
``http://10.0.0.5/admin`` reaches the operator's private network. Before every
connection (the first request and every redirect hop) the host is resolved and
refused when *any* of its addresses is not publicly routable, unless the
operator allow-listed it (``AOS_HTTP_ALLOW_HOSTS``: hostnames, ``*.suffix``
wildcards, IPs or CIDRs).

The verdict is made on the *resolved* addresses, parsed by ``ipaddress``, so
spellings such as ``2130706433``, ``0x7f.1`` or ``[::ffff:127.0.0.1]`` cannot
slip through: they resolve to the loopback address like any other name. Every
outbound client connects through aos.skills.egress, which connects to the vetted
address itself (no second lookup), closing the DNS-rebinding window between
check and connect.

Cloud metadata endpoints are stricter than the rest: only an entry naming that
exact host or address unlocks them; a wide CIDR such as ``169.254.0.0/16`` or
``0.0.0.0/0`` does not, because one careless entry must not expose credentials.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aos.skills.base import SkillError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list]

# Instance-metadata services of the major clouds (AWS/GCP/Azure/OpenStack, AWS IPv6,
# AWS ECS task metadata, Alibaba).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
METADATA_HOSTS: frozenset[str] = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

# IPv6 prefixes that carry an IPv4 address in their last 32 bits and route to it.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def normalize_host(host: str) -> str:
    """Lower-case, without the trailing dot of a fully qualified name or IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


def parse_ip(text: str) -> IPAddress | None:
    """The address ``text`` spells in canonical form, or None when it is a name."""
    try:
        return ipaddress.ip_address(normalize_host(text))
    except ValueError:
        return None


def host_matches(host: str, pattern: str) -> bool:
    """``pattern`` is a hostname, ``*.suffix`` (any subdomain, not the suffix itself) or ``*`` (anything)."""
    host, pattern = normalize_host(host), normalize_host(pattern)
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class AllowList:
    """The operator's exceptions to the guard (``AOS_HTTP_ALLOW_HOSTS``)."""

    hosts: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = normalize_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.append(entry)
        return cls(tuple(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return any(host_matches(host, h) for h in self.hosts)

    def allows_address(self, addr: IPAddress) -> bool:
        inner = embedded_ipv4(addr)
        if inner is not None and self.allows_address(inner):
            return True
        if addr in METADATA_ADDRESSES:
            return any(net.num_addresses == 1 and addr in net for net in self.networks)
        return any(addr.version == net.version and addr in net for net in self.networks)


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if any(addr in net for net in _NAT64):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_metadata(addr: IPAddress) -> bool:
    """Whether ``addr`` is (or embeds) a cloud instance-metadata address."""
    inner = embedded_ipv4(addr)
    return addr in METADATA_ADDRESSES or (inner is not None and inner in METADATA_ADDRESSES)


def address_risk(addr: IPAddress) -> str | None:
    """Why connecting to ``addr`` is refused (e.g. ``"loopback"``), or None for a public address."""
    inner = embedded_ipv4(addr)
    if inner is not None:
        reason = address_risk(inner)
        return f"{reason} (embedded in {addr})" if reason else None
    if addr in METADATA_ADDRESSES:
        return "cloud metadata"
    checks = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("private", addr.is_private),
        ("reserved", addr.is_reserved),
        # catches what the flags above miss, e.g. 100.64.0.0/10 (carrier-grade NAT)
        ("not globally routable", not addr.is_global),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None


def resolve(host: str, port: int, resolver: Resolver | None = None) -> list[IPAddress]:
    """Every address ``host`` resolves to for TCP, in the resolver's order; HTTP_DNS_ERROR when none.

    The system resolver is looked up at each call (not bound once), so whatever resolves names for
    the process, resolves them here."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = (resolver or socket.getaddrinfo)(normalize_host(host), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SkillError("HTTP_DNS_ERROR", f"cannot resolve host {host!r}: {exc}",
                         details={"host": host}) from None
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        try:
            addr = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            continue
        if addr not in seen:
            seen.append(addr)
    if not seen:
        raise SkillError("HTTP_DNS_ERROR", f"host {host!r} resolves to no usable address", details={"host": host})
    return seen


def check_host(host: str, port: int, allow: AllowList, resolver: Resolver | None = None) -> list[IPAddress]:
    """The addresses that may be connected to for ``host``; HTTP_SSRF_BLOCKED if any one is refused.

    All addresses must pass, not just the first: a name that resolves to one
    public and one private address would otherwise be a coin toss away from
    the private network.
    """
    name = normalize_host(host)
    if name in METADATA_HOSTS and name not in allow.hosts:
        raise SkillError("HTTP_SSRF_BLOCKED", f"host {host!r} is a cloud metadata service",
                         details={"host": host, "reason": "cloud metadata"})
    addresses = resolve(host, port, resolver)
    host_allowed = allow.allows_host(name)
    for addr in addresses:
        reason = address_risk(addr)
        if reason is None or allow.allows_address(addr):
            continue
        if host_allowed and not is_metadata(addr):
            continue
        raise SkillError(
            "HTTP_SSRF_BLOCKED",
            f"host {host!r} resolves to {addr} ({reason}); add it to AOS_HTTP_ALLOW_HOSTS to allow it",
            details={"host": host, "address": str(addr), "reason": reason},
        )
    return addresses
