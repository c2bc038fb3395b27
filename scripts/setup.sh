#!/usr/bin/env bash
# Installs everything the project and its tests need on a fresh Debian machine. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(dataset-fashion-mnist chromium chromium-driver)
missing=()
for d in "${debs[@]}"; do
    dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
# torch first and pinned, so that no other requirement can pull a different build.
$PYTHON -m pip install -q torch==2.14.1 torchvision==0.29.1
$PYTHON -m pip install -q -e '.[test]'
