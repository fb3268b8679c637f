"""The recordingUrl guard against server-side request forgery (SSRF), checked at ingest.

A recordingUrl is a URL *we* will fetch later (the transcriber downloads the recording), so a
client could aim it at our own network: cloud metadata (169.254.169.254), localhost admin ports,
private services. This check is static: it looks at the URL text only and does no DNS lookup
(ingest must stay fast and must not be a DNS oracle). It rejects what can be judged without
resolving:

- a scheme other than http or https;
- credentials in the URL (`https://user:pass@host/`): they would end up in topics and logs;
- an IP literal host (any spelling the fetching libraries accept: dotted, integer, octal or hex
  IPv4, IPv6 with or without a zone, IPv4-mapped IPv6) that is not globally routable: private,
  loopback, link-local (which holds the metadata address), shared, reserved, multicast,
  unspecified;
- host names that name this machine or a cloud metadata service, or only make sense inside a
  private network: `localhost` and `*.localhost`, `*.local`, `*.internal`
  (`metadata.google.internal`), `*.localdomain`, `*.home.arpa`, `instance-data`, and any
  single-label name (it would be completed by the resolver's search domains).

What it cannot know is what a public-looking name resolves to at fetch time (an attacker's
DNS can answer 10.0.0.1, or change its answer between two lookups: DNS rebinding). The fetcher
must therefore resolve the name itself, re-apply the same address rules to every resolved
address, connect to the address it checked (not resolve again), and refuse redirects to
addresses or schemes that fail these rules. docs/security.md says the same for the transcriber's
authors.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")
BLOCKED_HOSTS = frozenset({"localhost", "localhost.localdomain", "instance-data",
                           "metadata", "metadata.google.internal", "metadata.azure.com"})
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip_literal(host: str) -> IpAddress | None:
    """The address a host string denotes if it is an IP literal in any accepted spelling."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    bare = bare.split("%", 1)[0]  # an IPv6 zone id ("fe80::1%eth0") does not change the range
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    # inet_aton accepts what C resolvers and curl accept: "127.1", "2130706433", "0x7f.0.0.1",
    # "0177.0.0.1". ipaddress does not, so check those spellings here.
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def address_problem(address: IpAddress) -> str | None:
    """Why an address must not be fetched, or None if it is a public unicast address.

    The fetcher applies this same function to every address a host name resolves to."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return address_problem(mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata lives there)"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if not address.is_global:
        return "private or reserved"
    return None


def recording_url_problem(url: str) -> str | None:
    """A sentence saying why this recordingUrl is refused, or None if it passes the static check.

    The sentence never repeats the URL: URLs can carry signed query strings (secrets)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "must be an absolute http:// or https:// URL"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return "must be an absolute http:// or https:// URL"
    if "@" in parts.netloc:
        return "must not contain a user name or password; put credentials in the query string"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "must name a host"
    address = _ip_literal(host)
    if address is not None:
        reason = address_problem(address)
        if reason is not None:
            return f"must not point at a {reason} address; use a public host name"
        return None
    if host in BLOCKED_HOSTS or host.endswith(BLOCKED_SUFFIXES):
        return "must not point at a local, internal or metadata host name"
    if "." not in host:
        return "must use a fully qualified public host name"
    return None
