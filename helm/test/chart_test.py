#!/usr/bin/env python3
"""Offline test of the helm/switchboard chart.

No helm binary and no cluster: helm-python-sdk (Helm v4's Go SDK through ctypes) loads,
lints, schema-checks and renders the chart; kubernetes-validate checks every rendered object
strictly against the Kubernetes JSON schemas of KUBE_VERSION; yamllint checks the plain YAML
files. Then the wiring between the objects is asserted.

For every ci/*-values.yaml: lint, values-schema validation, render, strict validation of
each manifest, wiring and security assertions. Every ci/bad/*.yaml must fail values-schema
validation; every ci/render-fail/*.yaml must pass the schema and fail to render.

ServiceMonitor and PrometheusRule (monitoring.coreos.com) are CRDs that kubernetes-validate
has no schema for: they are only checked for shape (apiVersion/kind/metadata/spec) and their
wiring, not strictly validated.

The Grafana dashboard (dashboards/switchboard.json, shipped in a ConfigMap when
metrics.grafanaDashboard.enabled) is checked as JSON: uid and title, a PromQL target on every
panel, and only metric names the services export, read from their Rust sources.

Prints one line per check and a closing 'N passed, N failed'; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

HELM_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = HELM_DIR.parent
CHART_DIR = HELM_DIR / "switchboard"
DASHBOARD_FILE = CHART_DIR / "dashboards" / "switchboard.json"
DASHBOARD_KEY = "switchboard.json"
# The janitor pushes under this Pushgateway job (janitor/src/metrics.rs JOB).
JANITOR_JOB = "switchboard_janitor"
KUBE_VERSION = "1.34.0"
RELEASE = "sb"
NAMESPACE = "rtc"
CRD_GROUPS = ("monitoring.coreos.com/",)

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, fn: Callable[[], Any]) -> Any:
    """Run one check, record and print its outcome; return fn's result (None on failure)."""
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the run
        detail = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (AssertionError, helm.HelmError, kubernetes_validate.ValidationError)):
            detail += "\n" + traceback.format_exc()
        RESULTS.append((name, False, detail))
        print(f"FAIL {name}\n     {detail.strip().replace(chr(10), chr(10) + '     ')}")
        return None
    RESULTS.append((name, True, ""))
    print(f"ok   {name}")
    return out


