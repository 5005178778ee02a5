"""Airflow plugin: mounts the two webhook endpoints on the API server.

* ``/zoho-books`` — Zoho Books workflow rules (``zoho_whatsapp.webhooks.app``);
* ``/whatsapp`` — Meta's WhatsApp callback URL ``https://<airflow-host>/whatsapp/webhook``:
  delivery receipts, replies and opt-outs (``zoho_whatsapp.webhooks.whatsapp_app``);
* ``/whatsapp-audit`` — the receivables audit page, shown in the Airflow UI as "WhatsApp reminders"
  (navigation, and a tab on DAG and DAG run pages); Airflow's login protects it (``zoho_whatsapp.ui``);
* a root middleware that lets the connection list's Test button work for connections without a
  port on Airflow 3.3.2 (``zoho_whatsapp.connection_test``).

Airflow loads this top-level file from ``plugins/`` (the ``zoho_whatsapp`` package itself is
ignored by ``plugins/.airflowignore`` and imported normally). ``airflow plugins --output json``
lists it as ``zoho_whatsapp``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from zoho_whatsapp.connection_test import MIDDLEWARE as PORTLESS_CONNECTION_TEST
from zoho_whatsapp.ui.app import URL_PREFIX as AUDIT_PREFIX
from zoho_whatsapp.ui.app import LazyApp
from zoho_whatsapp.webhooks import whatsapp_app
from zoho_whatsapp.webhooks.app import create_app

app = create_app()
whatsapp_webhook_app = whatsapp_app.create_app()
audit_app = LazyApp()  # built on the API server's first request to it


class ZohoWhatsAppPlugin(AirflowPlugin):
    """Zoho Books workflow webhooks at ``/zoho-books/webhooks/...``; WhatsApp's at ``/whatsapp/webhook``."""

    name = "zoho_whatsapp"
    fastapi_apps = [
        {"app": app, "url_prefix": "/zoho-books", "name": "Zoho Books webhooks"},
        {"app": whatsapp_webhook_app, "url_prefix": "/whatsapp", "name": "WhatsApp webhooks"},
        {"app": audit_app, "url_prefix": AUDIT_PREFIX, "name": "WhatsApp reminders audit"},
    ]
    # The connection list's Test button for connections without a port (Airflow 3.3.2's UI sends port 0).
    fastapi_root_middlewares = [PORTLESS_CONNECTION_TEST]
    # Pages of the audit app inside the Airflow UI (iframes, same origin: Airflow's login cookie applies).
    external_views = [
        {"name": "WhatsApp reminders", "href": f"{AUDIT_PREFIX}/", "destination": "nav",
         "url_route": "whatsapp-reminders", "nav_top_level": True, "icon": f"{AUDIT_PREFIX}/static/icon.svg"},
        {"name": "WhatsApp messages", "href": f"{AUDIT_PREFIX}/?dag_id={{DAG_ID}}", "destination": "dag",
         "url_route": "whatsapp-dag"},
        {"name": "WhatsApp messages", "href": f"{AUDIT_PREFIX}/?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
         "destination": "dag_run", "url_route": "whatsapp-run"},
    ]
