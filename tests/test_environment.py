"""The tested environment is exactly requirements.lock: every dependency pyproject.toml names is pinned there
(at a version its range accepts), and the interpreter running the tests has exactly those pins installed."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("env_check", REPO / "scripts" / "env_check.py")
env_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(env_check)


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in project["dependencies"] + [r for group in extras.values() for r in group]]


def test_every_declared_dependency_is_pinned_in_the_lock_within_its_range():
    pins = env_check.locked_pins()
    for requirement in declared_requirements():
        name = env_check.canonical(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (str(requirement), pins[name])


def test_the_lock_pins_torch_and_torchvision_as_pyproject_does():
    pins = env_check.locked_pins()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")


def test_the_lock_has_a_hash_for_every_pin():
    lines = (REPO / "requirements.lock").read_text().splitlines()
    pinned = [i for i, line in enumerate(lines) if "==" in line and not line.startswith((" ", "#"))]
    assert len(pinned) == len(env_check.locked_pins()) > 50
    assert all(lines[i + 1].lstrip().startswith("--hash=sha256:") for i in pinned)


def test_the_running_environment_is_the_lock():
    """Inside the project's own .venv (what `make test` and CI use) nothing beyond the lock may be installed;
    in a virtualenv the caller chose, at least every pin must hold."""
    problems = env_check.differences()
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        problems = [p for p in problems if not p.endswith("not in the lock")]
    assert not problems, "\n".join(problems) + "\nrerun `make test` (it syncs the environment to the lock)"


def test_env_check_reports_a_drifted_pin_and_an_extra_package(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.lock"
    lock.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\n    # via pss-dashboard (pyproject.toml)\n")
    monkeypatch.setattr(env_check, "LOCK", lock)
    problems = env_check.differences()
    assert any(p.startswith("pytest: locked 0.0.1, installed ") for p in problems)
    assert any(p.startswith("numpy: installed ") and p.endswith("not in the lock") for p in problems)


@pytest.mark.parametrize("line, pin", [("Foo_Bar==1.2 \\", ("foo-bar", "1.2")), ("    # via x", None)])
def test_lock_lines_are_parsed_by_canonical_name(tmp_path, line, pin):
    lock = tmp_path / "lock"
    lock.write_text(line + "\n")
    assert env_check.locked_pins(lock) == (dict([pin]) if pin else {})