def load_values(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return data or {}


# ---------------------------------------------------------------- static checks


def yamllint_files() -> None:
    files = [CHART_DIR / "Chart.yaml", CHART_DIR / "values.yaml", *sorted((CHART_DIR / "ci").rglob("*.yaml"))]
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-f", "parsable", "-c", str(HELM_DIR / ".yamllint"), *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def schema_covers_values(chart: helm.Chart) -> None:
    """Every key of values.yaml is described by the schema (no key left to additionalProperties)."""
    schema = chart.schema
    assert schema is not None, "chart has no values.schema.json"
    missing: list[str] = []

    def walk(values: Any, node: dict[str, Any], path: str) -> None:
        node = resolve(schema, node)
        if "allOf" in node:  # extraEnv-style maps: allOf of a map schema and a name rule
            return
        if not isinstance(values, dict):
            return
        props = node.get("properties")
        if props is None:  # a free map (labels, annotations, nodeSelector): values are data
            assert "additionalProperties" in node or node.get("type") == "object", path
            return
        if node.get("additionalProperties", True) is not False:
            missing.append(f"{path or '<root>'} (additionalProperties not false)")
        for key, sub in values.items():
            if key not in props:
                missing.append(f"{path}.{key}".lstrip("."))
            else:
                walk(sub, props[key], f"{path}.{key}")

    walk(chart.values, schema, "")
    assert not missing, "values not described by the schema: " + ", ".join(missing)


# ---------------------------------------------------------------- Grafana dashboard

# A metric name of ours in PromQL: not part of a longer identifier (e.g. a label name).
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:sb|turn|janitor)_[a-z0-9_]+")
# PromQL string literals: label values such as job="switchboard_janitor" are not metrics.
PROMQL_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# One selector: a metric name of ours and its optional {matchers} (a "}" may sit in a value).
SELECTOR_RE = re.compile(
    r'(?<![A-Za-z0-9_:])((?:sb|turn|janitor)_[a-z0-9_]+)\s*(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})?'
)
NAMESPACE_MATCHER = 'namespace=~"$namespace"'
JANITOR_MATCHER = f'job="{JANITOR_JOB}"'


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row keeps inside it."""
    out: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            out.append(panel)
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL string: the panels' target exprs and the query variables' queries."""
    exprs = [t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            if isinstance(query, str) and query:
                exprs.append(query)
    return exprs


def dashboard_metric_names(dashboard: dict[str, Any]) -> set[str]:
    """The sb_/turn_/janitor_ metric names the dashboard's PromQL reads, histogram series
    (_bucket/_sum/_count) folded into their histogram's name."""
    names: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        for name in METRIC_RE.findall(PROMQL_STRING_RE.sub('""', expr)):
            # Stripped whatever the type: no exported counter or gauge ends so, and a wrong
            # strip would name an unexported metric and fail the exported check, not pass it.
            for suffix in HISTOGRAM_SUFFIXES:
                name = name.removesuffix(suffix)
            names.add(name)
    return names


def exported_metric_names() -> set[str]:
    """Metric names the services export, read from their Rust sources."""
    def literals(crate: str, prefix: str) -> set[str]:
        found: set[str] = set()
        for path in sorted((REPO_DIR / crate / "src").rglob("*.rs")):
            found |= set(re.findall(rf'"({prefix}_[a-z0-9_]+)', path.read_text()))
        assert found, f"no {prefix}_* metric names in {crate}/src"
        return found

    # The janitor's names are unprefixed in the source: its registry adds "janitor_".
    source = (REPO_DIR / "janitor" / "src" / "metrics.rs").read_text()
    assert 'Registry::new_custom(Some("janitor".into())' in source, "janitor registry prefix changed"
    assert f'JOB: &str = "{JANITOR_JOB}"' in source, "janitor Pushgateway job changed"
    janitor = re.findall(r'\b(?:Int)?(?:Counter|Gauge|Histogram)(?:Vec)?::new\(\s*"([a-z0-9_]+)"', source)
    janitor += re.findall(r'\b(?:Histogram)?Opts::new\(\s*"([a-z0-9_]+)"', source)
    assert janitor, "no metric names in janitor/src/metrics.rs"
    return literals("signal-server", "sb") | literals("turn-server", "turn") | {f"janitor_{n}" for n in janitor}


def check_dashboard(dashboard: Any) -> None:
    """Shape: uid, title, the datasource and namespace variables, a PromQL target on every
    panel, unique ids, and each selector filtered the way its service's series can be."""
    assert isinstance(dashboard, dict), "the dashboard is not a JSON object"
    errors: list[str] = []
    for key in ("uid", "title"):
        if not isinstance(dashboard.get(key), str) or not dashboard[key]:
            errors.append(f"no {key}")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("no datasource variable of type prometheus")
    if "namespace" not in variables:
        errors.append("no namespace variable")
    panels = dashboard_panels(dashboard)
    if not panels:
        errors.append("no panels")
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        errors.append(f"panel ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    for panel in panels:
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") == "row":
            continue
        exprs = [t.get("expr") for t in panel.get("targets", [])]
        if not exprs or not all(isinstance(e, str) and e.strip() for e in exprs):
            errors.append(f"{where}: every panel needs targets, each with an expr")
            continue
        for expr in exprs:
            strings = [m.span() for m in PROMQL_STRING_RE.finditer(expr)]
            for sel in SELECTOR_RE.finditer(expr):
                if any(a <= sel.start() < b for a, b in strings):
                    continue  # a label value, not a metric
                name, matchers = sel[1], sel[2] or ""
                # Signal and TURN are scraped in the release namespace; the janitor's series come
                # from a Pushgateway and carry its namespace, so they are picked by job.
                want = JANITOR_MATCHER if name.startswith("janitor_") else NAMESPACE_MATCHER
                if want not in matchers:
                    errors.append(f"{where}: {name} is not selected with {want}")
    assert not errors, "\n".join(errors)


def check_dashboard_metrics(dashboard: dict[str, Any], exported: set[str] | None) -> None:
    assert exported, "the exported metric names could not be read from the Rust sources"
    used = dashboard_metric_names(dashboard)
    assert used, "the dashboard reads no sb_/turn_/janitor_ metric"
    unknown = sorted(used - exported)
    assert not unknown, f"metrics no service exports: {unknown}"


def load_dashboard_file() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    check_dashboard(dashboard)
    return dashboard


# Client-side kubectl apply keeps a copy in an annotation limited to 256 KiB (Argo CD, Flux too).
CONFIGMAP_APPLY_LIMIT = 262144


def check_dashboard_configmap(
    docs: list[dict[str, Any]], values: dict[str, Any], notes: str, exported: set[str] | None
) -> None:
    """Rendered iff enabled, where the sidecar looks, with the chart's dashboard in it."""
    given = values.get("metrics", {}).get("grafanaDashboard", {})
    name = f"{RELEASE}-switchboard-dashboard"
    cm = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name), None)
    assert (cm is not None) == bool(given.get("enabled", False)), f"ConfigMap {name} rendered iff enabled: not so"
    if cm is None:
        assert "Grafana dashboard" not in notes, "NOTES.txt mentions a dashboard that is not rendered"
        return
    meta = cm["metadata"]
    errors: list[str] = []
    if meta.get("namespace") != (given.get("namespace") or NAMESPACE):
        errors.append(f"namespace is {meta.get('namespace')!r}")
    # Helm merges maps with the defaults, so grafana_dashboard stays unless set to null.
    labels = {k: v for k, v in {"grafana_dashboard": "1", **given.get("labels", {})}.items() if v is not None}
    for k, v in labels.items():
        if meta.get("labels", {}).get(k) != v:
            errors.append(f"label {k} is {meta.get('labels', {}).get(k)!r}, want {v!r}")
    for k, v in given.get("annotations", {}).items():
        if meta.get("annotations", {}).get(k) != v:
            errors.append(f"annotation {k} is {meta.get('annotations', {}).get(k)!r}, want {v!r}")
    if list(cm.get("data", {})) != [DASHBOARD_KEY]:
        errors.append(f"data keys are {list(cm.get('data', {}))}, want [{DASHBOARD_KEY!r}]")
    if "Grafana dashboard" not in notes:
        errors.append("NOTES.txt does not mention the dashboard")
    assert not errors, "\n".join(errors)
    text = cm["data"][DASHBOARD_KEY]
    size = len(json.dumps(strip_source(cm)).encode())
    assert size < CONFIGMAP_APPLY_LIMIT, f"ConfigMap is {size} bytes, too big for client-side apply"
    dashboard = json.loads(text)
    assert dashboard == json.loads(DASHBOARD_FILE.read_text()), "the ConfigMap does not hold the chart's dashboard"
    check_dashboard(dashboard)
    check_dashboard_metrics(dashboard, exported)


