"""Every private coupling to a dependency, guarded: an upgrade that breaks one fails here, by name.

A line in app/ that relies on a private attribute, a method signature, a file layout or a message
layout of kombu, Celery, prometheus_client, sentry-sdk or the standard library carries a marker comment
`# private: <id>` (`-- private: <id>` inside a Lua script). Each id has a check in one of the
`*_checks.py` modules next to this file. This test
- finds every marker and fails if one has no check (so a new coupling cannot slip in unguarded);
- runs each check, and on failure names the installed version and every file:line relying on it;
- fails on a check no marker uses any more;
- checks that pyproject.toml pins each of these dependencies to a range the installed one is in.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.contract import celery_checks, kombu_checks, prometheus_client_checks, sentry_checks, stdlib_checks

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"(?:#|--) private: ([\w.]+)")
CHECKS = {
    **kombu_checks.CHECKS,
    **celery_checks.CHECKS,
    **prometheus_client_checks.CHECKS,
    **sentry_checks.CHECKS,
    **stdlib_checks.CHECKS,
}
PINNED = ("celery", "kombu", "prometheus-client", "sentry-sdk")


def markers() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "app").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for coupling in MARKER.findall(line):
                found[coupling].append(f"{path.relative_to(ROOT)}:{number}")
    return dict(found)


USES = markers()


def test_the_markers_are_found():
    assert len(USES) >= 20, f"only {len(USES)} coupling ids in app/: is the marker still `# private: <id>`?"


def test_every_marked_coupling_has_a_check():
    unguarded = {c: where for c, where in USES.items() if c not in CHECKS}
    assert not unguarded, "private couplings without a check in tests/contract/*_checks.py:\n" + "\n".join(
        f"  {c}: {', '.join(where)}" for c, where in sorted(unguarded.items())
    )


def test_every_check_guards_a_marked_coupling():
    stale = sorted(set(CHECKS) - set(USES))
    assert not stale, f"checks no `# private:` marker in app/ uses any more (remove them): {stale}"


@pytest.mark.parametrize("coupling", sorted(CHECKS))
def test_coupling_still_holds(coupling):
    dependency = coupling.split(".", 1)[0].replace("_", "-")
    installed = version(dependency) if dependency != "stdlib" else "the running Python"
    try:
        CHECKS[coupling]()
    except AssertionError as exc:
        where = "\n".join(f"  {w}" for w in USES.get(coupling, ["(no marker)"]))
        pytest.fail(
            f"private coupling `{coupling}` broken with {dependency} {installed}: {exc}\nrelied on at:\n{where}",
            pytrace=False,
        )


@pytest.mark.parametrize("name", PINNED)
def test_dependency_is_pinned_to_a_range_that_holds_the_installed_version(name):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    matching = [r for r in requirements if r.name.lower() == name]
    assert matching, f"{name} is not a direct dependency in pyproject.toml: pin its range there"
    spec = matching[0].specifier
    assert any(s.operator in ("<", "<=", "~=", "==") for s in spec), (
        f"{name}{spec} has no upper bound: a routine upgrade could break the couplings above silently"
    )
    assert spec.contains(version(name)), f"installed {name} {version(name)} is outside the pinned range {spec}"


def test_a_check_fails_when_its_coupling_breaks(monkeypatch):
    """The checks can fail: kombu's ack bookkeeping renamed, as an upgrade might do it."""
    from kombu.transport import redis as kombu_redis

    def _remove_from_indices(self, tag, pipe=None, *, index=None):
        return pipe

    monkeypatch.setattr(kombu_redis.QoS, "_remove_from_indices", _remove_from_indices)
    with pytest.raises(AssertionError, match="_remove_from_indices"):
        kombu_checks.CHECKS["kombu.QoS._remove_from_indices"]()
