"""Just enough PromQL reading for the tests: which metric names does an expression select?"""

from __future__ import annotations

import re

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
}
_NAME_MATCHER = re.compile(r'__name__\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,)?\s*\w+\s*\)\s*$")


def selected_names(expr: str) -> tuple[set[str], set[str]]:
    """Return (metric names, __name__ regexes) an expression selects."""
    regexes = {value for op, value in _NAME_MATCHER.findall(expr) if op == "=~"}
    names = {value for op, value in _NAME_MATCHER.findall(expr) if op == "="}
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _GRAFANA_VAR.sub(" ", text)
    names |= {m.group(0) for m in _IDENTIFIER.finditer(text) if m.group(0).lower() not in _KEYWORDS}
    return names, regexes


def variable_query_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values(...) or PromQL)."""
    match = _LABEL_VALUES.match(query)
    if match:
        return {match.group(1)} if match.group(1) else set()
    names, _ = selected_names(query)
    return names


def unknown_names(expr: str, allowed: set[str] | frozenset[str]) -> set[str]:
    """Names (or unmatched __name__ regexes) in `expr` that `allowed` does not cover."""
    names, regexes = selected_names(expr)
    missing = {n for n in names if n not in allowed}
    missing |= {f"__name__=~{r!r}" for r in regexes if not any(re.fullmatch(r, a) for a in allowed)}
    return missing
