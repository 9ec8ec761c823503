"""The names the docs tell a reader to type exist: `make` targets, `librarian` subcommands, settings.

Scanned: README.md, CONTRIBUTING.md and docs/*.md. Names are read only where they are clearly
commands or settings, never from prose: inside backtick spans and fenced code blocks,
- `make <target>...` at the start of a command (after `$ ` or `VAR=value` prefixes);
- `librarian <subcommand> [<subcommand>]` anywhere in a command (`.venv/bin/librarian`,
  `docker compose exec api librarian ...`, `python -m app.cli.main ...`); `a|b` means a and b;
- environment variables: `NAME=value`, `$NAME` / `${NAME}`, `settings.NAME`, and a backtick
  span that is exactly an UPPER_CASE name and looks like a setting (its first word starts a known
  variable, e.g. `WORKER_`, and it is not a constant of app/, such as a finding code).
A variable must be a Settings field, a variable the project reads or passes that is not a
setting (PROJECT_ENV below, each checked to occur in the repository), another tool's variable
(TOOL_ENV), a Makefile variable, a variable of docker-compose*.yml or the Dockerfile, or a shell
variable the same doc assigns and then uses as `$NAME`.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from .helpers import ROOT

DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

# Not Settings fields, read or passed by the project itself: name -> where (checked to occur).
PROJECT_ENV = {
    "LIBRARIAN_PROCESS": "app/cli/main.py",  # which process is logging
    "PROMETHEUS_MULTIPROC_DIR": "app/cli/main.py",  # prometheus_client's multiprocess directory
    "FLOWER_BASIC_AUTH": "app/cli/main.py",  # Flower's accounts; ours is added
    "LIBRARIAN_TOKEN": "app/cli/submit.py",  # `librarian submit`'s API token
    "LIBRARIAN_SOAK": "tests/reliability/helpers.py",
    "LIBRARIAN_RELIABILITY_N": "tests/reliability/test_worker_kill.py",
    "LIBRARIAN_FUZZ_EXAMPLES": "tests/reliability/test_fuzz.py",
    "LIBRARIAN_FUZZ_SEED": "tests/reliability/test_fuzz.py",
    "LIBRARIAN_TEST_REDIS_URL": "tests/conftest.py",
    "LIBRARIAN_TEST_DATABASE_URL": "tests/conftest.py",
    "LIBRARIAN_UPDATE_SCREENSHOTS": "tests/ops/test_flower_browser.py",
    "CI": "tests/utils/browser.py",  # CI=true: fail instead of skipping when a tool is missing
}
# Other tools' own variables.
TOOL_ENV = {"PYTHONPATH", "REDISCLI_AUTH", "COMPOSE_FILE", "COMPOSE_PROFILES", "HOSTNAME", "PATH", "HOME"}

ENV_NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"
ASSIGNMENT = re.compile(rf"(?<![\w$.\-/])({ENV_NAME})=(?!=)")
EXPANSION = re.compile(rf"\$\{{?({ENV_NAME})")
SETTINGS_ATTR = re.compile(rf"\bsettings\.({ENV_NAME})\b")
CLI_WORD = re.compile(r"[a-z][a-z0-9-]*")
MAKE_TARGET = re.compile(r"[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class Snippet:
    """A backtick span or one line of a fenced code block."""

    line: int
    text: str
    inline: bool  # a backtick span (its whole text is one name or one command)


@dataclass
class Known:
    targets: set[str]
    cli: dict  # subcommand -> its own subcommands (nested dicts)
    env: set[str]
    constants: set[str]  # UPPER_CASE names defined at module level in app/ (finding codes, ...)
    prefixes: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.prefixes = {name.split("_")[0] for name in self.env if "_" in name}


# --- reading the docs -------------------------------------------------------------------------


def snippets(text: str) -> Iterator[Snippet]:
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if marker and (fence is None or (marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence))):
            fence = None if fence else marker.group(1)
            continue
        if fence:
            yield Snippet(number, line, inline=False)
            continue
        for span in re.finditer(r"(`+)(.+?)\1", line):
            yield Snippet(number, span.group(2).strip(), inline=True)


def commands(snippet: Snippet) -> Iterator[list[str]]:
    """Each command of a snippet as words: split at `&&`, `||`, `;`, ` | `, comments dropped."""
    text = re.sub(r"(^|\s)#.*", "", snippet.text)
    for part in re.split(r"&&|\|\||;|\s\|\s|\$\(|\)", text):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and (words[0] in ("$", "sudo") or re.fullmatch(rf"{ENV_NAME}=.*", words[0])):
            words = words[1:]
        if words:
            yield words


def make_targets(snippet: Snippet) -> Iterator[str]:
    for words in commands(snippet):
        if words[0] != "make":
            continue
        for word in words[1:]:
            if "=" in word or word.startswith("-"):
                continue
            if not MAKE_TARGET.fullmatch(word):  # a placeholder (`bench-<name>`) or the end of it
                break
            yield word


def cli_paths(snippet: Snippet) -> Iterator[tuple[str, ...]]:
    """The subcommand words after each `librarian` (or `-m app.cli.main`) of a command."""
    for words in commands(snippet):
        for i, word in enumerate(words):
            if word == "librarian" or word.endswith("/librarian") or (word == "app.cli.main" and words[i - 1] == "-m"):
                path: list[str] = []
                for following in words[i + 1 :]:
                    if not all(CLI_WORD.fullmatch(alt) for alt in following.split("|")):
                        break
                    path.append(following)
                if path:
                    yield tuple(path)


def env_names(snippet: Snippet, known: Known) -> Iterator[str]:
    yield from ASSIGNMENT.findall(snippet.text)
    yield from EXPANSION.findall(snippet.text)
    yield from SETTINGS_ATTR.findall(snippet.text)
    name = snippet.text
    looks_like_a_setting = "_" in name and name.split("_")[0] in known.prefixes and name not in known.constants
    if snippet.inline and re.fullmatch(ENV_NAME, name) and looks_like_a_setting:
        yield name


def shell_variables(text: str) -> set[str]:
    """Variables a doc assigns at the start of a code line (or `export`s) and then uses as `$NAME`."""
    assigned = set(re.findall(rf"^\s*(?:export\s+)?({ENV_NAME})=", text, re.MULTILINE))
    return {name for name in assigned if re.search(rf"\$\{{?{name}\b", text)}


# --- what exists ------------------------------------------------------------------------------


def makefile_targets(makefile: str) -> set[str]:
    targets = set()
    for line in makefile.splitlines():
        match = re.match(r"([A-Za-z0-9][\w. -]*?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def subcommand_tree(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: subcommand_tree(sub) for name, sub in action.choices.items()}
    return {}


def cli_missing(path: tuple[str, ...], tree: dict) -> list[str]:
    """The words of `path` that are not subcommands where a subcommand is expected."""
    missing = []
    for alternatives in path:
        if not tree:  # arguments from here on
            break
        names = alternatives.split("|")
        missing += [name for name in names if name not in tree]
        tree = tree.get(names[0], {})
    return missing


@cache
def known() -> Known:
    from app.cli.main import build_parser
    from app.core.config import Settings

    makefile = (ROOT / "Makefile").read_text()
    env = set(Settings.model_fields) | set(PROJECT_ENV) | TOOL_ENV
    env |= set(re.findall(rf"^({ENV_NAME})\s*[?:]?=", makefile, re.MULTILINE))
    env |= set(re.findall(rf"\$\(({ENV_NAME})\)", makefile))
    for path in [*ROOT.glob("docker-compose*.yml"), ROOT / "Dockerfile"]:
        text = path.read_text()
        env |= set(re.findall(rf"\$\{{?({ENV_NAME})", text))
        env |= set(re.findall(rf"^\s*(?:ARG|ENV)\s+({ENV_NAME})=", text, re.MULTILINE))
    constants = set()
    for path in (ROOT / "app").rglob("*.py"):
        constants |= set(re.findall(rf"^({ENV_NAME})\s*(?::[^=\n]*)?=", path.read_text(), re.MULTILINE))
    return Known(makefile_targets(makefile), subcommand_tree(build_parser()), env, constants - env)


def stale_names(text: str, known: Known) -> list[str]:
    """Every name in a doc's text that does not exist, as 'line N: kind name'."""
    local = shell_variables(text)
    found = []
    for snippet in snippets(text):
        found += [f"line {snippet.line}: make {t}" for t in make_targets(snippet) if t not in known.targets]
        for path in cli_paths(snippet):
            found += [f"line {snippet.line}: librarian {' '.join(path)} (no {w})" for w in cli_missing(path, known.cli)]
        names = set(env_names(snippet, known)) - known.env - local
        found += [f"line {snippet.line}: variable {name}" for name in sorted(names)]
    return found


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_names_in_docs_exist(doc: Path) -> None:
    stale = stale_names(doc.read_text(), known())
    assert not stale, f"{doc.relative_to(ROOT)} names what does not exist:\n" + "\n".join(stale)


