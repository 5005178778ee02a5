"""The send ledger: the record that makes every message go out at most once."""

from zoho_whatsapp.ledger.ledger import Claim, LedgerUnavailable, RunInfo, SendLedger

__all__ = ["Claim", "LedgerUnavailable", "RunInfo", "SendLedger"]
