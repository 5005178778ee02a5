"""The reminder-stage templates, as approved in WhatsApp Manager (mirrors include/templates/whatsapp_templates.yaml).

The sandbox is standard library only, so it cannot read that YAML file; tests compare the two.
"""

from __future__ import annotations

from typing import Any

_SINGLE = ["party_name", "invoice_number", "amount_due", "due_date"]
_MULTI = ["party_name", "invoice_count", "total_due", "oldest_due_date", "invoice_numbers"]

_BODIES: dict[str, str] = {
    "reminder_courtesy": (
        "Dear {{party_name}}, this is a courtesy reminder that Invoice {{invoice_number}} for "
        "{{amount_due}} is due on {{due_date}}. If you have already paid, please ignore this "
        "message."
    ),
    "reminder_courtesy_multi": (
        "Dear {{party_name}}, this is a courtesy reminder that {{invoice_count}} invoices "
        "totalling {{total_due}} fall due soon, the first on {{oldest_due_date}}: "
        "{{invoice_numbers}}. If you have already paid, please ignore this message."
    ),
    "reminder_due_today": (
        "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} is due today, "
        "{{due_date}}. Kindly arrange payment. If you have already paid, please ignore this "
        "message."
    ),
    "reminder_due_today_multi": (
        "Dear {{party_name}}, {{invoice_count}} invoices totalling {{total_due}} are due for "
        "payment, the earliest on {{oldest_due_date}}: {{invoice_numbers}}. Kindly arrange "
        "payment. If you have already paid, please ignore this message."
    ),
    "reminder_overdue_1": (
        "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} was due on "
        "{{due_date}} and is now overdue. Kindly arrange payment. Reply here for any queries."
    ),
    "reminder_overdue_1_multi": (
        "Dear {{party_name}}, {{invoice_count}} invoices totalling {{total_due}} are outstanding, "
        "the oldest due on {{oldest_due_date}}: {{invoice_numbers}}. Kindly arrange payment. "
        "Reply here for any queries."
    ),
    "reminder_overdue_7": (
        "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} has been overdue "
        "since {{due_date}}. Please arrange payment at the earliest, or reply with the date you "
        "expect to pay."
    ),
    "reminder_overdue_7_multi": (
        "Dear {{party_name}}, {{invoice_count}} invoices totalling {{total_due}} are outstanding, "
        "the oldest due on {{oldest_due_date}}: {{invoice_numbers}}. Please arrange payment at "
        "the earliest, or reply with the date you expect to pay."
    ),
    "reminder_overdue_15": (
        "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} has remained unpaid "
        "since {{due_date}}. Please clear the payment now, or reply to tell us when it will be "
        "paid."
    ),
    "reminder_overdue_15_multi": (
        "Dear {{party_name}}, {{invoice_count}} invoices totalling {{total_due}} remain unpaid, "
        "the oldest since {{oldest_due_date}}: {{invoice_numbers}}. Please clear the payment now, "
        "or reply to tell us when it will be paid."
    ),
    "reminder_final_notice": (
        "Dear {{party_name}}, final notice: Invoice {{invoice_number}} for {{amount_due}} has "
        "been unpaid since {{due_date}}. Please clear the payment today or contact us to settle "
        "the account."
    ),
    "reminder_final_notice_multi": (
        "Dear {{party_name}}, final notice: {{invoice_count}} invoices totalling {{total_due}} "
        "remain unpaid, the oldest since {{oldest_due_date}}: {{invoice_numbers}}. Please clear "
        "the payment today or contact us to settle the account."
    ),
}

STAGE_TEMPLATES: dict[str, dict[str, Any]] = {
    name: {
        "name": name,
        "language": "en",
        "category": "UTILITY",
        "status": "APPROVED",
        "parameter_format": "named",
        "parameters": list(_MULTI if name.endswith("_multi") else _SINGLE),
        "body": body,
    }
    for name, body in _BODIES.items()
}
