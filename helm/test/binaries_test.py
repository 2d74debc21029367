#!/usr/bin/env python3
"""Runs the real binaries exactly as the deployment files start them.

For every helm/switchboard/ci/*-values.yaml the chart is rendered, and each signal-server,
turn-server and janitor container is started from its rendered command, args, env, envFrom
and mounted Secrets/ConfigMaps. The same is done for the services of docker/compose.yaml,
with the ENV, ENTRYPOINT and CMD of their docker/Dockerfile stage. Only what exists in a
cluster alone is rewritten: listen addresses become free loopback ports, every Redis URL
becomes a redis-server this test starts, node IPs become 127.0.0.1, and mounted files land
in a temp dir. A binary that rejected a flag or env name would exit 64 and fail here.

Each server must then become ready, answer its own `healthcheck` subcommand (run with the
same env, as a container HEALTHCHECK would), serve one real request, and exit 0 on SIGTERM.
A janitor CronJob container must sweep and exit 0.

Needs SB_BIN_DIR (the directory holding signal-server, turn-server and janitor) and
redis-server on PATH. Prints one line per check; exits 1 on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from chart_test import CHART_DIR, NAMESPACE, RELEASE, RESULTS, check, load_values, parse_manifests, pod_templates
from docker_test import COMPOSE, dockerfile_stages

ROOT = CHART_DIR.parent.parent
BINARIES = ("signal-server", "turn-server", "janitor")
# Where each server's HTTP listener (probes, metrics) is configured.
HTTP_ENV = {"signal-server": "SB_LISTEN", "turn-server": "TURN_HTTP_LISTEN", "janitor": "JANITOR_METRICS_LISTEN"}
ENV_PREFIX = {"signal-server": "SB_", "turn-server": "TURN_", "janitor": "JANITOR_"}
READY_WITHIN = 30.0
EXIT_WITHIN = 45.0


@dataclass
class Launch:
    """One process as a deployment file starts it."""

    label: str
    argv: list[str]
    env: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def binary(self) -> str:
        return Path(self.argv[0]).name


# ---------------------------------------------------------------- rewriting for loopback


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (TURN listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


LISTEN = re.compile(r"^(0\.0\.0\.0|\[::\]|127\.0\.0\.1|localhost):(\d+)$")


class Rewriter:
    """Turns cluster-only values into local ones, consistently within one process."""

    def __init__(self, redis_url: str, root: Path) -> None:
        self.redis_url = redis_url
        self.root = root
        self.ports: dict[str, int] = {}
        self.mounts: list[str] = []

    def value(self, text: str) -> str:
        if text.startswith(("redis://", "rediss://")):
            return self.redis_url
        items = text.split(",")
        out = []
        for item in items:
            m = LISTEN.match(item.strip())
            if m:
                port = self.ports.setdefault(m.group(2), free_port())
                item = f"127.0.0.1:{port}"
            out.append(item)
        text = ",".join(out)
        for mount in self.mounts:
            if text == mount or text.startswith(mount.rstrip("/") + "/"):
                return str(self.root) + text
        return text

    def file(self, content: bytes) -> bytes:
        text = content.decode(errors="replace").strip()
        if text.startswith(("redis://", "rediss://")):
            return (self.redis_url + "\n").encode()
        return content


# ---------------------------------------------------------------- from the rendered chart


def k8s_data(obj: dict[str, Any]) -> dict[str, bytes]:
    raw = obj.get("data") or {}
    if obj.get("kind") == "ConfigMap":
        data = {k: str(v).encode() for k, v in raw.items()}
    else:
        data = {k: base64.b64decode(v) for k, v in raw.items()}
    data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return data


class Objects:
    """The rendered Secrets and ConfigMaps, with stand-ins for existingSecret references."""

    def __init__(self, docs: list[dict[str, Any]], values: dict[str, Any], redis_url: str) -> None:
        self.by_name = {(d["kind"], d["metadata"]["name"]): k8s_data(d) for d in docs if d.get("kind") in ("Secret", "ConfigMap")}
        # Secrets the operator creates before installing: what they would hold.
        redis = values.get("redis", {})
        turn = values.get("turnSecrets", {})
        if redis.get("existingSecret"):
            key = redis.get("existingSecretKey", "url")
            self.by_name[("Secret", redis["existingSecret"])] = {key: redis_url.encode()}
        if turn.get("existingSecret"):
            key = turn.get("existingSecretKey", "secrets")
            self.by_name[("Secret", turn["existingSecret"])] = {key: secrets.token_hex(32).encode()}
        compat = values.get("signal", {}).get("compat", {})
        if compat.get("existingSecret"):
            keys = (compat.get("firebaseAdminSecretKey", "firebase-admin-secret"), compat.get("twilioAuthTokenKey", "twilio-auth-token"))
            self.by_name[("Secret", compat["existingSecret"])] = {k: secrets.token_hex(16).encode() for k in keys}

    def get(self, kind: str, name: str) -> dict[str, bytes]:
        assert (kind, name) in self.by_name, f"{kind} {name} is referenced but neither rendered nor an existingSecret"
        return self.by_name[(kind, name)]


def from_container(label: str, pod: dict[str, Any], ctr: dict[str, Any], objects: Objects, rw: Rewriter) -> Launch:
    assert ctr.get("command"), f"{label}: the chart must name the binary in command"
    argv = [*ctr["command"], *ctr.get("args", [])]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: dict[str, bytes] = {}
    for mount in ctr.get("volumeMounts", []):
        vol = volumes[mount["name"]]
        rw.mounts.append(mount["mountPath"])
        source = vol.get("secret") and ("Secret", vol["secret"]["secretName"], vol["secret"].get("items"))
        source = source or (vol.get("configMap") and ("ConfigMap", vol["configMap"]["name"], vol["configMap"].get("items")))
        if not source:
            continue  # emptyDir and the like: a directory is made below
        kind, name, items = source
        data = objects.get(kind, name)
        for item in items or [{"key": k, "path": k} for k in data]:
            assert item["key"] in data, f"{label}: {kind} {name} has no key {item['key']}"
            files[f"{mount['mountPath']}/{item['path']}"] = rw.file(data[item["key"]])
    env: dict[str, str] = {}
    for src in ctr.get("envFrom", []):
        if "configMapRef" in src:
            data = objects.get("ConfigMap", src["configMapRef"]["name"])
        else:
            data = objects.get("Secret", src["secretRef"]["name"])
        env.update({k: rw.file(v).decode() for k, v in data.items()})
    for var in ctr.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] in ("status.hostIP", "status.podIP"), ref
            env[var["name"]] = "127.0.0.1"
        elif "secretKeyRef" in ref:
            s = ref["secretKeyRef"]
            data = objects.get("Secret", s["name"])
            if s["key"] not in data and s.get("optional"):
                continue
            assert s["key"] in data, f"{label}: Secret {s['name']} has no key {s['key']}"
            env[var["name"]] = rw.file(data[s["key"]]).decode().strip()
        elif "configMapKeyRef" in ref:
            c = ref["configMapKeyRef"]
            env[var["name"]] = objects.get("ConfigMap", c["name"])[c["key"]].decode()
        else:
            raise AssertionError(f"{label}: unsupported valueFrom {ref}")
    return Launch(label, argv, env, files)


def chart_launches(chart: helm.Chart, path: Path, redis_url: str, tmp: Path) -> list[tuple[Launch, Rewriter]]:
    values = load_values(path)
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs, _ = parse_manifests(rendered)
    objects = Objects(docs, values, redis_url)
    out = []
    for workload, pod in pod_templates(docs):
        for ctr in pod["spec"].get("containers", []):
            if not ctr.get("command") or Path(ctr["command"][0]).name not in BINARIES:
                continue  # the optional in-cluster Redis
            label = f"{path.name}: {workload['kind']} {ctr['name']}"
            rw = Rewriter(redis_url, tmp / f"{len(out)}")
            out.append((from_container(label, pod["spec"], ctr, objects, rw), rw))
    return out


# ---------------------------------------------------------------- from Dockerfile + compose


def interpolate(text: str) -> str:
    """Compose's `${VAR:-default}` with an empty environment."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def compose_launches(redis_url: str, tmp: Path) -> list[tuple[Launch, Rewriter]]:
    compose = yaml.safe_load(COMPOSE.read_text())
    stages = dockerfile_stages()
    out = []
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue  # redis
        target = svc["build"]["target"]
        assert target in stages, f"compose {name}: no Dockerfile stage {target}"
        stage = stages[target]
        rw = Rewriter(redis_url, tmp / f"compose-{name}")
        files: dict[str, bytes] = {}
        for secret in svc.get("secrets", []):
            path = f"/run/secrets/{secret}"
            rw.mounts.append(path)
            files[path] = secrets.token_hex(32).encode()
        env = {**stage["env"], **{k: interpolate(str(v)) for k, v in (svc.get("environment") or {}).items()}}
        argv = [*stage["entrypoint"], *(svc.get("command") or stage["cmd"] or [])]
        out.append((Launch(f"compose {name}", argv, env, files), rw))
    return out


