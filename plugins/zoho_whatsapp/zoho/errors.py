"""Zoho failures, split by what the operator should do about them.

Subclasses of ``AirflowFailException`` stop the task without retries: retrying cannot help
until a person fixes the connection or the quota resets.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class ZohoError(AirflowException):
    """A Zoho call failed; ``code`` is Zoho's envelope code when there was one."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ZohoAuthError(ZohoError, AirflowFailException):
    """Credentials, region or scopes are wrong: fix the connection, then re-run."""


class ZohoQuotaExhausted(ZohoError, AirflowFailException):
    """The organization's daily API quota is spent (code 45): retrying today is useless."""


class ZohoRateLimited(ZohoError):
    """Still throttled (code 44/1070) after the hook's own waits: an Airflow retry may succeed."""


class ZohoTokenThrottled(ZohoError):
    """Zoho blocks token requests for the rest of a 10-minute window."""


class ZohoConfigError(ZohoError, AirflowFailException):
    """The connection is missing a field or names an impossible setting."""


class ZohoApiError(ZohoError):
    """Zoho answered with a non-zero ``code`` (possibly with HTTP 200) or an unreadable body."""
