"""WhatsAppHook: send template messages through Meta's WhatsApp Cloud API."""

from __future__ import annotations

import http.client
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter

from zoho_whatsapp.hosts import META_HOSTS, HostNotAllowed, checked_base_url
from zoho_whatsapp.whatsapp.errors import (
    AccessTokenMissing,
    EndpointMismatch,
    OutcomeUnknown,
    PhoneNumberIdMissing,
    PhoneNumberUnusable,
    StopRun,
    WhatsAppConnectionMissing,
    WhatsAppHostNotAllowed,
    WhatsAppUnreachable,
    describe_envelope,
    from_envelope,
)
from zoho_whatsapp.whatsapp.transport import KeptAliveConnections

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"


@dataclass(frozen=True)
class WhatsAppSettings:
    conn_id: str
    access_token: str
    phone_number_id: str
    api_version: str
    base_url: str

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}{self.messages_path}"

    @property
    def messages_path(self) -> str:
        return f"/{self.api_version}/{self.phone_number_id}/messages"

    @property
    def phone_number_url(self) -> str:
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}"


class WhatsAppHook(BaseHook):
    """
    Send WhatsApp template messages from one business phone number.

    Connection ``whatsapp_default``: password = access token (a system-user token), extra:
    ``phone_number_id``, ``api_version`` (default v23.0), ``base_url`` (default
    https://graph.facebook.com; only that host, or loopback for the sandbox: any other is refused
    before a request leaves).

    .. code-block:: python

        hook = WhatsAppHook()
        wamid = hook.send_message(body)  # body built by rules.templates.build_template_message

    Failures raise the class of :mod:`zoho_whatsapp.whatsapp.errors` for Meta's code; its
    ``outcome`` says whether the message may be retried (``RETRY_LATER``), must not be resent
    blindly (``UNKNOWN``), is hopeless (``PERMANENT``) or whether the whole run should stop
    (``STOP_RUN``), and its message names the connection and ends with the fix.

    :param whatsapp_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for the API's answer.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = "whatsapp_default"
    conn_type = "whatsapp"
    hook_name = "WhatsApp Cloud API"

    def __init__(self, whatsapp_conn_id: str = default_conn_name, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.whatsapp_conn_id = whatsapp_conn_id
        self.timeout = timeout

    @cached_property
    def settings(self) -> WhatsAppSettings:
        """The connection's fields, checked: the one place they are read, before any request leaves."""
        conn_id = self.whatsapp_conn_id
        try:
            conn = self.get_connection(conn_id)
        except AirflowNotFoundException as exc:
            raise WhatsAppConnectionMissing(str(exc), conn_id=conn_id) from None
        extra = conn.extra_dejson
        where = f"connection {conn_id!r}"
        if not conn.password:
            raise AccessTokenMissing(f"{where} has no password", conn_id=conn_id)
        phone_number_id = str(extra.get("phone_number_id") or "").strip()
        if not phone_number_id:
            raise PhoneNumberIdMissing(f"{where} has no extra.phone_number_id", conn_id=conn_id)
        mask_secret(conn.password)
        try:
            base_url = checked_base_url(str(extra.get("base_url") or DEFAULT_BASE_URL), META_HOSTS)
        except HostNotAllowed as exc:
            raise WhatsAppHostNotAllowed(f"extra.base_url refused, no request was sent: {exc}", conn_id=conn_id) from None
        return WhatsAppSettings(
            conn_id=conn_id,
            access_token=conn.password,
            phone_number_id=phone_number_id,
            api_version=str(extra.get("api_version") or DEFAULT_API_VERSION),
            base_url=base_url,
        )

    def get_conn(self) -> requests.Session:
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["Authorization"] = f"Bearer {self.settings.access_token}"
        # requests would read the proxy variables, ~/.netrc and the CA bundle variables again on every
        # request (a third of the hook's CPU per message at 1,000/s); read them once, here. A ~/.netrc
        # entry no longer replaces the connection's token.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.settings.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        return session

    @cached_property
    def _sender(self) -> KeptAliveConnections:
        # Messages go out on the standard library's client, a kept-alive connection per sending thread:
        # requests' per-request work (merging settings, hooks, cookies) was two thirds of the hook's CPU
        # per message at 500 msg/s, and urllib3's pool half of what was left. The same proxy and CA
        # bundle as the session's; redirects are not followed (the token never goes to another host).
        verify = self._session.verify
        proxy = self._session.proxies.get(urlsplit(self.settings.base_url).scheme)
        return KeptAliveConnections(self.settings.base_url, timeout=self.timeout,
                                    ca_file=verify if isinstance(verify, str) else certifi.where(), proxy=proxy)

    @cached_property
    def _send_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token}", "Content-Type": "application/json"}

    def send_message(self, body: dict[str, Any]) -> str:
        """POST one message and return its ``wamid``; raise a :class:`WhatsAppSendError` otherwise.

        Never retries by itself: whether a retry is safe depends on the ledger, which the
        caller owns. The error's class (from Meta's code) carries its outcome and fix.
        """
        s = self.settings
        conn_id = self.whatsapp_conn_id
        try:
            status, data = self._sender.post(s.messages_path, json.dumps(body, allow_nan=False).encode(),
                                             self._send_headers)
        except (http.client.HTTPException, OSError) as exc:
            # The request may have reached Meta before the connection broke.
            raise OutcomeUnknown(f"no answer from the Cloud API ({exc.__class__.__name__})", conn_id=conn_id) from exc
        payload = _json_or_none(data)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            raise from_envelope(error, status=status, conn_id=conn_id)
        if 400 <= status < 500:
            # Not Meta's envelope: a wrong base_url or api_version, so every send would fail alike.
            raise EndpointMismatch(
                f"HTTP {status} without a Cloud API error envelope from {s.messages_url}", conn_id=conn_id, status=status
            )
        if status >= 300 or not isinstance(payload, dict):
            raise OutcomeUnknown(f"HTTP {status} without a Cloud API error envelope", conn_id=conn_id, status=status)
        try:
            return str(payload["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise OutcomeUnknown(
                f"HTTP {status} but no message id in the answer: {str(payload)[:200]}", conn_id=conn_id, status=status
            ) from None

    def close(self) -> None:
        """Close the connections this hook opened (each sending thread's, and the session's)."""
        if "_sender" in self.__dict__:
            self._sender.close()
        if "_session" in self.__dict__:
            self._session.close()

    def get_phone_number(self) -> dict[str, Any]:
        """The business phone number's profile (``verified_name``, ``display_phone_number`` ...).

        A refusal raises a :class:`WhatsAppConfigError`: the token's or account's own class when
        Meta's code says so, else :class:`PhoneNumberUnusable`.
        """
        s = self.settings
        conn_id = self.whatsapp_conn_id
        try:
            response = self._session.get(s.phone_number_url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise WhatsAppUnreachable(f"cannot reach {s.base_url}: {exc}", conn_id=conn_id) from exc
        payload = _json_or_none(response.content)
        error = payload.get("error") if isinstance(payload, dict) else None
        status = response.status_code
        if isinstance(error, dict):
            refused = from_envelope(error, status=status, conn_id=conn_id)
            if isinstance(refused, StopRun):
                raise refused
            code, text = describe_envelope(error)
            raise PhoneNumberUnusable(
                f"phone number {s.phone_number_id} not usable: {text}", conn_id=conn_id, code=code, status=status
            )
        if status >= 300 or not isinstance(payload, dict):
            raise EndpointMismatch(
                f"phone number {s.phone_number_id} not usable: HTTP {status} from {s.phone_number_url}: "
                f"{response.text[:200]}",
                conn_id=conn_id, status=status,
            )
        return payload

    def check_connection(self) -> str:
        """Read the business number with the token; a failure raises its error class."""
        info = self.get_phone_number()
        return f"WhatsApp number {info.get('display_phone_number')} ({info.get('verified_name')}) is reachable"

    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button shows: :meth:`check_connection`'s text, or the error and its fix."""
        try:
            return True, self.check_connection()
        except Exception as exc:
            return False, str(exc)


def _json_or_none(body: bytes) -> Any:
    """The answer's JSON, or None when it is not JSON (a proxy's HTML page, an empty body)."""
    try:
        return json.loads(body)
    except ValueError:
        return None
