"""A benchmark's headline figures, machine-readable: what `python -m bench` collects and compares.

Every benchmark takes `--json PATH` and writes there

    {"benchmark": "e2e", "machine": "...", "args": {...},
     "figures": [{"name": ..., "value": ..., "unit": ..., "baseline": ..., "target": "<= 25",
                  "verdict": "PASS"}, ...]}

`baseline` is the same figure for the baseline measured in the same run (None when there is none);
`target` and `verdict` are None for a figure reported without a target.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: tuple[str, float] | None = None  # (">=" | "<=" | "==", limit)

    @property
    def verdict(self) -> str | None:
        if self.target is None:
            return None
        op, limit = self.target
        return "PASS" if not math.isnan(self.value) and _OPS[op](self.value, limit) else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _finite(self.value),
            "unit": self.unit,
            "baseline": _finite(self.baseline),
            "target": f"{self.target[0]} {self.target[1]:g}" if self.target else None,
            "verdict": self.verdict,
        }


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(float(value), 4)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the headline figures to PATH as JSON (what `python -m bench` collects)",
    )


def write_json(path: Path | None, benchmark: str, figures: list[Figure], args: argparse.Namespace) -> None:
    """Write the figures to `path` (nothing when None)."""
    if path is None:
        return
    from bench.support.harness import machine

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": benchmark,
                "machine": machine(),
                "args": options,
                "figures": [f.as_dict() for f in figures],
            },
            indent=2,
        )
        + "\n"
    )
