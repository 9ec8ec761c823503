"""Compose files, Dockerfile: the Compose Specification schema plus the project's own rules.

tests/ops/compose-spec.json is vendored from github.com/compose-spec/compose-spec,
schema/compose-spec.json at commit a08f8d51631b7127ddac3d2c65537db429d0f1d0 (refresh it from there).
No Docker engine is needed: files are checked as written, before variable interpolation.
"""

from __future__ import annotations

import itertools
import json
import re

import jsonschema
import pytest
import yaml

from app.core.config import Settings

from .helpers import ROOT

CORE = ROOT / "docker-compose.yml"
OVERLAY = ROOT / "docker-compose.monitoring.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "tests" / "ops" / "compose-spec.json"

# Published ports that may listen on every interface: each entry needs a written reason.
PUBLIC_PORTS_ALLOWED: dict[str, str] = {}
# Core services that run once and exit, so have no healthcheck (none yet).
ONE_SHOT_SERVICES = {"migrate"}  # runs `librarian migrate` once; api, worker and beat wait for it to complete
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|DSN|(^|_)KEY$|(^|_)AUTH$", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
ONLY_A_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?-][^}]*)?\}$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]+$")
ASSIGNMENT = re.compile(r"^(?P<comment>\s*#)?\s*(?P<name>[A-Z][A-Z0-9_]*)=", re.MULTILINE)
# An image tag names at least major.minor: `7-alpine` or `16` float across releases.
PINNED_TAG = re.compile(r"^v?\d+\.\d+")
# Settings compose sets in an app container over .env, each with its reason. Any other setting
# in `environment:` may only pass the variable through (${NAME}, ${NAME:?...}, ${NAME:-...}).
COMPOSE_SETS: dict[str, str] = {
    "ENVIRONMENT": "the stack is a production deployment: placeholder secrets are refused",
    "REDIS_URL": "the in-network Redis (service redis), with REDIS_PASSWORD",
    "DATABASE_URL": "the in-network PostgreSQL (service db), with POSTGRES_PASSWORD",
    "VAR_DIR": "the container's own state directory, writable by the image user",
    "STORAGE_DIR": "where the shared uploads volume is mounted",
    "API_HOST": "the container's interface, behind the port published on 127.0.0.1",
    "API_PORT": "the published port, the healthcheck and Prometheus' target api:8000",
    "WORKER_METRICS_HOST": "Prometheus scrapes the worker over the compose network",
    "WORKER_METRICS_PORT": "Prometheus' target worker:9808 (prometheus/prometheus.yml)",
    "FLOWER_HOST": "the container's interface, behind the port published on 127.0.0.1",
    "FLOWER_PORT": "the published port, the healthcheck and Prometheus' target flower:5555",
}


def load(path):
    return yaml.safe_load(path.read_text())  # also resolves the x-* anchors and << merges


COMPOSE_FILES = {"docker-compose.yml": CORE, "docker-compose.monitoring.yml": OVERLAY}


def all_services():
    for file_name, path in COMPOSE_FILES.items():
        for name, service in load(path)["services"].items():
            yield f"{file_name}:{name}", name, service


def environment(service) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_args(service) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(arg) for arg in command]


def app_services():
    """The containers that run Librarian itself (`librarian <part>`)."""
    return [
        (where, name, service) for where, name, service in all_services() if command_args(service)[:1] == ["librarian"]
    ]


def env_files(service) -> list[str]:
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str) else entries
    return [(entry if isinstance(entry, str) else entry["path"]).removeprefix("./") for entry in entries]


def passes_through(name: str, value: str) -> bool:
    """`${NAME}`, `${NAME:?...}` or `${NAME:-...}`: compose reads .env for it as well."""
    ref = REFERENCE.match(value)
    return bool(ONLY_A_REFERENCE.match(value) and ref and ref["name"] == name)


