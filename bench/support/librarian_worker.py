"""`librarian worker` with extra Celery worker options appended (e.g. -E), for benchmarks only.

`librarian worker` takes no pass-through options, so this runs the very same code path
(app.cli.main.cmd_worker: multiprocess dir, env, exec of the same celery command line) and
appends what follows `--` to the exec'd argv:

    python -m bench.support.librarian_worker --name w@%h -- -E
"""

from __future__ import annotations

import sys

import app.cli.main as cli_main


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    real_exec = cli_main._exec
    cli_main._exec = lambda command: real_exec([*command, *extra])  # type: ignore[assignment]
    cli_main.main(["worker", *argv])


if __name__ == "__main__":
    main()
