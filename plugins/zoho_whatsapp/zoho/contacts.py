"""Which numbers a Zoho Books contact carries. Pure: reads a contact as Zoho returns it.

A contact list row carries its primary person's ``mobile`` and ``phone``; ``GET /contacts/{id}``
adds ``contact_persons[]`` (one ``is_primary_contact``). The numbers are free text as typed:
:mod:`zoho_whatsapp.rules.phone` decides which one WhatsApp can reach.

>>> contact_numbers({"mobile": " 98200 12345 ", "phone": "", "contact_persons": [{"phone": "022 2345 6789",
...                  "is_primary_contact": True}]})
('98200 12345', '022 2345 6789')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["contact_numbers"]


def contact_numbers(contact: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The contact's mobile and phone (its own, else its primary person's), mobile first, each once."""
    if not contact:
        return ()
    persons = contact.get("contact_persons") or []
    primary = next((p for p in persons if p.get("is_primary_contact")), persons[0] if persons else {})
    found = (contact.get("mobile") or primary.get("mobile"), contact.get("phone") or primary.get("phone"))
    return tuple(dict.fromkeys(str(n).strip() for n in found if n is not None and str(n).strip()))
