"""Kubernetes manifests in ops/k8s, checked offline: schemas, settings names, security, probes, KEDA.

Each rule is a function returning the problems it finds, run on the real manifests (none expected)
and on a broken copy (the problem must be reported), so that no rule passes vacuously.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import cache

import kubernetes_validate
import pytest
import yaml

from app.cli.main import build_parser
from app.core.config import Settings

from .helpers import ROOT

K8S_DIR = ROOT / "ops" / "k8s"
K8S_VERSION = "1.31"  # the Kubernetes version the manifests are validated against
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}  # KEDA: no schema in kubernetes-validate
NOT_RESOURCES = {"Kustomization"}
WORKLOAD_KINDS = {"Deployment", "Job"}
# Environment variables the manifests may set that are not Settings fields: name -> reason.
NON_SETTINGS: dict[str, str] = {}
NOT_SECRET = {("librarian-keda-redis", "address")}  # host:port for KEDA: a real value, no secret
PLACEHOLDER = re.compile(r"change_?me", re.IGNORECASE)
DOCKERFILE_UID = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))


@cache
def _load() -> tuple[tuple[str, dict], ...]:
    return tuple(
        (path.name, doc)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    )


def manifests() -> list[dict]:
    """A fresh copy of every document (tests may mutate theirs)."""
    return [copy.deepcopy(doc) for _, doc in _load()]


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def pod_specs(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(docs: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    for where, spec in pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", container, spec


# --- rules ------------------------------------------------------------------------------------


def image_problems(docs: list[dict]) -> list[str]:
    problems = []
    for where, container, _ in containers(docs):
        name, _, tag = container["image"].rpartition(":")
        if not name or "/" in tag or tag in ("", "latest"):
            problems.append(f"{where}: image {container['image']!r} has no pinned tag")
        elif name != "librarian":
            problems.append(f"{where}: image {container['image']!r} is not the librarian image")
    return problems


def security_problems(docs: list[dict]) -> list[str]:
    problems = []
    for where, container, spec in containers(docs):
        merged = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        if merged.get("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if merged.get("runAsUser") != DOCKERFILE_UID:
            problems.append(f"{where}: runAsUser is not the image's user {DOCKERFILE_UID}")
        if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if not {"/tmp", "/var/lib/librarian"} <= mounts:
            problems.append(f"{where}: /tmp and VAR_DIR need a writable volume")
        resources = container.get("resources", {})
        if not (resources.get("requests") and resources.get("limits")):
            problems.append(f"{where}: no resource requests and limits")
    return problems


def env_names(docs: list[dict]) -> dict[str, str]:
    """Every environment variable the containers get: name -> where it is set."""
    sources = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    names = {}
    for where, container, _ in containers(docs):
        for item in container.get("env", []):
            names[item["name"]] = f"{where} env"
        for ref in container.get("envFrom", []):
            kind, key = ("ConfigMap", "configMapRef") if "configMapRef" in ref else ("Secret", "secretRef")
            source = sources.get((kind, ref[key]["name"]))
            if source is None:
                names[f"<missing {kind} {ref[key]['name']}>"] = where
                continue
            for variable in {**source.get("data", {}), **source.get("stringData", {})}:
                names[variable] = f"{kind}/{ref[key]['name']}"
    return names


def env_problems(docs: list[dict]) -> list[str]:
    return [
        f"{name} ({where}) is not a Settings field"
        for name, where in sorted(env_names(docs).items())
        if name not in Settings.model_fields and name not in NON_SETTINGS
    ]


def beat_problems(docs: list[dict]) -> list[str]:
    beat = named(docs, "Deployment", "librarian-beat")["spec"]
    problems = []
    if beat.get("replicas") != 1:
        problems.append(f"beat: replicas is {beat.get('replicas')}, not 1")
    if beat.get("strategy", {}).get("type") != "Recreate":
        problems.append("beat: strategy is not Recreate (a rollout would run two)")
    return problems


def keda_problems(docs: list[dict]) -> list[str]:
    problems = []
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    auths = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    if not scaled:
        problems.append("no ScaledObject")
    problems += [
        f"{doc['kind']}: apiVersion {doc.get('apiVersion')!r} is not keda.sh/v1alpha1"
        for doc in [*scaled, *auths.values()]
        if doc.get("apiVersion") != "keda.sh/v1alpha1"
    ]
    for obj in scaled:
        target = obj["spec"].get("scaleTargetRef", {}).get("name")
        if target != "librarian-worker" or target not in deployments:
            problems.append(f"ScaledObject: scaleTargetRef {target!r} is not the worker Deployment")
        triggers = obj["spec"].get("triggers") or []
        if not any(
            t.get("type") == "redis" and t.get("metadata", {}).get("listName") == "validation" for t in triggers
        ):
            problems.append("ScaledObject: no redis trigger on listName validation")
        for trigger in triggers:
            auth = trigger.get("authenticationRef", {}).get("name")
            if auth not in auths:
                problems.append(f"ScaledObject: authenticationRef {auth!r} is not a TriggerAuthentication")
                continue
            params = {ref["parameter"] for ref in auths[auth]["spec"].get("secretTargetRef", [])}
            if not {"address", "password"} <= params:
                problems.append(f"TriggerAuthentication {auth}: no address and password")
            for ref in auths[auth]["spec"].get("secretTargetRef", []):
                secret = secrets.get(ref["name"], {})
                if ref["key"] not in {**secret.get("data", {}), **secret.get("stringData", {})}:
                    problems.append(f"TriggerAuthentication {auth}: Secret {ref['name']} has no key {ref['key']}")
    return problems


def probe_problems(docs: list[dict]) -> list[str]:
    api = named(docs, "Deployment", "librarian-api")["spec"]["template"]["spec"]["containers"][0]
    worker = named(docs, "Deployment", "librarian-worker")["spec"]["template"]["spec"]["containers"][0]
    problems = [
        f"api: no {probe} on GET /health"
        for probe in ("readinessProbe", "livenessProbe")
        if api.get(probe, {}).get("httpGet", {}).get("path") != "/health"
    ]
    if worker.get("livenessProbe", {}).get("exec", {}).get("command") != ["librarian", "probe", "worker"]:
        problems.append("worker: liveness is not `librarian probe worker`")
    return problems


def command_problems(docs: list[dict]) -> list[str]:
    """Every `librarian ...` a container or probe runs is a command the CLI accepts."""
    problems = []
    for where, container, _ in containers(docs):
        commands = [container.get("command", [])]
        commands += [
            container.get(p, {}).get("exec", {}).get("command", []) for p in ("livenessProbe", "readinessProbe")
        ]
        for command in commands:
            if command[:1] != ["librarian"]:
                continue
            try:
                build_parser().parse_args(command[1:])
            except SystemExit:
                problems.append(f"{where}: `{' '.join(command)}` is not a librarian command")
    return problems


RULES = [
    image_problems,
    security_problems,
    env_problems,
    beat_problems,
    keda_problems,
    probe_problems,
    command_problems,
]


# --- the real manifests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in _load() if doc["kind"] not in CRD_KINDS | NOT_RESOURCES],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_manifest_matches_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert all(image["newTag"] not in ("", "latest") for image in kustomization["images"])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_manifests_follow_the_rule(rule):
    assert rule(manifests()) == []


def test_the_parts_run_as_stated():
    docs = manifests()
    deployment = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert deployment["librarian-api"]["spec"]["replicas"] == 2
    for part in ("api", "worker", "beat"):
        assert deployment[f"librarian-{part}"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
            "librarian",
            part,
        ]
    assert named(docs, "Job", "librarian-migrate")["spec"]["template"]["spec"]["containers"][0]["command"][:2] == [
        "librarian",
        "migrate",
    ]
    service = named(docs, "Service", "librarian-api")
    assert [p["port"] for p in service["spec"]["ports"]] == [8000]
    budgets = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {
        f"librarian-{part}": {
            "minAvailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "librarian", "app.kubernetes.io/component": part}},
        }
        for part in ("api", "worker")
    }
    # Longer than the hard task time limit: a worker's running tasks finish on SIGTERM.
    worker = deployment["librarian-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > Settings.model_fields["TASK_TIME_LIMIT"].default


def test_secrets_are_marked_placeholders():
    docs = manifests()
    for secret in (d for d in docs if d["kind"] == "Secret"):
        for key, value in secret["stringData"].items():
            if (secret["metadata"]["name"], key) not in NOT_SECRET:
                assert value == "" or PLACEHOLDER.search(value), f"{secret['metadata']['name']}.{key}"
    config = named(docs, "ConfigMap", "librarian-config")["data"]
    secret_keys = set(named(docs, "Secret", "librarian-secrets")["stringData"])
    assert {"REDIS_URL", "DATABASE_URL", "API_TOKENS", "SENTRY_DSN", "FLOWER_PASSWORD", "METRICS_TOKEN"} <= secret_keys
    assert not secret_keys & set(config), "a setting in both the ConfigMap and the Secret"


# --- each rule can fail -------------------------------------------------------------------------


def _first_container(docs: list[dict], name: str) -> dict:
    return named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _latest(docs):
    _first_container(docs, "librarian-api")["image"] = "librarian:latest"


def _root(docs):
    named(docs, "Deployment", "librarian-beat")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0


def _unknown_env(docs):
    named(docs, "ConfigMap", "librarian-config")["data"]["WORKER_CONCURENCY"] = "4"


def _rolling_beat(docs):
    named(docs, "Deployment", "librarian-beat")["spec"]["strategy"] = {"type": "RollingUpdate"}


def _keda_target(docs):
    next(d for d in docs if d["kind"] == "ScaledObject")["spec"]["scaleTargetRef"]["name"] = "librarian-workers"


def _no_probe(docs):
    del _first_container(docs, "librarian-worker")["livenessProbe"]


def _bad_command(docs):
    _first_container(docs, "librarian-worker")["livenessProbe"]["exec"]["command"] = ["librarian", "probe", "wrker"]
    _first_container(docs, "librarian-beat")["command"] = ["librarian", "beats"]


@pytest.mark.parametrize(
    ("rule", "breakage", "expected"),
    [
        (image_problems, _latest, "has no pinned tag"),
        (security_problems, _root, "runAsUser is not the image's user"),
        (env_problems, _unknown_env, "WORKER_CONCURENCY (ConfigMap/librarian-config) is not a Settings field"),
        (beat_problems, _rolling_beat, "strategy is not Recreate"),
        (keda_problems, _keda_target, "scaleTargetRef 'librarian-workers' is not the worker Deployment"),
        (probe_problems, _no_probe, "worker: liveness is not"),
        (command_problems, _bad_command, "`librarian beats` is not a librarian command"),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_each_rule_reports_a_broken_manifest(rule, breakage, expected):
    docs = manifests()
    breakage(docs)
    assert any(expected in problem for problem in rule(docs)), rule(docs)


def test_schema_check_reports_a_broken_manifest():
    deployment = named(manifests(), "Deployment", "librarian-api")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
