"""Outbound HTTP to URLs that users give (webhooks): public addresses only, pinned, no redirects.

A user-given URL can aim the server at itself or at its private network (server-side request
forgery): ``http://169.254.169.254/`` (cloud metadata), ``http://localhost:6379/``,
``http://[::1]:8000/``, ``http://2130706433/`` (127.0.0.1 written as one number).
``check_url`` refuses such a URL when it is saved, from its literal host. ``post`` resolves
the host once, refuses it when any address it resolves to is not public, and connects to that
very address (the Host header, TLS SNI and the certificate check keep the name): a name that
resolves to a public address for the check and to 127.0.0.1 for the connection (DNS
rebinding) cannot pass. A redirect is answered, never followed.

``allowed`` (host names, addresses or networks such as ``10.0.0.0/8``) lets named internal
hosts through for closed deployments.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import urllib3

from common.errors import DomainError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that mean this machine or a cloud metadata service whatever the resolver says.
LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata",
     "metadata.google.internal", "metadata.goog", "instance-data"}
)  # fmt: skip


class RefusedURLError(DomainError):
    """The URL is not an http(s) URL to a public host."""


@dataclass(frozen=True)
class Answer:
    status: int
    location: str = ""


def refusal(address: Address) -> str | None:
    """Why ``address`` is no public destination (None when it is one). IPv4 addresses
    embedded in IPv6 (mapped, 6to4, NAT64) are judged as the IPv4 address they carry."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded)
    for kind, flagged in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local (metadata)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-global", not address.is_global),
    ):
        if flagged:
            return f"{address} is a {kind} address"
    return None


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells, in any form a resolver accepts (``127.0.0.1``, ``::1``,
    ``2130706433``, ``0x7f.1``, ``0177.0.0.1``), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


class Policy:
    """Which destinations are allowed: public addresses, plus ``allowed`` names and networks."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed:
            entry = entry.strip().lower().rstrip(".")
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry)

    def address_refusal(self, address: Address) -> str | None:
        if any(address in network for network in self.networks):
            return None
        return refusal(address)

    def parse(self, url: str) -> tuple[SplitResult, str, int]:
        """``url``'s parts, host (lower case, no brackets) and port; refused when it is no
        http(s) URL or names a host that is not allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise RefusedURLError(f"invalid URL: {exc}") from None
        if parts.scheme.lower() not in {"http", "https"}:
            raise RefusedURLError("only http and https URLs are allowed")
        try:  # the name a resolver looks up: "ⓛocalhost" is "localhost"
            host = (parts.hostname or "").encode("idna").decode("ascii").lower().rstrip(".")
        except UnicodeError:
            raise RefusedURLError("invalid host name") from None
        if not host:
            raise RefusedURLError("the URL has no host")
        if host in self.names:
            return parts, host, port
        address = literal_address(host)
        if address is not None:
            reason = self.address_refusal(address)
        elif host in LOCAL_NAMES or host.endswith(".localhost"):
            reason = f"{host} is a local name"
        else:
            reason = None
        if reason:
            raise RefusedURLError(f"{reason}; the URL must reach a public host")
        return parts, host, port

    def resolve(self, host: str, port: int) -> list[Address]:
        """Every address ``host`` resolves to, refused when any of them is not allowed."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise RefusedURLError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if host not in self.names:
            for address in addresses:
                reason = self.address_refusal(address)
                if reason:
                    raise RefusedURLError(f"{host} resolves to {reason}")
        if not addresses:
            raise RefusedURLError(f"cannot resolve {host}")
        return addresses


def check_url(url: str, *, allowed: Iterable[str] = ()) -> None:
    """Refuse (``RefusedURLError``) a URL that is not http(s) or whose host is not public."""
    Policy(allowed).parse(url)


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allowed: Iterable[str] = (),
) -> Answer:
    """POST ``body`` to ``url`` at an address checked once and then connected to (see the
    module). Raises ``RefusedURLError`` for a refused destination and ``urllib3``'s
    ``HTTPError`` for a network failure; a redirect comes back as its 3xx ``Answer``."""
    policy = Policy(allowed)
    parts, host, port = policy.parse(url)
    addresses = policy.resolve(host, port)
    https = parts.scheme.lower() == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    name = f"[{host}]" if ":" in host else host
    headers = {**headers, "Host": f"{name}:{parts.port}" if parts.port else name}

    def send(address: Address) -> Answer:
        options = {"server_hostname": host, "assert_hostname": host} if https else {}
        pool_class = urllib3.HTTPSConnectionPool if https else urllib3.HTTPConnectionPool
        with pool_class(str(address), port, timeout=timeout, retries=False, maxsize=1,
                        **options) as pool:  # fmt: skip
            response = pool.urlopen(
                "POST", target, body=body, headers=headers, redirect=False, retries=False,
                assert_same_host=False, preload_content=False,
            )  # fmt: skip
            response.close()  # the status is the answer: the body is never read
            return Answer(response.status, response.headers.get("Location", ""))

    for address in addresses[:-1]:  # the next address when one cannot be reached
        try:
            return send(address)
        except urllib3.exceptions.NewConnectionError:
            continue
    return send(addresses[-1])
