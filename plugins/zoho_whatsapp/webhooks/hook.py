"""ZohoBooksWebhookHook: the ``zoho_books_webhook`` connection type, so its Test button has a hook.

The connection holds the shared secret of the Zoho Books webhook endpoint and its limits; the API
server reads it for every delivery (:mod:`zoho_whatsapp.webhooks.app`). It used to be a ``generic``
connection, a type without a hook, whose Test answered ``'NoneType' object has no attribute
'rsplit'``; ``generic`` is still accepted by the endpoint.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

DEFAULT_CONN_ID = "zoho_books_webhook"


class ZohoBooksWebhookHook(BaseHook):
    """The webhook endpoint's secret: ``password`` (sent by Zoho in ``X-Zoho-Webhook-Secret``),
    extras ``signing_secret``, ``max_pending_events``, ``max_event_age_seconds``."""

    conn_name_attr = "zoho_webhook_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "zoho_books_webhook"
    hook_name = "Zoho Books webhook"

    def __init__(self, zoho_webhook_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zoho_webhook_conn_id = zoho_webhook_conn_id

    def describe(self) -> str:
        """What the endpoint will do with this connection; :class:`WebhookNotConfigured` if it would refuse all."""
        from zoho_whatsapp.webhooks.app import SECRET_HEADER, read_config

        config = read_config(self.get_connection(self.zoho_webhook_conn_id), DEFAULT_CONN_ID)
        checks = []
        if config.secret is not None:
            checks.append(f"the {len(config.secret)}-character secret in {SECRET_HEADER}")
        if config.signing_secret is not None:
            checks.append("a valid X-Zoho-Webhook-Signature")
        age = (f"events older than {config.max_event_age_seconds / 3600:g} h are refused"
               if config.max_event_age_seconds else "no freshness window")
        return (f"The webhook endpoint accepts deliveries carrying {' and '.join(checks)}; {age}; "
                f"at most {config.max_pending_events} events wait unhandled. Give Zoho the same secret.")

    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button shows: whether the endpoint would accept deliveries, and how."""
        try:
            return True, self.describe()
        except Exception as exc:
            return False, str(exc)
