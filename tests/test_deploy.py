"""Deployment files checked without a Docker engine, and every README command mapped to something real.

The compose files are parsed (PyYAML) and interpolated with their defaults; each service's command is parsed
by the real `pss` argparse parser; the healthcheck command runs against a stand-in server; the Dockerfile's
install steps are compared with scripts/setup.sh (what `make demo` / `make test` run). Each README shell
command is a `make` target, a `pss`/torchrun command the real parser accepts, a docker command naming files,
services and build args that exist, a curl of a real route, or a pytest path that exists.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from backend.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
GPU_COMPOSE = REPO / "docker-compose.gpu.yml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(node, env: dict):
    """Compose's ``${VAR:-default}`` / ``${VAR}`` substitution, applied to every string of a parsed file."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), node)
    return node


def compose(env: dict | None = None, path: Path = COMPOSE) -> dict:
    return interpolate(yaml.safe_load(path.read_text()), env or {})


def compose_variables() -> set[str]:
    return {m.group(1) for p in (COMPOSE, GPU_COMPOSE) for m in _VARIABLE.finditer(p.read_text())}


def parse_pss(argv: list[str]):
    """The real parser's namespace; fails on unknown flags and on subcommands that are not implemented."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`pss {shlex.join(argv)}` is rejected by the parser") from exc
    module = COMMANDS.get(args.command, (None,))[0]
    if module:
        assert args._run.__module__ == module.__name__, f"`pss {args.command}` is not available"
    return args


# ----------------------------------------------------------------------------------------- compose
def test_compose_services_start_in_order_on_a_named_volume():
    services = compose()["services"]
    assert set(services) == {"precompute", "backend", "ui"}
    assert services["backend"]["depends_on"]["precompute"]["condition"] == "service_completed_successfully"
    assert services["ui"]["depends_on"]["backend"]["condition"] == "service_healthy"
    assert "artifacts" in compose()["volumes"]
    assert "artifacts:/artifacts" in services["precompute"]["volumes"]
    assert "artifacts:/artifacts:ro" in services["backend"]["volumes"]
    assert services["precompute"].get("restart", "no") == "no"
    assert "/api/health" in " ".join(services["backend"]["healthcheck"]["test"])
    for name in ("backend", "ui"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), "published beyond loopback"


@pytest.mark.parametrize("env", [
    {},
    {"PSS_MODEL": "checkpoint:/models/my_model.pt:resnet50", "PSS_DATA": "imagefolder:/data/val", "PSS_RUN": "mine",
     "PSS_INDEX": "sq8", "PSS_DEVICE": "cuda"},
], ids=["defaults", "own-model"])
def test_compose_commands_are_real_pss_commands(env):
    from backend.models import parse_model_spec

    services = compose(env)["services"]
    pre, back, ui = (services[n]["command"] for n in ("precompute", "backend", "ui"))
    assert pre[0] == back[0] == ui[0] == "pss"
    pre_args, back_args, ui_args = parse_pss(pre[1:]), parse_pss(back[1:]), parse_pss(ui[1:])
    assert (pre_args.command, back_args.command, ui_args.command) == ("precompute", "serve", "ui")
    assert pre_args.out == str(back_args.artifacts) == f"/artifacts/{env.get('PSS_RUN', 'demo')}"
    assert pre_args.model == env.get("PSS_MODEL", "demo") and pre_args.device == back_args.device
    parse_model_spec(pre_args.model)
    assert pre_args.data.split(":")[0] in {"fashion-mnist", "imagefolder"}
    assert back_args.host == ui_args.host == "0.0.0.0"
    assert ui_args.backend == f"http://backend:{back_args.port}"
    assert services["backend"]["ports"] == [f"127.0.0.1:8000:{back_args.port}"]
    assert services["ui"]["ports"] == [f"127.0.0.1:8050:{ui_args.port}"]
    for mount in ("/models:ro", "/data:ro"):  # a checkpoint or folder named in the spec is visible to both
        assert any(v.endswith(mount) for v in services["precompute"]["volumes"])
        assert any(v.endswith(mount) for v in services["backend"]["volumes"])


def test_backend_environment_names_real_settings():
    from backend.api.settings import Settings

    fields = {f"PSS_{name.upper()}" for name in Settings.model_fields}
    assert set(compose()["services"]["backend"]["environment"]) <= fields


def test_gpu_override_reserves_nvidia_gpus_for_the_model_services():
    base, gpu = compose()["services"], compose(path=GPU_COMPOSE)["services"]
    assert set(gpu) <= set(base)
    for name in ("precompute", "backend"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert {gpu[name]["build"]["args"]["TORCH_VARIANT"] for name in gpu} == {"cuda"}


class _Health(BaseHTTPRequestHandler):
    ready = False

    def do_GET(self):
        body = json.dumps({"status": "ok", "ready": type(self).ready}).encode()
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_healthcheck_is_healthy_only_when_ready():
    test = compose()["services"]["backend"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python3"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    command = [sys.executable, *[arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in test[2:]]]
    try:
        _Health.ready = False
        assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0
        _Health.ready = True
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0  # nothing listening


# -------------------------------------------------------------------------------------- Dockerfile
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_dockerfile_installs_what_setup_sh_installs():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    docker = dockerfile()
    lock_flags = "--require-hashes --no-deps -r "
    assert f"pip_install {lock_flags}requirements.lock\n" in setup
    assert f"pip install -q {lock_flags}/tmp/requirements.txt" in docker
    assert '"$py" -m pip install -q "$@"' in setup  # what pip_install runs
    assert "COPY requirements.lock " in docker and "cuda) cp requirements.lock /tmp/requirements.txt" in docker
    assert "dataset-fashion-mnist" in re.search(r"debs=\((.*)\)", setup).group(1)
    assert "--no-install-recommends dataset-fashion-mnist" in docker
    project_flags = "--no-deps --no-build-isolation -e .\n"
    assert f"pip_install {project_flags}" in setup and f"pip install -q {project_flags}" in docker


def test_dockerfile_cpu_variant_keeps_the_locked_torch_and_drops_only_cuda_packages(tmp_path):
    """Runs the Dockerfile's own sed/awk lines on the lock: the cpu variant installs the locked torch and
    torchvision versions and every other locked package except the CUDA ones."""
    docker = dockerfile()
    lock = (REPO / "requirements.lock").read_text()
    awk = re.search(r"awk '([^']+)'", docker).group(1)
    kept = subprocess.run(["awk", awk], input=lock, capture_output=True, text=True, check=True).stdout
    names = lambda text: set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", text, re.M))  # noqa: E731
    dropped = names(lock) - names(kept)
    assert {"torch", "torchvision"} <= dropped and names(kept)
    assert all(n in ("torch", "torchvision", "triton") or n.startswith("nvidia-") for n in dropped), dropped
    assert kept.count("--hash=") > 0 and "nvidia" not in kept.split("# via")[0]
    for package in ("torch", "torchvision"):
        sed = re.search(rf"sed -n '(s/\^{package}==[^']+)' requirements.lock", docker).group(1)
        version = subprocess.run(["sed", "-n", sed], input=lock, capture_output=True, text=True).stdout.strip()
        assert re.search(rf"^{package}=={re.escape(version)} ", lock, re.M), (package, version)


def test_dockerfile_variants_and_non_root_user():
    docker = dockerfile()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", docker, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", docker, re.M)
    assert "cpu) python3 -m pip install -q --index-url https://download.pytorch.org/whl/cpu" in docker
    assert "cuda) cp requirements.lock" in docker
    user = docker.index("USER pss")
    assert "useradd" in docker and all(docker.index(step) < user for step in ("--no-build-isolation -e .", "chown"))
    assert not re.search(r"^USER root", docker[user:], re.M)


def test_dockerfile_copies_every_package_and_nothing_ignored():
    docker = dockerfile()
    copied = {line.split()[1] for line in docker.splitlines() if line.startswith("COPY ")}
    copied |= {name for line in docker.splitlines() if line.startswith("COPY ") for name in line.split()[1:-1]}
    for package in ("backend", "app", "precompute", "frontend_assets", "pyproject.toml", "README.md"):
        assert package in copied and (REPO / package).exists(), package
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not copied & ignored


# ------------------------------------------------------------------------------------------ README
def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def expand_optional(words: list[str]) -> list[list[str]]:
    """``a [--x X|Y] b`` -> ``[a, b]`` and ``[a, --x, X, b]``: usage-style optional groups, first alternative."""
    text = " ".join(words)
    groups = re.findall(r"\[([^\]]+)\]", text)
    plain = re.sub(r"\s*\[[^\]]+\]", "", text).split()
    variants = [plain]
    for group in groups:
        variants.append(plain + [re.sub(r"(\S+?)\|\S+", r"\1", part) for part in group.split()])
    return variants


def openapi_routes() -> dict[str, set[str]]:
    from backend.api.main import create_app
    from backend.api.settings import Settings

    schema = create_app(Settings(artifacts=Path("unused"))).openapi()
    return {path: {m.upper() for m in methods} for path, methods in schema["paths"].items()}


def route_exists(routes: dict[str, set[str]], method: str, path: str) -> bool:
    for template, methods in routes.items():
        if method in methods and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return True
    return False


def check_docker(words: list[str]) -> None:
    if words[1] == "build":
        declared = set(re.findall(r"^ARG (\w+)", dockerfile(), re.M))
        for i, word in enumerate(words):
            if word == "--build-arg":
                assert words[i + 1].split("=")[0] in declared
        return
    assert words[1] == "compose", words
    rest, files = words[2:], []
    while rest and rest[0] == "-f":
        files.append(REPO / rest[1])
        rest = rest[2:]
    services: dict = {}
    for path in files or [COMPOSE]:
        assert path.is_file(), path
        services.update(compose(path=path)["services"])
    verb, args = rest[0], rest[1:]
    assert verb in {"up", "down", "logs", "run", "ps", "build", "stop"}, verb
    if verb == "run":
        service = next(i for i, a in enumerate(args) if not a.startswith("-"))
        assert set(args[:service]) <= {"--rm"} and args[service] in services
        check_command(args[service + 1 :])
    elif verb == "logs":
        assert all(a in services for a in args if not a.startswith("-"))


def check_command(words: list[str], routes: dict | None = None) -> None:
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
        assert words[0].split("=")[0] in compose_variables(), words[0]
        words = words[1:]
    head = words[0]
    if head == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
        assert set(words[1:]) <= targets, words
    elif head == "pss":
        for variant in expand_optional(words[1:]):
            parse_pss(variant)
    elif head == "torchrun":
        from precompute.__main__ import main as precompute_main

        module = words.index("-m")
        assert words[module + 1] == "precompute"
        with pytest.raises(SystemExit) as done:
            precompute_main([*words[module + 2 :], "--help"])
        assert done.value.code == 0
        parse_pss(["precompute", *words[module + 2 :]])
    elif head == "docker":
        check_docker(words)
    elif head == "curl":
        method = words[words.index("-X") + 1] if "-X" in words else ("POST" if "-F" in words else "GET")
        url = next(w for w in words if w.startswith("http"))
        path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        assert route_exists(routes, method, path), f"{method} {path}"
    elif words[:3] == ["python", "-m", "pytest"]:
        assert all((REPO / p).exists() for p in words[3:] if not p.startswith("-"))
    else:
        raise AssertionError(f"README command not covered by any test: {shlex.join(words)}")


def test_every_readme_command_is_exercised():
    routes = openapi_routes()
    commands = readme_commands()
    assert len(commands) > 15
    for command in commands:
        check_command(shlex.split(command), routes)


def test_readme_has_the_front_door_sections_and_screenshot():
    text = (REPO / "README.md").read_text()
    for heading in ("## The two commands", "## Your own model", "## GPU and multi-GPU precompute", "## Docker Compose",
                    "## The backend (HTTP API)", "## Troubleshooting"):
        assert heading in text, heading
    assert "make demo" in text and "make test" in text and "/docs" in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPO / image).is_file(), image


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: setup\n\t\$\(PYTHON\) -m pytest", makefile, re.M)
    assert re.search(r"^PYTHON := \$\(VENV\)/bin/python$", makefile, re.M)
