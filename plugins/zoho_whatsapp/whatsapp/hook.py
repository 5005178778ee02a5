"""WhatsAppHook: send template messages through Meta's WhatsApp Cloud API."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter

from zoho_whatsapp.whatsapp.errors import Outcome, WhatsAppConfigError, WhatsAppSendError, classify

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
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}/messages"

    @property
    def phone_number_url(self) -> str:
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}"


class WhatsAppHook(BaseHook):
    """
    Send WhatsApp template messages from one business phone number.

    Connection ``whatsapp_default``: password = access token (a system-user token), extra:
    ``phone_number_id``, ``api_version`` (default v23.0), ``base_url`` (default
    https://graph.facebook.com).

    .. code-block:: python

        hook = WhatsAppHook()
        wamid = hook.send_message(body)  # body built by rules.templates.build_template_message

    Failures raise :class:`WhatsAppSendError` whose ``outcome`` says whether the message may be
    retried (``RETRY_LATER``), must not be resent blindly (``UNKNOWN``), is hopeless
    (``PERMANENT``) or whether the whole run should stop (``STOP_RUN``).

    :param whatsapp_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for the API's answer.
    :param pool_size: HTTP connections kept open; match the number of sending threads.
    """

    conn_name_attr = "whatsapp_conn_id"
    default_conn_name = "whatsapp_default"
    conn_type = "whatsapp"
    hook_name = "WhatsApp Cloud API"

    def __init__(self, whatsapp_conn_id: str = default_conn_name, *, timeout: float = 30.0, pool_size: int = 16) -> None:
        super().__init__()
        self.whatsapp_conn_id = whatsapp_conn_id
        self.timeout = timeout
        self.pool_size = pool_size

    @cached_property
    def settings(self) -> WhatsAppSettings:
        conn = self.get_connection(self.whatsapp_conn_id)
        extra = conn.extra_dejson
        where = f"connection {self.whatsapp_conn_id!r}"
        if not conn.password:
            raise WhatsAppConfigError(f"{where} has no password: put the Cloud API access token there")
        phone_number_id = str(extra.get("phone_number_id") or "").strip()
        if not phone_number_id:
            raise WhatsAppConfigError(
                f"{where} has no extra.phone_number_id (WhatsApp Manager → API Setup → Phone number ID)"
            )
        mask_secret(conn.password)
        return WhatsAppSettings(
            conn_id=self.whatsapp_conn_id,
            access_token=conn.password,
            phone_number_id=phone_number_id,
            api_version=str(extra.get("api_version") or DEFAULT_API_VERSION),
            base_url=str(extra.get("base_url") or DEFAULT_BASE_URL).rstrip("/"),
        )

    def get_conn(self) -> requests.Session:
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["Authorization"] = f"Bearer {self.settings.access_token}"
        return session

    def send_message(self, body: dict[str, Any]) -> str:
        """POST one message and return its ``wamid``; raise :class:`WhatsAppSendError` otherwise.

        Never retries by itself: whether a retry is safe depends on the ledger, which the
        caller owns.
        """
        s = self.settings
        try:
            response = self._session.post(s.messages_url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            # The request may have reached Meta before the connection broke.
            raise WhatsAppSendError(
                f"no answer from the Cloud API ({exc.__class__.__name__}): the message may have been sent",
                outcome=Outcome.UNKNOWN,
            ) from exc
        payload = _json_or_none(response)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            raise self._envelope_error(response.status_code, error)
        if 400 <= response.status_code < 500:
            # Not Meta's envelope: a wrong base_url or api_version, so every send would fail alike.
            raise WhatsAppSendError(
                f"HTTP {response.status_code} without a Cloud API error envelope from {s.messages_url}: "
                f"check base_url and api_version of connection {self.whatsapp_conn_id!r}",
                outcome=Outcome.STOP_RUN,
                status=response.status_code,
            )
        if response.status_code >= 300 or not isinstance(payload, dict):
            raise WhatsAppSendError(
                f"HTTP {response.status_code} without a Cloud API error envelope: the message may have been sent",
                outcome=Outcome.UNKNOWN,
                status=response.status_code,
            )
        try:
            return str(payload["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise WhatsAppSendError(
                f"HTTP {response.status_code} but no message id in the answer: {str(payload)[:200]}",
                outcome=Outcome.UNKNOWN,
                status=response.status_code,
            ) from None

    def _envelope_error(self, status: int, error: dict[str, Any]) -> WhatsAppSendError:
        code = error.get("code")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        text = f"Cloud API error {code}: {error.get('message')}" + (f" ({details})" if details else "")
        outcome = classify(code)
        if outcome is Outcome.STOP_RUN:
            text += (
                f". Fix connection {self.whatsapp_conn_id!r}: a new access token (code 190), the account's "
                "restrictions (368, 131031) or the phone number's registration (133010)"
            )
        return WhatsAppSendError(
            text, outcome=outcome, code=code, status=status, fbtrace_id=error.get("fbtrace_id")
        )

    def get_phone_number(self) -> dict[str, Any]:
        """The business phone number's profile (``verified_name``, ``display_phone_number`` ...)."""
        s = self.settings
        try:
            response = self._session.get(s.phone_number_url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise WhatsAppConfigError(f"connection {self.whatsapp_conn_id!r}: cannot reach {s.base_url}: {exc}") from exc
        payload = _json_or_none(response)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) or response.status_code >= 300:
            problem = self._envelope_error(response.status_code, error) if isinstance(error, dict) else response.text[:200]
            raise WhatsAppConfigError(
                f"connection {self.whatsapp_conn_id!r}: phone number {s.phone_number_id} not usable: {problem}"
            )
        return payload

    def test_connection(self) -> tuple[bool, str]:
        try:
            info = self.get_phone_number()
        except Exception as exc:
            return False, str(exc)
        return True, f"WhatsApp number {info.get('display_phone_number')} ({info.get('verified_name')}) is reachable"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