# ---------------------------------------------------------------- rendering


def parse_manifests(rendered: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: a document that is not a mapping"
            doc.setdefault("__source", path)
            docs.append(doc)
    return docs, notes


def strip_source(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__source"}


def kn(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_objects(docs: list[dict[str, Any]]) -> list[str]:
    skipped: list[str] = []
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        key = (doc.get("kind", ""), doc.get("metadata", {}).get("name", ""))
        if key in seen:
            errors.append(f"duplicate object {kn(doc)}")
        seen.add(key)
        obj = strip_source(doc)
        if obj.get("apiVersion", "").startswith(CRD_GROUPS):
            for field in ("apiVersion", "kind", "metadata", "spec"):
                if field not in obj:
                    errors.append(f"{kn(doc)}: no {field}")
            skipped.append(kn(doc))
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            errors.append(f"{kn(doc)} ({doc['__source']}): {exc.message} at {where}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{kn(doc)}: {exc.message}")
    assert not errors, "\n".join(errors)
    return skipped


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every object that runs pods."""
    out = []
    for doc in docs:
        kind = doc.get("kind")
        spec = doc.get("spec", {})
        if kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
            out.append((doc, spec["template"]))
        elif kind == "CronJob":
            out.append((doc, spec["jobTemplate"]["spec"]["template"]))
    return out


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_wiring(docs: list[dict[str, Any]], values: dict[str, Any]) -> None:
    errors: list[str] = []
    pods = pod_templates(docs)
    assert pods, "no workloads rendered"
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    # Objects the values say live outside the release.
    external_secrets = {
        s
        for s in (
            values.get("turnSecrets", {}).get("existingSecret"),
            values.get("redis", {}).get("existingSecret"),
            values.get("signal", {}).get("compat", {}).get("existingSecret"),
        )
        if s
    }
    external_secrets |= {s["name"] for s in values.get("imagePullSecrets", [])}

    # Workload selectors select their own pods.
    for wl, tpl in pods:
        if wl["kind"] == "CronJob":
            continue
        sel = wl["spec"]["selector"].get("matchLabels", {})
        if not labels_match(sel, tpl["metadata"].get("labels", {})):
            errors.append(f"{kn(wl)}: selector {sel} does not match its pod labels")

    # No two workloads' selectors pick the same pods.
    sels = [(kn(wl), wl["spec"]["selector"]["matchLabels"]) for wl, _ in pods if wl["kind"] != "CronJob"]
    for i, (a, sa) in enumerate(sels):
        for b, sb in sels[i + 1 :]:
            if sa == sb:
                errors.append(f"{a} and {b} share the selector {sa}")

    def containers(tpl: dict[str, Any]) -> list[dict[str, Any]]:
        spec = tpl["spec"]
        return spec.get("initContainers", []) + spec["containers"]

    def secret_has(name: str, key: str | None) -> bool:
        if name in external_secrets:
            return True
        sec = by_kind.get("Secret", {}).get(name)
        if sec is None:
            return False
        return key is None or key in sec.get("data", {}) or key in sec.get("stringData", {})

    def cm_has(name: str, key: str | None) -> bool:
        cm = by_kind.get("ConfigMap", {}).get(name)
        if cm is None:
            return False
        return key is None or key in cm.get("data", {})

    for wl, tpl in pods:
        spec = tpl["spec"]
        where = kn(wl)
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                for item in vol["secret"].get("items", [None]):
                    key = item["key"] if item else None
                    if not secret_has(vol["secret"]["secretName"], key):
                        errors.append(f"{where}: volume {vol['name']} needs Secret {vol['secret']['secretName']} key {key}")
            if "configMap" in vol:
                for item in vol["configMap"].get("items", [None]):
                    key = item["key"] if item else None
                    if not cm_has(vol["configMap"]["name"], key):
                        errors.append(f"{where}: volume {vol['name']} needs ConfigMap {vol['configMap']['name']}")
        mounts_ok = {v["name"] for v in spec.get("volumes", [])}
        for c in containers(tpl):
            cwhere = f"{where} container {c['name']}"
            for m in c.get("volumeMounts", []):
                if m["name"] not in mounts_ok:
                    errors.append(f"{cwhere}: mounts unknown volume {m['name']}")
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef and not cm_has(ef["configMapRef"]["name"], None):
                    errors.append(f"{cwhere}: envFrom ConfigMap {ef['configMapRef']['name']} not rendered")
                if "secretRef" in ef and not secret_has(ef["secretRef"]["name"], None):
                    errors.append(f"{cwhere}: envFrom Secret {ef['secretRef']['name']} not rendered")
            for env in c.get("env", []):
                vf = env.get("valueFrom", {})
                if "secretKeyRef" in vf and not secret_has(vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]):
                    errors.append(f"{cwhere}: env {env['name']} needs Secret {vf['secretKeyRef']}")
                if "configMapKeyRef" in vf and not cm_has(vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"]):
                    errors.append(f"{cwhere}: env {env['name']} needs ConfigMap {vf['configMapKeyRef']}")
            # Probe ports exist on the container.
            names = {p.get("name") for p in c.get("ports", [])}
            numbers = {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                pr = c.get(probe)
                if not pr:
                    continue
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler in pr:
                        port = pr[handler]["port"]
                        if port not in names and port not in numbers:
                            errors.append(f"{cwhere}: {probe} port {port!r} is not a container port")
        if wl["kind"] in ("Deployment", "DaemonSet") and wl["metadata"]["labels"].get("app.kubernetes.io/component") in (
            "signal",
            "turn",
        ):
            for c in spec["containers"]:
                if "readinessProbe" not in c or "livenessProbe" not in c:
                    errors.append(f"{where} container {c['name']}: readiness and liveness probes are required")

    # Services select some pod and their target ports exist on it.
    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        matched = [tpl for _, tpl in pods if labels_match(sel, tpl["metadata"].get("labels", {}))]
        if not matched:
            errors.append(f"{kn(svc)}: selector {sel} matches no pod template")
            continue
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            proto = port.get("protocol", "TCP")
            ok = False
            for tpl in matched:
                for c in tpl["spec"]["containers"]:
                    for cp in c.get("ports", []):
                        if cp.get("protocol", "TCP") != proto:
                            continue
                        if target == cp.get("name") or target == cp["containerPort"]:
                            ok = True
            if not ok:
                errors.append(f"{kn(svc)}: port {port.get('name')} targets {target!r}/{proto}, no such container port")

    # Ingress backends name a rendered Service port.
    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                be = path["backend"]["service"]
                svc = by_kind.get("Service", {}).get(be["name"])
                if svc is None:
                    errors.append(f"{kn(ing)}: backend Service {be['name']} not rendered")
                    continue
                want = be["port"].get("name", be["port"].get("number"))
                if want not in [p.get("name") for p in svc["spec"]["ports"]] + [p["port"] for p in svc["spec"]["ports"]]:
                    errors.append(f"{kn(ing)}: Service {be['name']} has no port {want!r}")

    # HPA targets a rendered workload; PDB and NetworkPolicy selectors match pods.
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["name"] not in by_kind.get(ref["kind"], {}):
            errors.append(f"{kn(hpa)}: target {ref['kind']}/{ref['name']} not rendered")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind.get(kind, {}).values():
            sel = (obj["spec"].get("selector") or obj["spec"].get("podSelector", {})).get("matchLabels", {})
            if not any(labels_match(sel, tpl["metadata"].get("labels", {})) for _, tpl in pods):
                errors.append(f"{kn(obj)}: selector {sel} matches no pod template")
    for sm in by_kind.get("ServiceMonitor", {}).values():
        sel = sm["spec"]["selector"]["matchLabels"]
        svcs = [s for s in by_kind.get("Service", {}).values() if labels_match(sel, s["metadata"].get("labels", {}))]
        if not svcs:
            errors.append(f"{kn(sm)}: selector matches no Service")
        for ep in sm["spec"]["endpoints"]:
            if not any(ep["port"] in [p.get("name") for p in s["spec"]["ports"]] for s in svcs):
                errors.append(f"{kn(sm)}: no selected Service has port {ep['port']}")

    assert not errors, "\n".join(errors)


STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def check_labels_and_security(docs: list[dict[str, Any]]) -> None:
    errors: list[str] = []
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        for lab in STANDARD_LABELS:
            if lab not in labels:
                errors.append(f"{kn(doc)}: no label {lab}")
    for wl, tpl in pod_templates(docs):
        spec = tpl["spec"]
        psc = spec.get("securityContext", {})
        for k, want in (("runAsNonRoot", True), ("runAsUser", 65532), ("runAsGroup", 65532)):
            if psc.get(k) != want:
                errors.append(f"{kn(wl)}: pod securityContext.{k} is {psc.get(k)!r}, want {want!r}")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{kn(wl)}: pod seccompProfile is not RuntimeDefault")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{kn(wl)} container {c['name']}"
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                errors.append(f"{where}: capabilities do not drop ALL")
            if sc.get("runAsNonRoot") is not True:
                errors.append(f"{where}: runAsNonRoot is not true")
            if not c.get("resources", {}).get("requests"):
                errors.append(f"{where}: no resource requests")
    assert not errors, "\n".join(errors)


def check_mode_specifics(case: str, docs: list[dict[str, Any]], values: dict[str, Any], notes: str) -> None:
    """Facts each ci file is there to show."""
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    fn = f"{RELEASE}-switchboard"
    errors: list[str] = []
    assert "Signaling URL:" in notes, "NOTES.txt does not print the signaling URL"
    turn = {**{"enabled": True, "mode": "hostNetwork"}, **values.get("turn", {})}
    ds = next((d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == f"{fn}-turn"), None)
    dep = next((d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{fn}-turn"), None)
    if not turn["enabled"]:
        if ds or dep:
            errors.append("turn disabled but a turn workload was rendered")
    elif turn["mode"] == "hostNetwork":
        if ds is None:
            errors.append("hostNetwork mode renders no TURN DaemonSet")
        else:
            spec = ds["spec"]["template"]["spec"]
            if spec.get("hostNetwork") is not True or spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
                errors.append("TURN DaemonSet: hostNetwork/dnsPolicy wrong")
            env = {e["name"]: e for e in spec["containers"][0].get("env", [])}
            if not turn.get("externalIP") and env.get("TURN_EXTERNAL_IP", {}).get("valueFrom", {}).get(
                "fieldRef", {}
            ).get("fieldPath") != "status.hostIP":
                errors.append("TURN DaemonSet: TURN_EXTERNAL_IP does not come from status.hostIP")
    else:
        if dep is None:
            errors.append("loadBalancer mode renders no TURN Deployment")
        lb = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == f"{fn}-turn"), None)
        if lb is None or lb["spec"]["type"] != "LoadBalancer":
            errors.append("loadBalancer mode renders no Service of type LoadBalancer")
        else:
            rp = turn.get("loadBalancer", {}).get("relayPorts", {"min": 50000, "max": 50019})
            want = set(range(rp["min"], rp["max"] + 1))
            got = {p["port"] for p in lb["spec"]["ports"] if p["protocol"] == "UDP"}
            if not want <= got:
                errors.append(f"LoadBalancer Service misses relay ports {sorted(want - got)[:5]}")
            if turn.get("externalIP") and turn["externalIP"] not in notes:
                errors.append("NOTES.txt does not print the TURN address")
    for wl in docs:
        if wl["kind"] in ("Deployment", "DaemonSet") and wl["metadata"]["name"] == f"{fn}-turn":
            spec = wl["spec"]["template"]["spec"]
            cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{fn}-turn")
            drain = int(cm["data"]["TURN_DRAIN_TIMEOUT"].rstrip("s"))
            if spec["terminationGracePeriodSeconds"] <= drain:
                errors.append("TURN terminationGracePeriodSeconds does not exceed TURN_DRAIN_TIMEOUT")
            c = spec["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                port = c[probe]["httpGet"]["port"]
                num = next(p["containerPort"] for p in c["ports"] if p.get("name") == port or p["containerPort"] == port)
                if num != 9641:
                    errors.append(f"TURN {probe} is not on 9641")
    sig = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{fn}-signal")
    ann = sig["spec"]["template"]["metadata"].get("annotations", {})
    for a in ("checksum/config", "checksum/secret"):
        if a not in ann:
            errors.append(f"signal Deployment has no {a} annotation")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{fn}-signal")
    for k, v in (("SB_LISTEN", "0.0.0.0:8080"), ("SB_REDIS_URL_FILE", None), ("SB_TURN_SECRETS_FILE", None)):
        if k not in cm["data"] or (v and cm["data"][k] != v):
            errors.append(f"signal ConfigMap: {k} missing or wrong")
    for d in docs:
        if d["kind"] == "Ingress":
            a = d["metadata"]["annotations"]
            for k, v in (
                ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
                ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
                ("nginx.ingress.kubernetes.io/proxy-buffering", "off"),
            ):
                if a.get(k) != v:
                    errors.append(f"Ingress annotation {k} is {a.get(k)!r}")
        if d["kind"] == "CronJob":
            s = d["spec"]
            if s.get("concurrencyPolicy") != "Forbid":
                errors.append("janitor CronJob concurrencyPolicy is not Forbid")
            for k in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
                if k not in s:
                    errors.append(f"janitor CronJob has no {k}")
            for k in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
                if k not in s["jobTemplate"]["spec"]:
                    errors.append(f"janitor Job has no {k}")
    redis_internal = values.get("redis", {}).get("internal", {}).get("enabled", True)
    if redis_internal != (("Deployment", f"{fn}-redis") in kinds):
        errors.append("internal Redis Deployment rendered iff redis.internal.enabled: not so")
    assert not errors, "\n".join(errors)


# ---------------------------------------------------------------- main


def run_case(chart: helm.Chart, path: Path, exported: set[str] | None) -> None:
    case = path.name
    values = load_values(path)

    def lint() -> None:
        report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        assert not bad and not report.get("errors"), f"lint: {bad} {report.get('errors')}"

    check(f"{case}: lint (strict)", lint)
    check(f"{case}: values schema", lambda: chart.validate_schema(values))
    rendered = check(
        f"{case}: render",
        lambda: chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True),
    )
    if rendered is None:
        return
    parsed = check(f"{case}: manifests parse as YAML", lambda: parse_manifests(rendered))
    if parsed is None:
        return
    docs, notes = parsed
    skipped = check(f"{case}: strict Kubernetes {KUBE_VERSION} schema ({len(docs)} objects)", lambda: validate_objects(docs))
    if skipped:
        print(f"     (CRDs not strictly validated: {', '.join(skipped)})")
    check(f"{case}: wiring", lambda: check_wiring(docs, values))
    check(f"{case}: labels and pod security", lambda: check_labels_and_security(docs))
    check(f"{case}: mode specifics", lambda: check_mode_specifics(case, docs, values, notes))
    check(f"{case}: grafana dashboard", lambda: check_dashboard_configmap(docs, values, notes, exported))


def expect_schema_rejects(chart: helm.Chart, path: Path) -> None:
    """The schema refuses the file, for the reason its '# expect: TEXT' line names."""
    text = path.read_text()
    expected = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# expect:")]
    assert expected, f"{path.name} has no '# expect: TEXT' line naming the error"
    values = yaml.safe_load(text) or {}
    try:
        chart.validate_schema(values)
    except helm.HelmValuesError as exc:
        for want in expected:
            assert want in str(exc), f"rejected, but not for {want!r}: {exc}"
        return
    raise AssertionError("schema accepted it")


def expect_render_fails(chart: helm.Chart, path: Path) -> None:
    values = load_values(path)
    chart.validate_schema(values)  # these are schema-valid on purpose
    try:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmRenderError:
        return
    raise AssertionError("rendered without error")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", help="only ci files whose name contains this")
    args = ap.parse_args()
    started = time.monotonic()
    print(f"helm-c {helm.helm_c_version()} (Helm SDK {helm.helm_sdk_version()}), kubernetes-validate "
          f"{kubernetes_validate.version.__version__}, Kubernetes schema {KUBE_VERSION} strict")
    check("yamllint Chart.yaml, values.yaml, ci/**", yamllint_files)
    exported = check("exported metric names from the Rust sources", exported_metric_names)
    dashboard = check("dashboards/switchboard.json: JSON, uid, title, a target on every panel", load_dashboard_file)
    if dashboard is not None:
        check("dashboards/switchboard.json: only exported metrics", lambda: check_dashboard_metrics(dashboard, exported))
    with helm.Chart.load(CHART_DIR) as chart:
        check("Chart.yaml apiVersion v2", lambda: _assert(chart.metadata.get("apiVersion") == "v2", chart.metadata))
        check("values.schema.json describes every value", lambda: schema_covers_values(chart))
        check("default values pass the schema", lambda: chart.validate_schema({}))
        cases = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
        if args.k:
            cases = [c for c in cases if args.k in c.name]
        assert cases, "no ci/*-values.yaml"
        for path in cases:
            run_case(chart, path, exported)
        for path in sorted((CHART_DIR / "ci" / "bad").glob("*.yaml")):
            check(f"bad/{path.name}: schema rejects it", lambda p=path: expect_schema_rejects(chart, p))
        for path in sorted((CHART_DIR / "ci" / "render-fail").glob("*.yaml")):
            check(f"render-fail/{path.name}: render fails", lambda p=path: expect_render_fails(chart, p))
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"\nchart test took {time.monotonic() - started:.1f}s")
    if failed:
        print("failed:")
        for name, ok, _ in RESULTS:
            if not ok:
                print(f"  {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _assert(cond: bool, detail: Any) -> None:
    assert cond, detail


if __name__ == "__main__":
    sys.exit(main())
