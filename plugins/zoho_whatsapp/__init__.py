"""Zoho Books receivables to WhatsApp: hooks, operator, rules and the send ledger.

Layout: ``zoho/`` talks to Zoho OAuth and Zoho Books, ``whatsapp/`` to the WhatsApp Cloud API,
``rules/`` holds the pure business rules (numbers, money, templates, reminder policy) and
``ledger/`` records every message so that nothing is sent twice.
"""
