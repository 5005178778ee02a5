"""The Zoho side: OAuth tokens, regions and the Books API."""

from zoho_whatsapp.zoho.hook import Organization, ZohoBooksHook

__all__ = ["Organization", "ZohoBooksHook"]
