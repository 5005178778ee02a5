"""Airflow provider metadata: the ``zoho_books``, ``whatsapp`` and ``zoho_books_webhook`` connection types.

Registered through the ``apache_airflow_provider`` entry point in pyproject.toml (``make install``
installs the project), which is the only way a connection type gets its own form in the UI:
plugins cannot register connection types. The form fields are declared here (Airflow 3.2+
reads ``conn-fields`` / ``ui-field-behaviour`` from provider info without importing the hooks;
the hooks' ``get_connection_form_widgets`` classmethods are deprecated since 3.2).

.. code-block:: python

    from airflow.providers_manager import ProvidersManager

    ProvidersManager().hooks["zoho_books"].hook_name  # 'Zoho Books'
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "zoho-books-whatsapp"  # must equal [project].name in pyproject.toml
VERSION = "0.1.0"
# Data centres as the domain people log in to (accounts.zoho.in -> zoho.in), not Zoho's two-letter
# codes: the Task SDK masks every extra value, and one under 5 characters logs a warning in every task.
REGIONS = ["zoho.in", "zoho.com", "zoho.eu", "zoho.com.au", "zoho.jp", "zohocloud.ca", "zoho.com.cn", "zoho.sa"]


def _field(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


def _number_field(label: str, description: str, kind: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], **schema}}


def get_provider_info() -> dict[str, Any]:
    """What ``ProvidersManager`` reads from the entry point (schema: airflow/provider_info.schema.json)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Zoho Books to WhatsApp",
        "description": "Zoho Books receivables turned into WhatsApp reminders and alerts.",
        "versions": [VERSION],
        "connection-types": [
            {
                "connection-type": "zoho_books",
                "hook-class-name": "zoho_whatsapp.zoho.hook.ZohoBooksHook",
                "hook-name": "Zoho Books",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "Client ID", "password": "Client Secret"},
                    "placeholders": {
                        "login": "1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX (api-console.zoho.in -> Self Client)",
                        "password": "Self Client secret",
                        "refresh_token": "1000.xxxx.yyyy (from: python -m zoho_whatsapp.cli zoho-auth)",
                        "organization_id": "e.g. 10234695 (GET /books/v3/organizations)",
                        "accounts_url": "https://accounts.zoho.in",
                        "api_url": "https://www.zohoapis.in",
                    },
                },
                "conn-fields": {
                    "refresh_token": _field(
                        "Refresh token",
                        "From the one-time grant-code exchange (python -m zoho_whatsapp.cli zoho-auth). Never expires.",
                        format="password",
                    ),
                    "region": _field(
                        "Data centre",
                        "Where the account lives: the domain you log in to (accounts.zoho.in means zoho.in). "
                        "Decides the OAuth and API hosts.",
                        enum=[*REGIONS, None],
                        default="zoho.in",
                    ),
                    "organization_id": _field(
                        "Organization ID",
                        "Optional when the account has exactly one organization.",
                    ),
                    "accounts_url": _field(
                        "Accounts URL override",
                        "Leave empty: derived from the data centre. Only an official accounts.zoho* host or "
                        "loopback (the local sandbox) is accepted.",
                    ),
                    "api_url": _field(
                        "Books API URL override",
                        "Leave empty: Zoho's api_domain from the token response is used. Only an official "
                        "www.zohoapis.* host or loopback is accepted.",
                    ),
                },
            },
            {
                "connection-type": "whatsapp",
                "hook-class-name": "zoho_whatsapp.whatsapp.hook.WhatsAppHook",
                "hook-name": "WhatsApp Cloud API",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema", "login"],
                    "relabeling": {"password": "Access token"},
                    "placeholders": {
                        "password": "System-user access token (permission whatsapp_business_messaging)",
                        "phone_number_id": "WhatsApp Manager -> API Setup -> Phone number ID",
                        "api_version": "v23.0",
                        "base_url": "https://graph.facebook.com",
                    },
                },
                "conn-fields": {
                    "phone_number_id": _field(
                        "Phone number ID",
                        "The sending number's id (WhatsApp Manager -> API Setup), not the phone number itself.",
                    ),
                    "api_version": _field("Graph API version", "Default v23.0.", default="v23.0"),
                    "base_url": _field(
                        "API base URL",
                        "Default https://graph.facebook.com, the only host accepted besides loopback (the sandbox).",
                    ),
                },
            },
            {
                "connection-type": "zoho_books_webhook",
                "hook-class-name": "zoho_whatsapp.webhooks.hook.ZohoBooksWebhookHook",
                "hook-name": "Zoho Books webhook",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema", "login"],
                    "relabeling": {"password": "Shared secret"},
                    "placeholders": {
                        "password": "At least 32 random characters (openssl rand -hex 32), sent by Zoho in "
                                    "X-Zoho-Webhook-Secret",
                        "signing_secret": "Optional: the Zoho webhook's own secret (12-50 alphanumerics)",
                    },
                },
                "conn-fields": {
                    "signing_secret": _field(
                        "Signing secret",
                        "When set, every delivery must carry a valid X-Zoho-Webhook-Signature (at least 32 "
                        "characters). Try it with a test delivery from Zoho first: docs/webhooks.md.",
                        format="password",
                    ),
                    "max_pending_events": _number_field(
                        "Most pending events", "Events waiting unhandled before new ones are answered 429.",
                        "integer", minimum=1, default=1000,
                    ),
                    "max_event_age_seconds": _number_field(
                        "Freshness window (seconds)", "Older events are refused (422); 0 turns the check off.",
                        "number", minimum=0, default=259200,
                    ),
                },
            },
        ],
    }
