"""Make ``zoho_whatsapp`` (under plugins/) and ``tests.contracts`` importable.

Airflow puts plugins/ on sys.path at run time; pytest does not. Idempotent, so a
top-level conftest doing the same is harmless.
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]

for _path in (_REPO / "plugins", _REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
