"""Pure business rules: phone numbers, money and dates, WhatsApp templates.

No network, no Airflow: the only I/O is reading the templates YAML file.
"""

from zoho_whatsapp.rules.money import format_amount, format_due_date, parse_amount
from zoho_whatsapp.rules.phone import UnusableNumber, mask_phone, to_whatsapp_number
from zoho_whatsapp.rules.templates import (
    DEFAULT_TEMPLATES_PATH,
    TemplateError,
    TemplateSpec,
    build_template_message,
    load_templates,
    render_text,
    sanitise_parameter,
)

__all__ = [
    "DEFAULT_TEMPLATES_PATH",
    "TemplateError",
    "TemplateSpec",
    "UnusableNumber",
    "build_template_message",
    "format_amount",
    "format_due_date",
    "load_templates",
    "mask_phone",
    "parse_amount",
    "render_text",
    "sanitise_parameter",
    "to_whatsapp_number",
]
