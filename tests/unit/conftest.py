"""Makes the collection importable as ansible_collections.selfhost.stack from this checkout."""

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# Helpers the role tests share (validate_entry_point).
ROLE_HELPERS = Path(__file__).resolve().parent / "roles"
if str(ROLE_HELPERS) not in sys.path:
    sys.path.insert(0, str(ROLE_HELPERS))
