"""Zoho Books workflow-rule webhooks: the endpoint, its payloads, the event inbox and the trigger.

``app`` (FastAPI, mounted by the plugin at ``/zoho-books``) stores validated events in ``inbox``;
``trigger`` (running in the triggerer) starts the ``zoho_books_invoice_alerts`` DAG for each one.
Submodules are imported where used, so importing this package stays cheap.
"""
