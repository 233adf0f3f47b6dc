"""What a client may make the service read: files below ``--allow-root`` (symlinks and ``..``
resolved first), URLs with an allowed scheme whose host resolves only to public addresses
(unless ``--allow-private-urls``), and no text posing as a video (docs/serve.md, Security).

Limits, said plainly: a URL's host is resolved here and FFmpeg resolves it again when it opens
it (a DNS answer that changes in between is not caught), and redirects and playlists that a
public URL returns are followed by FFmpeg unchecked. Run the service where its network reaches
only what it may read, as for any fetcher of user-supplied URLs."""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from .errors import BadRequest, Forbidden, Unprocessable

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtmp": 1935, "srt": 9000}
# Texts FFmpeg would follow to other files or hosts if one were uploaded as "a video".
TEXT_SNIFF_BYTES = 4096


def check_path(path: object, roots: list[str]) -> str:
    """The real path of ``path`` (relative paths are taken below the first root) when it lies
    below one of ``roots`` (real paths) after resolving symlinks and ``..``; else
    :class:`Forbidden`. No roots: paths are refused."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise BadRequest('"path" must be a non-empty string')
    if not roots:
        raise Forbidden("paths are not accepted by this server (start it with --allow-root DIR)")
    p = Path(path)
    real = os.path.realpath(p if p.is_absolute() else Path(roots[0]) / p)
    for root in roots:
        if real == root or os.path.commonpath([real, root]) == root:
            return real
    raise Forbidden(f"{path}: outside the folders this server may read (--allow-root)")


def check_url(url: object, schemes: tuple[str, ...], allow_private: bool) -> str:
    """``url`` if its scheme is allowed and (unless ``allow_private``) every address its host
    resolves to is public; :class:`Forbidden` otherwise, :class:`BadRequest` for a malformed
    URL, :class:`Unprocessable` for a host that does not resolve. Blocking (DNS): call it off
    the event loop."""
    if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 32 for c in url):
        raise BadRequest('"url" must be a URL without spaces')
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BadRequest(f"malformed URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise Forbidden(f"URL scheme {scheme or '(none)'!r} is not accepted; use one of {', '.join(schemes)}")
    host = parts.hostname
    if not host:
        raise BadRequest("the URL names no host")
    if allow_private:
        return url
    for address in resolve(host, port or DEFAULT_PORTS.get(scheme, 0)):
        if not is_public(address):
            raise Forbidden(
                f"{host} resolves to {address}, a loopback, private or link-local address "
                "(start the server with --allow-private-urls to allow it)"
            )
    return url


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal: itself, without a lookup)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise Unprocessable(f"cannot resolve the host {host} ({getattr(e, 'strerror', None) or e})") from None
    return sorted({str(i[4][0]).split("%")[0] for i in infos})


def is_public(address: str) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 address is judged as IPv4)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def file_is_text(path: str | Path) -> bool:
    """:func:`looks_like_text` of the first ``TEXT_SNIFF_BYTES`` of a file (an upload, or a path
    below an allowed root)."""
    with open(path, "rb") as f:
        return looks_like_text(f.read(TEXT_SNIFF_BYTES))


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of an upload are text (a playlist, an SDP or concat file, a page),
    which FFmpeg would follow to other files and hosts: every character printable or
    whitespace. Video containers start with binary headers."""
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # only a character cut at the end of the sample is forgiven
            return False
        text = head[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f\v" for c in text)


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the server's."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