def test_made_up_names_are_reported() -> None:
    sample = "\n".join(
        [
            "Run `make nosuchtarget`, then `librarian nosuchcommand --flag` and `librarian up|nosuchpart`.",
            "Set `NOSUCH_SETTING=1` or `WORKER_NOSUCH_KNOB`; the code reads `settings.NOSUCH_FIELD`.",
            "```bash",
            "NOSUCH_ENV=1 make test nosuchother",
            "docker compose exec worker .venv/bin/librarian worker && ${ALSO_NOSUCH:-x} librarian up",
            "```",
        ]
    )
    assert stale_names(sample, known()) == [
        "line 1: make nosuchtarget",
        "line 1: librarian nosuchcommand (no nosuchcommand)",
        "line 1: librarian up|nosuchpart (no nosuchpart)",
        "line 2: variable NOSUCH_SETTING",
        "line 2: variable WORKER_NOSUCH_KNOB",
        "line 2: variable NOSUCH_FIELD",
        "line 4: make nosuchother",
        "line 4: variable NOSUCH_ENV",
        "line 5: variable ALSO_NOSUCH",
    ]


def test_prose_and_other_names_are_not_read() -> None:
    sample = "\n".join(
        [
            "Make sure the librarian worker is up; make test-fast first.",  # prose, no backticks
            "`LAYER_CYCLE`, `REPORT_TRUNCATED`, `LIB_Z01_WALL_001`, `librarian.demo.sleep`, `librarian <part>`",
            "`make bench-<name>`, `librarian worker --concurrency 4`, `librarian validate model.3dm`",
            "```bash",
            'RCLI="redis-cli -n 0"',
            "export TOKEN=secret",
            '$RCLI info | grep used_memory; curl -H "Authorization: Bearer $TOKEN" http://x',
            "LIBRARIAN_SOAK=1 WORKER_DEAD_AFTER=10 make bench BENCH_ARGS=--full",
            "```",
        ]
    )
    assert stale_names(sample, known()) == []


def test_allow_listed_variables_are_used() -> None:
    """Each PROJECT_ENV name still occurs where it is said to be read."""
    unused = [name for name, where in PROJECT_ENV.items() if name not in (ROOT / where).read_text()]
    assert not unused, f"PROJECT_ENV lists variables no longer read: {unused}"
