"""The send ledger: the record that makes every message go out at most once."""

from zoho_whatsapp.ledger.ledger import Claim, LedgerUnavailable, RecipientCap, RunInfo, SendKey, SendLedger

__all__ = ["Claim", "LedgerUnavailable", "RecipientCap", "RunInfo", "SendKey", "SendLedger"]
