"""The multiprocess metrics directory of a process about to start (`librarian worker`, `librarian api`).

prometheus_client chooses where its metrics keep their values once, when it is first imported: in
memory, or in files under PROMETHEUS_MULTIPROC_DIR that every process of one worker (its prefork
pool) or one API (its uvicorn processes) writes, and each scrape sums. So the variable is set
before that import (this module imports no prometheus_client), and the directory is emptied first:
a previous run's files would be summed into this one's numbers.
"""

from __future__ import annotations

import os
from pathlib import Path


def use_multiprocess_dir(path: Path) -> None:
    """Empty `path` (created if missing) and make it this process's and its children's PROMETHEUS_MULTIPROC_DIR."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        if item.is_file():
            item.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
