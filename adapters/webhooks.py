"""Outgoing webhook requests: a signed POST to a client's endpoint, never to an address that a
production deployment must not reach (its own network, the cloud's metadata service).

A URL is checked when it is registered and again at every delivery, after its host is resolved:
the request then goes to the address that was checked (the URL's host is replaced by it; the
`Host` header and TLS's SNI and certificate check keep the name), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot point it elsewhere.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from domain.errors import UrlNotAllowed
from domain.notifications import is_forbidden_address

#: host, port -> the addresses the host resolves to.
Resolver = Callable[[str, int], list[str]]

TIMEOUT_SECONDS = 10.0


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_url(url: str, *, https_only: bool) -> httpx.URL:
    """The URL if it is one a delivery can be POSTed to; UrlNotAllowed otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise UrlNotAllowed("the URL is not valid", details={"url": url}) from None
    schemes = ("https",) if https_only else ("http", "https")
    if parsed.scheme not in schemes or not parsed.host:
        raise UrlNotAllowed(f"the URL must be {' or '.join(schemes)} with a host", details={"url": url})
    if parsed.userinfo:
        raise UrlNotAllowed("the URL must not carry credentials; the signature authenticates", details={"url": url})
    return parsed


def checked_addresses(parsed: httpx.URL, resolve: Resolver) -> list[str]:
    """Every address the URL's host resolves to, if none is forbidden; UrlNotAllowed otherwise."""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(parsed.host, port)
    if not addresses:
        raise UrlNotAllowed("the URL's host does not resolve", details={"host": parsed.host})
    forbidden = [address for address in addresses if is_forbidden_address(address)]
    if forbidden:
        raise UrlNotAllowed(
            "the URL reaches a loopback, private or reserved address", details={"host": parsed.host},
        )
    return addresses


def check_url(url: str, *, allow_private: bool, https_only: bool, resolve: Resolver = system_resolver) -> None:
    """Refuse a URL a delivery could not or must not be sent to (at registration)."""
    parsed = parse_url(url, https_only=https_only)
    if not allow_private:
        checked_addresses(parsed, resolve)


@dataclass(frozen=True)
class Answer:
    """How a receiver answered: its status code, or why there was none."""

    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """POSTs deliveries; one per process (its connection pool is shared by threads)."""

    def __init__(
        self, *, allow_private: bool, resolve: Resolver = system_resolver,
        timeout: float = TIMEOUT_SECONDS, transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolve = resolve
        # Redirects are not followed: a 3xx is an answer that is not a 2xx (and could point inward).
        self.client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        try:
            target, host_headers, extensions = self._route(url)
            with self.client.stream(
                "POST", target, content=body, extensions=extensions,
                headers={"Content-Type": "application/json", **headers, **host_headers},
            ) as response:
                # The body is never read: only the status matters, and it could be endless.
                return Answer(response.status_code)
        except UrlNotAllowed as refused:
            return Answer(None, f"url_not_allowed: {refused.message}")
        except httpx.TimeoutException:
            return Answer(None, "timeout")
        except httpx.HTTPError as failure:
            return Answer(None, f"{type(failure).__name__}: {failure}"[:500])

    def _route(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """Where to connect: the URL itself, or (checking) its host's first address, pinned."""
        parsed = parse_url(url, https_only=False)
        if self.allow_private:
            return parsed, {}, {}
        address = checked_addresses(parsed, self.resolve)[0]
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        return parsed.copy_with(host=address), {"Host": parsed.netloc.decode("ascii")}, extensions

    def close(self) -> None:
        self.client.close()
