"""Every documented WhatsApp Cloud API error family: what it means for the run and how to fix it.

One class per family, chosen by Meta's error ``code`` (never by the HTTP status: throttling comes as
400 or 429), as pywa's ``errors.py`` does. :func:`error_for` is the one factory; ``classify`` is kept
for callers that only need the :class:`Outcome`. No other module knows a Cloud API code number.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zoho_whatsapp.outcome import ErrorFamily, Outcome

__all__ = [
    "AccessTokenInvalid", "AccessTokenMissing", "PhoneNumberIdMissing", "WhatsAppConnectionMissing", "AccountRestricted", "EndpointMismatch", "InvalidParameter", "MarketingRefused",
    "NotOnWhatsApp", "Outcome", "OutcomeUnknown", "PairRateExceeded", "Permanent", "PhoneNotRegistered",
    "PhoneNumberUnusable", "ReEngagementRequired", "RetryLater", "ServiceUnavailable", "StopRun",
    "TemplateError", "TemplateNotFound", "TemplateUnavailable", "ThroughputExceeded", "TooManyCalls",
    "UndocumentedError", "UnsupportedMessage", "WhatsAppConfigError", "describe_envelope", "WhatsAppError", "WhatsAppHostNotAllowed",
    "WhatsAppSendError", "WhatsAppUnreachable", "classify", "error_for", "from_envelope",
]

AUTH_CLI = "python -m zoho_whatsapp.cli whatsapp-auth --phone-number-id <id> --replace"


class WhatsAppError(ErrorFamily, AirflowException):
    """Any failure talking to the Cloud API; ``fbtrace_id`` is Meta's id for a support ticket."""

    system = "WhatsApp"
    default_conn_id = "whatsapp_default"

    def __init__(self, message: str, *, fbtrace_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fbtrace_id = fbtrace_id


class WhatsAppSendError(WhatsAppError):
    """One send failed; ``outcome`` says whether it may be retried, must not be, or stops the run."""


# -- retry later: the error envelope proves Meta did not send the message ------------------------


class RetryLater(WhatsAppSendError):
    outcome = Outcome.RETRY_LATER
    fix = "nothing to fix: the message was not sent; the run retries it, then the next run does"


class TooManyCalls(RetryLater):
    """The app or the WhatsApp Business Account hit Meta's API call rate limit."""

    codes = frozenset({4, 80007})
    fix = "Meta's call rate limit for the app or account: retried later; if it recurs, lower messages_per_second"


class ThroughputExceeded(RetryLater):
    """More messages per second than the business number's throughput (80/s by default)."""

    codes = frozenset({130429})
    fix = "above the number's messages per second (80 by default): retried after a pause; lower messages_per_second"


class PairRateExceeded(RetryLater):
    """Too many messages to one recipient in a short time (Meta: one per 6 seconds)."""

    codes = frozenset({131056})
    fix = "too many messages to one number at once (one per 6 s): retried after the pair interval"
    pair_interval_seconds: ClassVar[float] = 6.0


class ServiceUnavailable(RetryLater):
    """Meta had a temporary failure and said so."""

    codes = frozenset({131000, 131016})
    fix = "a temporary failure at Meta: retried later; if it lasts, see https://metastatus.com"


# -- unknown: the request may have been accepted ------------------------------------------------


class OutcomeUnknown(WhatsAppSendError):
    """No answer, or an answer without Meta's error envelope: the message may have been sent."""

    when = "no answer / HTTP 5xx or 2xx without an error envelope or message id"
    outcome = Outcome.UNKNOWN
    fix = (
        "the message may have been sent: check the audit (make audit) and the customer's chat before "
        "re-running with resend_unknown=true"
    )


# -- stop the run: every further send would fail alike ------------------------------------------


class WhatsAppConfigError(WhatsAppError, AirflowFailException):
    """The connection is incomplete, or its credentials or account are refused: no retry helps."""

    outcome = Outcome.STOP_RUN
    fix = "complete connection {conn_id}: password = access token, extra.phone_number_id; or run " + AUTH_CLI


class StopRun(WhatsAppSendError, WhatsAppConfigError):
    """Credentials or the account are broken: the batch stops and releases what it did not send."""

    outcome = Outcome.STOP_RUN
    fix = "fix connection {conn_id} (token, account or number), then re-run: unsent messages were released"


class AccessTokenInvalid(StopRun):
    codes = frozenset({0, 190})
    fix = (
        "the access token expired or was revoked: create a permanent system-user token (Business "
        "Settings -> System users -> Generate token, permission whatsapp_business_messaging) and run " + AUTH_CLI
    )


class AccountRestricted(StopRun):
    codes = frozenset({368, 131031})
    fix = "Meta restricted or locked the WhatsApp Business account: see WhatsApp Manager -> Account quality"


class PhoneNotRegistered(StopRun):
    codes = frozenset({133010})
    fix = "the number in extra.phone_number_id of {conn_id} is not registered with the Cloud API: register it first"


class EndpointMismatch(StopRun):
    """A 4xx without Meta's envelope: the request did not reach the Cloud API as meant."""

    when = "HTTP 4xx without an error envelope"
    fix = "check extra.base_url (https://graph.facebook.com) and extra.api_version (v23.0) of {conn_id}"


class WhatsAppConnectionMissing(WhatsAppConfigError):
    when = "connection not defined"
    fix = "create it: python -m zoho_whatsapp.cli whatsapp-auth --phone-number-id <id> --conn-id {conn_id}"


class AccessTokenMissing(WhatsAppConfigError):
    when = "no password"
    fix = "put the Cloud API access token in the password field, or re-create the connection: " + AUTH_CLI


class PhoneNumberIdMissing(WhatsAppConfigError):
    when = "no extra.phone_number_id"
    fix = "set extra.phone_number_id (WhatsApp Manager -> API Setup -> Phone number ID, not the phone number itself)"


class PhoneNumberUnusable(WhatsAppConfigError):
    """The phone number lookup was refused for a reason other than the token or the account."""

    when = "GET /<phone_number_id> refused"
    fix = (
        "extra.phone_number_id is wrong or the token cannot see it: copy the Phone number ID (not the WABA id, "
        "not the number) from WhatsApp Manager -> API Setup and give the system user access to that account"
    )


class WhatsAppUnreachable(WhatsAppConfigError):
    when = "no connection to the Cloud API"
    fix = "check this machine reaches graph.facebook.com (proxy, firewall, DNS) and extra.base_url of {conn_id}"


class WhatsAppHostNotAllowed(WhatsAppConfigError):
    """An extra names a host the hook may not send the token to (see ``zoho_whatsapp.hosts``)."""

    when = "a host other than graph.facebook.com or loopback"
    fix = "remove the field from {conn_id}'s extras or set it to https://graph.facebook.com (loopback only for tests)"


# -- permanent: this message can never be sent as it is -----------------------------------------


class Permanent(WhatsAppSendError):
    outcome = Outcome.PERMANENT
    fix = "this message cannot be sent as it is: see the ledger row's error; the rest of the run goes on"


class InvalidParameter(Permanent):
    codes = frozenset({100})
    fix = "a parameter of the request is invalid (often the recipient number): correct it in Zoho Books"


class NotOnWhatsApp(Permanent):
    codes = frozenset({131026})
    fix = "the customer's number cannot receive WhatsApp messages: correct the mobile in Zoho or reach them otherwise"


class ReEngagementRequired(Permanent):
    codes = frozenset({131047})
    fix = "outside the 24-hour window only approved templates can be sent: check the template name in the config"


class UnsupportedMessage(Permanent):
    codes = frozenset({131051})
    fix = "the message type is not supported: send a template message"


class MarketingRefused(Permanent):
    """Meta treats the template as marketing: a per-user marketing cap or the user's opt-out applies."""

    codes = frozenset({131049, 131050})
    fix = "Meta re-categorised the template as MARKETING: reword it as a plain utility reminder and resubmit it"


class TemplateError(Permanent):
    """The body does not match the approved template (parameters, format, language)."""

    code_range = range(132000, 133000)
    fix = "the body does not match the approved template: compare its parameters with WhatsApp Manager -> Templates"


class TemplateNotFound(TemplateError):
    codes = frozenset({132001})
    fix = "the template does not exist in that language: create or approve it in WhatsApp Manager -> Templates"


class TemplateUnavailable(TemplateError):
    codes = frozenset({132015, 132016})
    fix = "Meta paused or disabled the template for low quality: edit it in WhatsApp Manager, or use another"


class UndocumentedError(Permanent):
    """An error envelope with a code api-facts.md does not list: Meta did not send the message."""

    when = "any other code in an error envelope"
    fix = "look the code up in Meta's Cloud API error codes page; the message was not sent"


def error_for(code: int | None) -> type[WhatsAppSendError]:
    """The class for a Cloud API error code (``None``: no envelope, the outcome is unknown).

    >>> error_for(130429).__name__
    'ThroughputExceeded'
    >>> error_for(132999).outcome
    <Outcome.PERMANENT: 'permanent'>
    """
    if code is None:
        return OutcomeUnknown
    found = WhatsAppSendError.for_code(code)
    # An undocumented code still came in an error envelope, so Meta did not send the message;
    # treating it as permanent records it and keeps the batch going without risking a duplicate.
    return found or UndocumentedError


def classify(code: int | None) -> Outcome:
    """What to do about a Cloud API error code.

    >>> classify(130429)
    <Outcome.RETRY_LATER: 'retry_later'>
    """
    return error_for(code).outcome


def describe_envelope(error: dict[str, Any]) -> tuple[int | None, str]:
    """Meta's code and a one-line description of an ``{"error": {...}}`` envelope."""
    raw = error.get("code")
    try:
        code = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        code = None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return code, f"Cloud API error {code}: {error.get('message')}" + (f" ({details})" if details else "")


def from_envelope(error: dict[str, Any], *, status: int | None, conn_id: str) -> WhatsAppSendError:
    """The exception for Meta's error envelope, its message naming the connection."""
    code, text = describe_envelope(error)
    return error_for(code)(text, conn_id=conn_id, code=code, status=status, fbtrace_id=error.get("fbtrace_id"))
