"""What app/ assumes about the standard library's private names, one check per id."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable


def check_logging_srcfile() -> None:
    assert hasattr(logging, "_srcfile"), (
        "logging._srcfile is gone: app/observability/logging.py sets it to skip caller lookup"
    )
    assert "_srcfile" in inspect.getsource(logging.Logger._log), (
        "logging.Logger._log no longer consults logging._srcfile: setting it to None no longer saves the stack walk"
    )


CHECKS: dict[str, Callable[[], None]] = {
    "stdlib.logging._srcfile": check_logging_srcfile,
}
