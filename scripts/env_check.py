"""Compares the running Python environment with requirements.lock.

`--extras` prints the installed distributions that the lock does not name (for setup.sh to remove);
without flags it lists every difference and exits 1 if there is one.
"""

import importlib.metadata
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
# Installed by the virtualenv itself or by setup.sh beside the lock.
BOOTSTRAP = {"pip", "pss-dashboard"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(lock: Path | None = None) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line in the lock."""
    pins = {}
    for line in (lock or LOCK).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def differences() -> list[str]:
    pins, have = locked_pins(), installed()
    problems = [f"{name}: locked {version}, installed {have.get(name, 'nothing')}"
                for name, version in sorted(pins.items()) if have.get(name) != version]
    problems += [f"{name}: installed {version}, not in the lock"
                 for name, version in sorted(have.items()) if name not in pins and name not in BOOTSTRAP]
    return problems


def main() -> int:
    if sys.argv[1:] == ["--extras"]:
        pins = locked_pins()
        print(" ".join(sorted(n for n in installed() if n not in pins and n not in BOOTSTRAP)))
        return 0
    problems = differences()
    print("\n".join(problems) or "The environment is exactly requirements.lock.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
