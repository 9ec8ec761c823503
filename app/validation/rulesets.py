"""Rulesets: a named set of rule values a team owns, as a TOML file or sent over HTTP.

A ruleset is a flat table of rule fields (rules.py, docs/rulesets.md) plus an optional
`description`; every field left out keeps its default. Its identity is its name and the SHA-256
of its effective rules and description in canonical JSON (sorted keys, no spaces), so a report
can name the exact rules that produced it: `ruleset: {name, version, sha256}` (the version is the registry's counter,
None for a file used offline).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rules import RulesError, ValidationRules, coerce_rules

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DESCRIPTION_MAX = 2000


class RulesetError(ValueError):
    """A ruleset that cannot be used. `.field` names the rule at fault (None: the whole file)."""

    def __init__(self, message: str, field: str | None = None, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{message}")
        self.field = field
        self.source = source


@dataclass(frozen=True)
class Ruleset:
    name: str
    content: dict[str, Any]  # the fields as given (rule values plus an optional description)
    rules: ValidationRules
    sha256: str
    version: int | None = None

    @property
    def description(self) -> str | None:
        return self.content.get("description")

    def ref(self) -> dict[str, Any]:
        """What a report records: {name, version, sha256}."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise RulesetError(
            f"invalid ruleset name {name!r}: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit",
            field="name",
        )
    return name


def rules_sha256(rules: ValidationRules, description: str | None = None) -> str:
    """SHA-256 of the effective rules (every field, defaults included) and the description, as
    canonical JSON: the same rules hash the same whether a field was given or left at its default,
    from TOML or from JSON."""
    content = {"description": description, "rules": rules.as_dict()}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def build_ruleset(
    name: str, content: Mapping[str, Any], *, version: int | None = None, source: str | None = None
) -> Ruleset:
    """Check `content` (a JSON/TOML object of rule fields) and make a Ruleset of it."""
    check_name(name)
    if not isinstance(content, Mapping):
        raise RulesetError("a ruleset is an object of rule fields", source=source)
    content = dict(content)
    description = content.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > DESCRIPTION_MAX):
        raise RulesetError(
            f"description must be a string of at most {DESCRIPTION_MAX} characters", field="description", source=source
        )
    try:
        rules = coerce_rules({key: value for key, value in content.items() if key != "description"})
    except RulesError as exc:
        raise RulesetError(str(exc), field=exc.field, source=source) from exc
    plain = json.loads(json.dumps(content, allow_nan=False))  # tuples as lists, as JSON gives them
    return Ruleset(name, plain, rules, rules_sha256(rules, description), version)


def load_file(path: str | Path) -> Ruleset:
    """A ruleset from a TOML file; its name is the file name without `.toml`."""
    p = Path(path)
    try:
        content = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"not valid TOML: {exc}", source=str(p)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesetError(f"cannot read the file: {exc}", source=str(p)) from exc
    return build_ruleset(p.stem, content, source=str(p))


def load_dir(directory: str | Path) -> dict[str, Ruleset]:
    """Every `*.toml` in `directory`, by name. Raises RulesetError naming the first bad file."""
    d = Path(directory)
    if not d.is_dir():
        return {}
    return {ruleset.name: ruleset for ruleset in (load_file(p) for p in sorted(d.glob("*.toml")))}


def report_ref(ruleset: Ruleset | None, rules: ValidationRules) -> dict[str, Any]:
    """A report's `ruleset`: the named one's reference, or (ad-hoc rules) no name and the rules' hash."""
    if ruleset is not None:
        return ruleset.ref()
    return {"name": None, "version": None, "sha256": rules_sha256(rules)}