def pinned(image: str) -> bool:
    tag = image.partition("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    return "${" not in image and tag != "latest" and bool(PINNED_TAG.match(tag))


# --------------------------------------------------------------------------- schema
@pytest.mark.parametrize("file_name", sorted(COMPOSE_FILES))
def test_compose_file_matches_the_compose_specification(file_name):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load(COMPOSE_FILES[file_name])), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_is_not_vacuous():
    schema = json.loads(SCHEMA.read_text())
    broken = {"services": {"api": {"image": "x", "restart": "unless-stopped", "helthcheck": {}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


# --------------------------------------------------------------------------- project rules
def test_published_ports_are_bound_to_localhost():
    for where, _, service in all_services():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, shown = port.get("host_ip"), json.dumps(port)
            else:
                shown = str(port)
                parts = shown.split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            if shown in PUBLIC_PORTS_ALLOWED:
                continue
            assert host_ip == "127.0.0.1", f"{where}: port {shown} must be bound to 127.0.0.1"


def test_core_services_have_healthchecks_and_restart():
    for name, service in load(CORE)["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"


def test_app_services_wait_for_healthy_dependencies():
    services = load(CORE)["services"]
    assert services["migrate"]["command"] == ["migrate"] or "migrate" in str(services["migrate"]["command"])
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        for dependency in ("redis", "db"):
            assert depends[dependency]["condition"] == "service_healthy", f"{name} -> {dependency}"
        assert depends["migrate"]["condition"] == "service_completed_successfully", f"{name} -> migrate"
        assert services[name]["build"]["target"] == "prod"
        assert command_args(services[name])[:2] == ["librarian", name]


def test_no_literal_secrets():
    for where, _, service in all_services():
        for key, value in environment(service).items():
            for ref in REFERENCE.finditer(value):  # ${SECRET:-default} hides a literal secret
                if SECRET_KEY.search(ref["name"]) and ref["op"] in ("-", ":-"):
                    assert not ref["arg"], f"{where}: {key} defaults {ref['name']} to a literal"
            if SECRET_KEY.search(key):
                assert REFERENCE.search(value), f"{where}: {key} must come from ${{VARIABLE}}"
            url = URL_PASSWORD.match(value)
            if url:
                assert ONLY_A_REFERENCE.match(url["password"]), f"{where}: {key} embeds a literal password"
        args = command_args(service)
        for flag, value in itertools.pairwise(args):
            if flag.startswith("-") and (SECRET_KEY.search(flag) or "pass" in flag.lower()):
                assert ONLY_A_REFERENCE.match(value), f"{where}: {flag} takes a literal"


def test_redis_requires_a_password():
    redis = load(CORE)["services"]["redis"]
    args = command_args(redis)
    assert "--requirepass" in args
    assert args[args.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    # The healthcheck authenticates through REDISCLI_AUTH, not `-a <password>` in the command line.
    assert environment(redis)["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")
    assert " -a " not in " ".join(redis["healthcheck"]["test"])
    for where, _, service in all_services():
        url = environment(service).get("REDIS_URL")
        if url:
            assert url.startswith("redis://:${REDIS_PASSWORD"), f"{where}: REDIS_URL without the password"


def test_monitoring_overlay_is_behind_the_profile():
    for name, service in load(OVERLAY)["services"].items():
        assert service.get("profiles") == ["monitoring"], f"{name}: needs profiles: [monitoring]"
    for name, service in load(CORE)["services"].items():
        assert "profiles" not in service, f"core service {name} must always start"


def test_every_service_runs_as_non_root():
    for where, _, service in all_services():
        user = str(service.get("user", "")).split(":")[0]
        assert user and user not in ("root", "0"), f"{where}: set a non-root `user:`"


def test_app_containers_run_as_the_image_user():
    uid = re.search(r"useradd[^\n]*--uid (\d+)", DOCKERFILE.read_text().replace("\\\n", " "))
    assert uid, "Dockerfile creates no user with a fixed uid"
    for where, _, service in all_services():
        if str(service.get("image", "")).startswith("librarian:"):
            assert str(service["user"]).split(":")[0] == uid.group(1), where


def test_dockerfile_prod_stage_runs_as_non_root():
    stages, current = {}, None
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", line.strip(), re.IGNORECASE)
        if match:
            current = (match.group(1) or f"stage{len(stages)}").lower()
            stages[current] = []
        elif current:
            stages[current].append(line.strip())
    assert {"base", "dev", "prod"} <= set(stages), sorted(stages)
    users = [line.split(None, 1)[1] for line in stages["prod"] if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "prod stage must end as a non-root USER"
    prod = "\n".join(stages["prod"])
    assert "--no-deps" in prod
    assert "requirements.lock" in "\n".join(stages["base"])


def test_the_prod_image_ships_the_rulesets_where_rulesets_dir_points():
    """Every process loads RULESETS_DIR at start-up; the image's working directory is VAR_DIR."""
    prod = DOCKERFILE.read_text().split(" AS prod", 1)[1]
    copied = re.search(r"^COPY\s+rulesets\s+(\S+)", prod, re.MULTILINE)
    configured = re.search(r"^ENV\s+RULESETS_DIR=(\S+)", prod, re.MULTILINE)
    assert copied and configured, "the prod stage must COPY rulesets and set RULESETS_DIR"
    assert copied.group(1).rstrip("/") == configured.group(1).rstrip("/")
    assert configured.group(1).startswith("/")
    assert (ROOT / "rulesets" / "default.toml").is_file()


def test_dockerignore_keeps_secrets_and_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".env", ".venv/", "var/", "**/__pycache__/"):
        assert entry in ignored, entry


def test_prometheus_targets_are_compose_services():
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    services = set(load(CORE)["services"]) | set(load(OVERLAY)["services"])
    hosts = {"alertmanager"} if "alertmanager" in services else set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            hosts |= {target.split(":")[0] for target in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            hosts |= set(dns["names"])
    hosts.discard("localhost")
    assert hosts <= services, sorted(hosts - services)


def test_flower_metrics_credentials_reach_prometheus():
    """Prometheus scrapes Flower as user `prometheus` with the password of a compose secret."""
    overlay = load(OVERLAY)
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    auth = next(job for job in config["scrape_configs"] if job["job_name"] == "flower")["basic_auth"]
    secret = auth["password_file"].removeprefix("/run/secrets/")
    assert overlay["secrets"][secret]["environment"] == "FLOWER_METRICS_PASSWORD"
    assert secret in overlay["services"]["prometheus"]["secrets"]
    basic_auth = environment(overlay["services"]["flower"])["FLOWER_BASIC_AUTH"]
    assert f"{auth['username']}:${{FLOWER_METRICS_PASSWORD:?" in basic_auth


def test_env_example_lists_every_required_compose_variable():
    """Every ${VAR:?...} the compose files insist on is documented in .env.example (the lead's file)."""
    example = ROOT / ".env.example"
    if not example.exists():
        pytest.skip(".env.example does not exist yet")
    documented = set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))
    required = {
        ref["name"]
        for path in COMPOSE_FILES.values()
        for ref in REFERENCE.finditer(path.read_text())
        if ref["op"] in (":?", "?")
    }
    assert required <= documented, f".env.example lacks {sorted(required - documented)}"


def test_image_lock_file_has_the_database_driver():
    """The prod image installs requirements.lock only; compose's DATABASE_URL needs psycopg 3."""
    assert "postgresql+psycopg://" in CORE.read_text(), "compose's DATABASE_URL should name the psycopg 3 driver"
    pins = (ROOT / "requirements.lock").read_text().lower()
    assert re.search(r"^psycopg==", pins, re.MULTILINE) and re.search(r"^psycopg-binary==", pins, re.MULTILINE), (
        "requirements.lock lacks psycopg: lock the `postgres` extra too, or the compose stack cannot reach its database"
    )


# --------------------------------------------------------------------------- settings and images
def test_every_setting_reaches_every_app_container_from_env():
    fields = set(Settings.model_fields)
    assert set(COMPOSE_SETS) <= fields, sorted(set(COMPOSE_SETS) - fields)
    apps = app_services()
    assert {name for _, name, _ in apps} >= {"api", "worker", "beat", "flower"}
    used = set()
    for where, name, service in apps:
        assert ".env" in env_files(service), f"{where}: env_file must include .env"
        assert command_args(service) == ["librarian", name], f"{where}: flags would override settings from .env"
        for key, value in environment(service).items():
            if key in fields and not passes_through(key, value):
                assert key in COMPOSE_SETS, (
                    f"{where}: {key}={value} overrides .env (pass ${{{key}}} through, or list it)"
                )
                used.add(key)
    assert used == set(COMPOSE_SETS), f"COMPOSE_SETS lists what no container sets: {sorted(set(COMPOSE_SETS) - used)}"


def test_pass_through_and_pin_rules_are_not_vacuous():
    assert passes_through("LOG_LEVEL", "${LOG_LEVEL:-INFO}") and passes_through("X", "${X:?set X}")
    assert not passes_through("LOG_LEVEL", "INFO") and not passes_through("LOG_LEVEL", "${OTHER}")
    assert (
        pinned("redis:7.4.2-alpine") and pinned("oliver006/redis_exporter:v1.63.0") and pinned("postgres:16.6-alpine")
    )
    for image in ("redis:7-alpine", "postgres:16", "redis/redisinsight:latest", "grafana/grafana", "x:${TAG:-1.0}"):
        assert not pinned(image), image


def test_every_image_is_pinned_to_a_release():
    for where, _, service in all_services():
        image = str(service.get("image", ""))
        if "build" in service:  # built from this repository's Dockerfile, named by LIBRARIAN_IMAGE_TAG
            assert image.startswith("librarian:"), where
            continue
        assert pinned(image), f"{where}: pin {image!r} to a release tag (at least major.minor, not latest)"


def test_env_example_documents_every_setting():
    documented = {match["name"] for match in ASSIGNMENT.finditer((ROOT / ".env.example").read_text())}
    missing = set(Settings.model_fields) - documented
    assert not missing, f".env.example lacks {sorted(missing)} (a one-line comment and the default each)"


def test_copying_env_example_keeps_what_the_image_sets():
    """env_file wins over the image's ENV: a setting the Dockerfile fixes must stay commented out in
    .env.example, or compose must set it, or `cp .env.example .env` breaks the containers."""
    dockerfile = DOCKERFILE.read_text().replace("\\\n", " ")
    image_env = {
        name
        for line in dockerfile.splitlines()
        if line.upper().startswith("ENV ")
        for name in re.findall(r"([A-Z][A-Z0-9_]*)=", line)
    }
    example = (ROOT / ".env.example").read_text()
    uncommented = {match["name"] for match in ASSIGNMENT.finditer(example) if not match["comment"]}
    clash = image_env & set(Settings.model_fields) & uncommented
    assert "VAR_DIR" in image_env
    for where, _, service in app_services():
        lost = clash - set(environment(service))
        assert not lost, f"{where}: .env.example would replace the image's {sorted(lost)}"
