"""Records the secrets an e2e peer used, so secrets_grep.py can prove none reached a log.

record(kind, value) appends `kind<TAB>value` to the file named by $E2E_SECRETS (lib.sh sets
it inside the run's log directory; secrets_grep.py never scans that file). Without the
variable it does nothing, so the peers run alone as before.
"""

import os
import threading

_lock = threading.Lock()


def record(kind: str, value) -> None:
    path = os.environ.get("E2E_SECRETS")
    if not path or not value:
        return
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    with _lock, open(path, "a") as f:
        # One line per secret; a PEM's lines are joined with spaces (secrets_grep.py splits).
        f.write(f"{kind}\t{' '.join(str(value).split())}\n")
