#!/usr/bin/env bash
# Installs everything the project and its tests need on a fresh Debian machine: the Debian packages, then
# exactly requirements.lock and this package (editable) into a virtualenv, the active one if the caller is
# inside one, else the project's own .venv. Safe to rerun, and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(dataset-fashion-mnist chromium chromium-driver)
missing=()
for d in "${debs[@]}"; do
    dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d")
done
# npm installs the browser tests' accessibility checker (package-lock.json); only fetched when missing
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

venv=${VIRTUAL_ENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the virtualenv $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"

pip_install() {
    # Some machines' pip configuration lists local package folders that lack most packages; pip warns
    # about each one it skips, and those lines would bury the real messages.
    "$py" -m pip install -q "$@" 2> >(grep -v "is neither a file nor a directory" >&2)
}

# The lock pins every package with its hash (torch==2.14.1 and torchvision==0.29.1 among them), so no
# requirement can pull a different build. The stamp skips the check entirely when the lock is unchanged.
stamp="$venv/.pss-lock.sha256"
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing requirements.lock into $venv"
    pip_install --require-hashes --no-deps -r requirements.lock
    pip_install --no-deps --no-build-isolation -e .
    if [ "$venv" = .venv ]; then
        # The project's own virtualenv holds the lock and nothing else (a virtualenv the caller chose is
        # left alone apart from the installs above).
        extras=$("$py" scripts/env_check.py --extras)
        [ -z "$extras" ] || "$py" -m pip uninstall -q -y $extras
    fi
    "$py" -m pip check
    echo "$want" >"$stamp"
fi

# axe-core, which the browser tests run inside Chromium, exactly as package-lock.json pins it; the stamp
# skips `npm ci` while the lock is unchanged.
npm_stamp=node_modules/.pss-lock.sha256
npm_want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]; then
    echo "Installing package-lock.json into node_modules"
    npm ci --silent --no-audit --no-fund
    echo "$npm_want" >"$npm_stamp"
fi