# ---------------------------------------------------------------- running


def materialize(launch: Launch, rw: Rewriter, bin_dir: Path) -> tuple[list[str], dict[str, str]]:
    rw.root.mkdir(parents=True, exist_ok=True)
    for mount in rw.mounts:
        if mount not in launch.files:  # a file mount (compose secret) is written below
            (rw.root / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, content in launch.files.items():
        dest = rw.root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    binary = bin_dir / launch.binary
    assert launch.binary in BINARIES, f"{launch.label}: unknown binary {launch.argv[0]}"
    argv = [str(binary), *(rw.value(a) for a in launch.argv[1:])]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({k: rw.value(v) for k, v in launch.env.items()})
    return argv, env


def http(method: str, url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(proc: subprocess.Popen[bytes], base: str, label: str) -> None:
    """Polls /readyz (a real readiness signal, not a sleep) until 200 or the process dies."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{label}: exited {proc.returncode} before becoming ready")
        try:
            if http("GET", f"{base}/readyz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{label}: not ready within {READY_WITHIN}s")


def stun_binding(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    txid = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3.0)
        sock.sendto(request, (host, int(port)))
        reply, _ = sock.recvfrom(2048)
    kind, _, cookie = struct.unpack("!HHI", reply[:8])
    assert kind == 0x0101 and cookie == 0x2112A442 and reply[8:20] == txid, f"not a Binding success: {reply[:20].hex()}"


def exercise(binary: str, base: str, env: dict[str, str]) -> None:
    if binary == "signal-server":
        status, body = http("POST", f"{base}/v1/rooms")
        assert status == 201, f"POST /v1/rooms: {status} {body[:200]!r}"
        status, body = http("GET", f"{base}/v1/turn-credentials")
        if env.get("SB_TURN_URLS"):
            # The mounted shared secret is read: credentials are minted for the TURN URLs.
            assert status == 200, f"GET /v1/turn-credentials: {status} {body[:200]!r}"
            servers = json.loads(body)["iceServers"]
            assert any(s.get("username") and s.get("credential") for s in servers), servers
        else:
            # No public TURN host in these values: NOTES.txt warns, and clients are told so.
            assert status == 404 and b"turn_not_configured" in body, f"{status} {body[:200]!r}"
        compat_endpoints_answer(base, env)
    elif binary == "turn-server":
        stun_binding(env["TURN_LISTEN_UDP"].split(",")[0])
    status, body = http("GET", f"{base}/metrics")
    assert status == 200 and b"# TYPE" in body, f"GET /metrics: {status}"


def compat_endpoints_answer(base: str, env: dict[str, str]) -> None:
    """The compat secrets the chart passes are the ones the endpoints check."""
    if "SB_FIREBASE_ADMIN_SECRET" in env:
        admin = env["SB_FIREBASE_ADMIN_SECRET"]
        status, body = http("GET", f"{base}/firebase/rooms.json?auth={admin}")
        assert status == 200, f"Firebase admin listing: {status} {body[:200]!r}"
        assert http("GET", f"{base}/firebase/rooms.json?auth=wrong")[0] == 401
    if "SB_TWILIO_AUTH_TOKEN" in env:
        sid = env["SB_TWILIO_ACCOUNT_SID"]
        auth = base64.b64encode(f"{sid}:{env['SB_TWILIO_AUTH_TOKEN']}".encode()).decode()
        req = urllib.request.Request(f"{base}/2010-04-01/Accounts/{sid}/Tokens.json", method="POST", data=b"", headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(req, timeout=3) as resp:
            assert resp.status == 201, resp.status
            assert json.loads(resp.read()).get("ice_servers"), "no ice_servers in the Twilio token"


def healthcheck(argv0: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([argv0, "healthcheck", *extra], env=env, capture_output=True, text=True, timeout=15)


def run_server(argv: list[str], env: dict[str, str], binary: str, label: str) -> None:
    base = f"http://{env[HTTP_ENV[binary]]}"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, base, label)
        for extra in ((), ("--ready",)):
            hc = healthcheck(argv[0], env, *extra)
            assert hc.returncode == 0, f"healthcheck {' '.join(extra)}: exit {hc.returncode}: {hc.stderr.strip()}"
        exercise(binary, base, env)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=EXIT_WITHIN)
        assert code == 0, f"exit {code} after SIGTERM"
    except BaseException as exc:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
        raise AssertionError(f"{exc}\n--- {label} output ---\n{out[-3000:]}") from exc


def run_once(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}"


def env_names_accepted(argv: list[str], env: dict[str, str]) -> None:
    """clap ignores environment variables it does not know: a misspelt name in a manifest would
    silently fall back to a default, so every name with the binary's prefix must be one `--help`
    lists. (The image sets the other binaries' listen addresses too: one image runs all three.)"""
    prefix = ENV_PREFIX[Path(argv[0]).name]
    subcommand = [a for a in argv[1:2] if not a.startswith("-")]
    shown = subprocess.run([argv[0], *subcommand, "--help"], capture_output=True, text=True, timeout=15, env={"PATH": env["PATH"]})
    assert shown.returncode == 0, shown.stderr
    unknown = sorted(n for n in env if n.startswith(prefix) and f"[env: {n}" not in shown.stdout)
    assert not unknown, f"{Path(argv[0]).name} {' '.join(subcommand)} does not read {unknown}"


def run_launch(launch: Launch, rw: Rewriter, bin_dir: Path) -> None:
    argv, env = materialize(launch, rw, bin_dir)
    env_names_accepted(argv, env)
    if launch.binary == "janitor" and "schedule" not in argv:
        run_once(argv, env)
    else:
        run_server(argv, env, launch.binary, launch.label)


def unhealthy_when_nothing_listens(bin_dir: Path) -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    env = {"PATH": os.environ.get("PATH", ""), "SB_LISTEN": f"127.0.0.1:{port}", "TURN_HTTP_LISTEN": f"127.0.0.1:{port}", "JANITOR_METRICS_LISTEN": f"127.0.0.1:{port}"}
    for binary in BINARIES:
        hc = healthcheck(str(bin_dir / binary), env, "--timeout", "1s")
        assert hc.returncode == 1 and "unhealthy" in hc.stderr, f"{binary}: exit {hc.returncode}: {hc.stderr}"


# ---------------------------------------------------------------- main


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def main() -> int:
    bin_dir = Path(os.environ.get("SB_BIN_DIR", ROOT / "target" / "debug"))
    missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
    if missing or not shutil.which("redis-server"):
        print(f"binaries_test: need {missing or ''} in SB_BIN_DIR={bin_dir} and redis-server on PATH")
        return 1
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sb-binaries-"))
    redis, redis_url = start_redis(tmp)
    try:
        check("healthcheck exits 1 when nothing listens", lambda: unhealthy_when_nothing_listens(bin_dir))
        with helm.Chart.load(CHART_DIR) as chart:
            for path in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
                launches = check(f"{path.name}: rendered containers", lambda p=path: chart_launches(chart, p, redis_url, tmp / p.stem))
                for launch, rw in launches or []:
                    check(f"{launch.label}: runs as rendered", lambda l=launch, r=rw: run_launch(l, r, bin_dir))
        launches = check("docker/compose.yaml: services with their Dockerfile stages", lambda: compose_launches(redis_url, tmp / "compose"))
        for launch, rw in launches or []:
            check(f"{launch.label}: runs as composed", lambda l=launch, r=rw: run_launch(l, r, bin_dir))
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed ({time.monotonic() - started:.1f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
