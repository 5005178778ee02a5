"""Zoho data centres: an account lives in exactly one, and its hosts must match."""

from __future__ import annotations

from dataclasses import dataclass

from zoho_whatsapp.hosts import HostNotAllowed, checked_base_url, host_of
from zoho_whatsapp.zoho.errors import ZohoHostNotAllowed


@dataclass(frozen=True)
class ZohoRegion:
    code: str
    accounts_url: str
    api_url: str

    @property
    def domain(self) -> str:
        """``zoho.in``: what a connection stores as its data centre (the domain people log in to).

        Not the two-letter code: Airflow's Task SDK registers every value of a connection's extras
        as a secret to mask, and a value under 5 characters makes every task that reads the
        connection log "Skipping masking for a secret as it's too short".
        """
        return host_of(self.accounts_url).removeprefix("accounts.")


REGIONS: dict[str, ZohoRegion] = {
    region.code: region
    for region in (
        ZohoRegion("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
        ZohoRegion("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        ZohoRegion("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
        ZohoRegion("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
        ZohoRegion("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        ZohoRegion("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
        ZohoRegion("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
        ZohoRegion("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    )
}

DEFAULT_REGION = "in"
ACCOUNTS_HOSTS = frozenset(host_of(r.accounts_url) for r in REGIONS.values())
API_HOSTS = frozenset(host_of(r.api_url) for r in REGIONS.values())


_BY_DOMAIN = {region.domain: region for region in REGIONS.values()}


def get_region(code: str | None) -> ZohoRegion:
    """Return the data centre for a region code (``in``, ``us`` ...) or its domain (``zoho.in``,
    ``accounts.zoho.in``), case-insensitive.

    >>> get_region("IN").api_url
    'https://www.zohoapis.in'
    >>> get_region("zoho.eu").code
    'eu'
    """
    key = (code or DEFAULT_REGION).strip().lower().removeprefix("https://").rstrip("/").removeprefix("accounts.")
    if key == "com":  # people copy the TLD of the US data centre
        key = "us"
    found = REGIONS.get(key) or _BY_DOMAIN.get(key)
    if found is None:
        raise ValueError(
            f"unknown Zoho region {code!r}: use one of {', '.join(sorted(REGIONS))} "
            "(the domain you log in to: accounts.zoho.in means 'in'; the domain zoho.in works too)"
        )
    return found


def allowed_url(url: str, hosts: frozenset[str], *, conn_id: str, field: str) -> str:
    """``url`` when ``hosts`` (or loopback) may receive this connection's credentials; else refused.

    >>> allowed_url("https://accounts.zoho.eu/", ACCOUNTS_HOSTS, conn_id="zoho", field="extra.accounts_url")
    'https://accounts.zoho.eu'
    """
    try:
        return checked_base_url(url, hosts)
    except HostNotAllowed as exc:
        raise ZohoHostNotAllowed(f"{field} refused, no request was sent: {exc}", conn_id=conn_id) from None
