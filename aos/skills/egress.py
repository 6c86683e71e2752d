"""The one way out: every outbound HTTP client of AOS connects through a guarded transport.

http.request, both LLM providers' SDK clients (Anthropic and OpenAI, built on httpx2) and webhook
deliveries use ``guarded_transport`` instead of httpx's own. For each request it checks the URL
(http or https only; the agent's ``http_hosts`` capability); for each *connection* its network
backend resolves the host once, refuses it unless every address passes the SSRF guard
(aos.skills.ssrf, with the operator's ``AOS_HTTP_ALLOW_HOSTS``), connects to a vetted address
itself and checks that the socket's peer is that address. No second lookup happens between the
check and the connect, so a DNS answer that changes in between (rebinding) cannot reach a private
address. TLS still verifies the certificate of the URL's host name, and the connection pool is
keyed by that name.

A client that follows redirects sends each hop through the same transport, so every hop is vetted
before a byte reaches it. The clients AOS builds follow none by themselves: http.request follows
them by hand (it must also strip credentials and change methods), webhooks and LLM calls not at
all. Proxies from the environment are ignored: a proxy would connect for us and make the vetted
address meaningless.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aos.config import Settings
from aos.skills.base import SkillError
from aos.skills.ssrf import AllowList, IPAddress, Resolver, check_host, host_matches

if TYPE_CHECKING:
    import httpx
    import httpx2

# Connections are not kept alive past their request: one call, one connection. A pooled connection
# would outlive the policy it was vetted under (the next call may be another agent's).
_LIMITS = {"max_connections": 10, "max_keepalive_connections": 0}


@dataclass(frozen=True)
class EgressPolicy:
    """Where a client may connect: the operator's exceptions to the SSRF guard, and, when the call
    serves an agent, the hosts its ``http_hosts`` capability names (None: not restricted)."""

    allow: AllowList = field(default_factory=AllowList)
    hosts: tuple[str, ...] | None = None
    resolver: Resolver | None = None  # None: the system's (socket.getaddrinfo), looked up at each call

    @classmethod
    def of(cls, settings: Settings, capabilities: Mapping[str, Any] | None = None) -> EgressPolicy:
        hosts = (capabilities or {}).get("http_hosts")
        return cls(AllowList.parse(settings.http_allow_hosts), tuple(hosts) if hosts is not None else None)

    def trusting(self, host: str) -> EgressPolicy:
        """This policy, plus ``host`` as the operator's own (an LLM endpoint configured in AOS's settings,
        which may well be a private or local server): connections to it pass, to anything else as before."""
        return replace(self, allow=AllowList((*self.allow.hosts, host), self.allow.networks))

    def check_url(self, scheme: str, host: str) -> None:
        """Before a request: only HTTP(S), only hosts the agent may reach."""
        if scheme not in ("http", "https"):
            raise SkillError("HTTP_INVALID_URL", f"only http and https are allowed, not {scheme!r}",
                             details={"scheme": scheme})
        if self.hosts is not None and not any(host_matches(host, pattern) for pattern in self.hosts):
            raise SkillError("CAPABILITY_DENIED", f"the agent may not reach host {host!r} (capability http_hosts)",
                             details={"host": host, "capability": "http_hosts"})

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The vetted addresses of ``host`` (HTTP_SSRF_BLOCKED, HTTP_DNS_ERROR otherwise)."""
        return check_host(host, port, self.allow, self.resolver)


def _peer(stream: Any) -> IPAddress | None:
    sock = stream.get_extra_info("socket")
    if sock is None:
        return None
    try:
        return ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return None


def _backend_class(core: ModuleType) -> type:
    """A network backend of ``core`` (httpcore or httpcore2) that connects only to vetted addresses."""

    class GuardedBackend(core.NetworkBackend):  # type: ignore[name-defined,misc]
        def __init__(self, policy: EgressPolicy) -> None:
            self.policy = policy
            self.inner = core.SyncBackend()

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Iterable[Any] | None = None) -> Any:
            addresses = self.policy.addresses(host, port)
            for i, addr in enumerate(addresses):
                try:
                    stream = self.inner.connect_tcp(str(addr), port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
                except core.ConnectError:
                    if i == len(addresses) - 1:  # nothing was sent: the host's next address is safe to try
                        raise
                    continue
                peer = _peer(stream)
                if peer not in addresses:  # the address actually connected to, not the one asked for
                    stream.close()
                    raise SkillError("HTTP_SSRF_BLOCKED", f"connected to {peer}, not to a vetted address of "
                                     f"{host!r}", details={"host": host, "address": str(peer)})
                return stream
            raise AssertionError("unreachable: check_host returns at least one address")

        def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
            raise SkillError("HTTP_SSRF_BLOCKED", "unix sockets are not reachable from AOS's outbound clients")

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    return GuardedBackend


def _transport_class(hx: ModuleType, core: ModuleType) -> type:
    backend = _backend_class(core)

    class GuardedTransport(hx.HTTPTransport):  # type: ignore[name-defined,misc]
        """httpx's HTTPTransport whose connections come from the guarded backend."""

        def __init__(self, policy: EgressPolicy) -> None:
            super().__init__(trust_env=False)
            self.policy = policy
            # the pool httpx would build, with our backend: the only way httpx lets a transport choose how
            # it connects (tests/skills/test_egress.py fails if this stops taking effect)
            self._pool = core.ConnectionPool(ssl_context=hx.create_ssl_context(trust_env=False),
                                             network_backend=backend(policy), **_LIMITS)

        def handle_request(self, request: Any) -> Any:
            self.policy.check_url(request.url.scheme, request.url.host)
            return super().handle_request(request)

    return GuardedTransport


# Built at first use: the HTTP stacks (httpcore pulls in trio where it is installed) cost a tenth of a second
# to import, which every `aos` command that only loads the skills (`aos skills list`) would pay for nothing.
@functools.cache
def _transport(flavour: int) -> type:
    import httpcore
    import httpcore2
    import httpx
    import httpx2

    return _transport_class(httpx, httpcore) if flavour == 1 else _transport_class(httpx2, httpcore2)


def load_transports() -> None:
    """Import the HTTP stacks and build both guarded transports now: a worker does it before it forks
    (the skills' ``warm_up``), so no step spends its time limit on it."""
    _transport(1)
    _transport(2)


def guarded_transport(policy: EgressPolicy) -> httpx.BaseTransport:
    """For an ``httpx.Client`` (http.request, webhooks)."""
    return _transport(1)(policy)


def guarded_transport2(policy: EgressPolicy) -> httpx2.BaseTransport:
    """For an ``httpx2.Client``: the LLM SDKs' ``http_client``."""
    return _transport(2)(policy)


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.Client:
    """An httpx client that follows no redirect by itself and connects only where ``policy`` allows."""
    import httpx

    return httpx.Client(transport=guarded_transport(policy), follow_redirects=False, trust_env=False, **kwargs)


def guarded_client2(policy: EgressPolicy, **kwargs: Any) -> httpx2.Client:
    """The same for httpx2, to hand to the Anthropic and OpenAI SDKs as their ``http_client``."""
    import httpx2

    return httpx2.Client(transport=guarded_transport2(policy), follow_redirects=False, trust_env=False, **kwargs)


def refusal_in(exc: BaseException) -> SkillError | None:
    """The guard's refusal behind an exception a client library wrapped it in (the SDKs turn any
    transport failure into their own connection error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SkillError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
