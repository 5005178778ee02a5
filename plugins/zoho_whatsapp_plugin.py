"""Airflow plugin: mounts the Zoho Books webhook endpoint on the API server at ``/zoho-books``.

Airflow loads this top-level file from ``plugins/`` (the ``zoho_whatsapp`` package itself is
ignored by ``plugins/.airflowignore`` and imported normally). ``airflow plugins --output json``
lists it as ``zoho_whatsapp``. The endpoint is documented in ``zoho_whatsapp.webhooks.app``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from zoho_whatsapp.webhooks.app import create_app

app = create_app()


class ZohoWhatsAppPlugin(AirflowPlugin):
    """``POST /zoho-books/webhooks/invoices`` and ``/zoho-books/webhooks/payments`` for Zoho workflow rules."""

    name = "zoho_whatsapp"
    fastapi_apps = [{"app": app, "url_prefix": "/zoho-books", "name": "Zoho Books webhooks"}]
