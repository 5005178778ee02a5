"""Which hosts the hooks may send credentials to: the official ones over https, or this machine.

Airflow's Test button re-uses the stored password and extras when a user edits only the extras, so
a host taken from an extra (``accounts_url``, ``api_url``, ``base_url``) or from a remote answer
(Zoho's ``api_domain``) could carry the client secret, refresh token or access token anywhere.
Every URL the hooks build passes :func:`checked_base_url` first, before any request leaves.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

# The sandbox and the tests run on this machine; no other address is trusted, not even 127.0.0.2.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
META_HOSTS = frozenset({"graph.facebook.com"})


class HostNotAllowed(ValueError):
    """The URL's host is neither an allowed https host nor loopback."""


def checked_base_url(url: str, allowed_hosts: Collection[str]) -> str:
    """``url`` rebuilt from its parts when its host may receive credentials; else :class:`HostNotAllowed`.

    Allowed: ``https://<one of allowed_hosts>[:443]`` or ``http(s)://<loopback>[:any port]``, with an
    optional path and nothing else (no user info, query or fragment). The result is rebuilt from what
    was checked, so a parser that reads the text differently cannot reach another host.

    >>> checked_base_url("https://www.zohoapis.in/", {"www.zohoapis.in"})
    'https://www.zohoapis.in'
    >>> checked_base_url("http://[::1]:8080", set())
    'http://[::1]:8080'
    """
    text = str(url).strip()
    if any(ch.isspace() or ch in "\\@" for ch in text):
        # Not echoed: user info may hold a password.
        raise HostNotAllowed("a URL with user info, spaces or backslashes is not accepted")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise HostNotAllowed(f"{text!r} is not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.query or parts.fragment or not host:
        raise HostNotAllowed(f"{text!r} must be scheme://host[:port][/path] only")
    if host in LOOPBACK_HOSTS and parts.scheme in ("http", "https"):
        pass
    elif parts.scheme != "https" or host not in allowed_hosts or port not in (None, 443):
        allowed = ", ".join(f"https://{h}" for h in sorted(allowed_hosts))
        raise HostNotAllowed(f"{text!r} is not one of {allowed} (or loopback for tests)")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


def host_of(url: str) -> str:
    """The host of a base URL (lower case), for allow-lists built from known URLs."""
    return (urlsplit(url).hostname or "").lower()
