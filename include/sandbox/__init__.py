"""Local sandbox imitating Zoho OAuth, Zoho Books API v3 and Meta's WhatsApp Cloud API.

    from sandbox import Sandbox
    sb = Sandbox(port=0, seed=42, invoices=320).start()
    ...
    sb.stop()

Standard library only.  See ``server.Sandbox`` for the Python API, ``control`` for the
``/_sandbox`` HTTP endpoints and ``faults.DEFAULTS`` for every setting and fault name.
"""

from .faults import DEFAULTS as FAULT_DEFAULTS
from .server import Sandbox, connections_for

__all__ = ["FAULT_DEFAULTS", "Sandbox", "connections_for"]
