"""URLs as inputs: which text is a URL, which URL is a live stream, and the one way a URL is
shown anywhere (records' ``path``, warnings, errors, logs, watch records): without its password.

Where the userinfo ends. ``urllib.parse`` (and FFmpeg) read the authority as RFC 3986 does: it
runs to the first ``/``, ``?`` or ``#`` and its last ``@`` ends the userinfo. That reading alone
would show ``ss/w:rd`` of the password ``P@ss/w:rd``, and all of ``pa/ss`` in
``rtsp://admin:pa/ss@host/``, so here the userinfo runs to the *last* ``@`` before the query
(``?``) or fragment (``#``): every ``@``, ``/``, ``:`` and ``%``-escape a password holds is
masked. When no ``@`` comes before the query but the authority urllib finds is ``user:X`` with an
``X`` that is no port number, the password holds an unescaped ``?`` or ``#``: the userinfo then
runs to the last ``@`` of the URL. The cost of erring safe: a URL whose *path* holds an ``@``
after a ``user:password@`` or a ``host:port`` shows less of its path (never more of a password).
Not covered: a password with both an ``@`` and an unescaped ``?``/``#`` (no tool can use such a
URL; escape them as ``%3F``/``%23``).
"""

from __future__ import annotations

import re
import urllib.parse

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "srt", "tcp")
URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# "user:password@host" inside free text (FFmpeg's and urllib's messages may quote a URL)
_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
MASK = "***"


def is_url(text: str) -> bool:
    """``scheme://...``: a URL, not a path."""
    return URL_PATTERN.match(text) is not None


def is_live_url(text: str) -> bool:
    """A URL whose scheme is a live stream's (rtsp, rtmp, udp, srt, ...): no end, reconnect."""
    return is_url(text) and text.split("://", 1)[0].lower() in LIVE_SCHEMES


def is_network_url(text: str) -> bool:
    """A URL FFmpeg reads over the network (every scheme but ``file://``): read with PyAV."""
    return is_url(text) and text.split("://", 1)[0].lower() != "file"


def _authority(rest: str) -> str:
    """The authority as urllib.parse reads it (up to the first ``/``, ``?`` or ``#``)."""
    try:
        return urllib.parse.urlsplit("x://" + rest).netloc
    except ValueError:  # an unbalanced "[" (IPv6 brackets): the same rule by hand
        return re.match(r"[^/?#]*", rest).group(0)  # type: ignore[union-attr]


def _userinfo_end(rest: str) -> int:
    """Index in ``rest`` (the URL after ``scheme://``) of the ``@`` that ends the userinfo; -1: none."""
    stop = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, stop)
    if at >= 0:
        return at
    _, colon, after = _authority(rest).partition(":")
    if colon and not after.isdigit() and "@" in rest:  # user:pa?ss@host: a password with ? or #
        return rest.rfind("@")
    return -1


def redact(url: str) -> str:
    """``url`` without its password: ``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x``,
    whatever the password holds (``@``, ``/``, ``:``, ``%``-escapes). A URL with a user and no
    password keeps its user; text that is not a URL comes back unchanged."""
    m = URL_PATTERN.match(url)
    if m is None:
        return url
    head, rest = url[: m.end()], url[m.end() :]
    at = _userinfo_end(rest)
    if at < 0:
        return url
    userinfo = rest[:at]
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{head}{user}:{MASK}{rest[at:]}"


def redact_text(text: str) -> str:
    """Every URL in ``text`` (a message that may quote one) without its password."""
    if "://" not in text:
        return text
    return _IN_TEXT.sub(lambda m: redact(m.group(0)), text)
