#!/usr/bin/env bash
# Offline test of helm/switchboard: no helm binary, no cluster, no network but PyPI for the
# first install. Usage: helm/test/run.sh [-k NAME]   (extra arguments go to chart_test.py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SB_VENV_HELM:-$HOME/.cache/switchboard/helm-venv}"
# Bump when requirements change: a venv made for another stamp is rebuilt.
stamp="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0"

if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$venv/.switchboard-stamp" 2>/dev/null)" != "$stamp" ]]; then
    echo "== creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $stamp
    echo "$stamp" >"$venv/.switchboard-stamp"
fi

exec "$venv/bin/python" "$here/chart_test.py" "$@"
