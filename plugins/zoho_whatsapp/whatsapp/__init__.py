"""The WhatsApp side: the Cloud API hook, error classes, pacing and the batch operator."""

from zoho_whatsapp.whatsapp.hook import WhatsAppHook

__all__ = ["WhatsAppHook"]
