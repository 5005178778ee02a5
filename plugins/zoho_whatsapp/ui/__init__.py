"""The receivables audit page inside the Airflow UI ("WhatsApp reminders").

``app.create_app()`` is the plugin's FastAPI app (mounted at ``/whatsapp-audit``), ``queries`` reads
the send ledger for it and ``export`` writes what is on screen as CSV. See docs/audit-page.md.
"""
