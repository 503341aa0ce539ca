"""Writing results so that a kill at any instant leaves the old file or the new one, never half."""

import json
import os
from typing import Any


def write_json_atomic(path: str, value: Any) -> None:
    """JSON to `path` via a sibling temporary file and a rename (atomic on POSIX)."""
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(partial, path)
