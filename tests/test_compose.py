"""docker-compose.yml, the Dockerfile and .env.example, checked against the code.

No Docker engine runs in CI, so these files are kept correct by construction: every command a
service runs parses with our real argument parser, every environment variable is one that
`shared.settings.Settings` reads, every Dockerfile target exists, the dependency graph is
sound, and the README's `docker compose` commands name real services and profiles.

Each check is a function that returns a list of problems (empty: fine), so the tests at the
bottom can show that it catches a deliberately broken copy.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import secrets
import shlex
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import Settings, SettingsError
from text_diffusion.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# Variables a service may set that `Settings` does not read: each is read by something else.
IMAGE_VARIABLES = {
    "POSTGRES_USER": "the postgres image: creates this user on first start",
    "POSTGRES_PASSWORD": "the postgres image: that user's password",
    "POSTGRES_DB": "the postgres image: creates this database on first start",
    "CUDA_VISIBLE_DEVICES": "CUDA: the GPUs torch may use",
    "PYTHONUNBUFFERED": "Python: logs reach `docker compose logs` at once",
}
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}


# --------------------------------------------------------------------------- reading
class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start."""


# $$ (a literal $), ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR
_VAR = re.compile(
    r"\$(?:(?P<escape>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """`text` with compose's variable substitution applied, as `docker compose` does it."""

    def substitute(m: re.Match) -> str:
        if m["escape"]:
            return "$"
        name, op, arg = m["braced"] or m["bare"], m["op"], m["arg"]
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if missing else value
        if op in ("?", ":?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return value
        return value or ""

    return _VAR.sub(substitute, text)


def variables_used(text: str) -> dict[str, str | None]:
    """{name: operator} of every `${...}` in `text` (escaped `$$` excluded)."""
    return {m["braced"] or m["bare"]: m["op"] for m in _VAR.finditer(text) if not m["escape"]}


def resolve(node: Any, env: dict[str, str]) -> Any:
    """A parsed compose document with every string interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    return node


@dataclass
class EnvExample:
    values: dict[str, str]  # NAME=value lines
    listed: set[str]  # those and the commented `# NAME=default` lines


def read_env_example(text: str) -> EnvExample:
    values: dict[str, str] = {}
    listed: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            listed.add(m[2])
            if not m[1]:
                values[m[2]] = m[3]
    return EnvExample(values, listed)


def user_env(raw_text: str, example: EnvExample) -> dict[str, str]:
    """The .env a user writes from .env.example: the blanks compose requires, filled in."""
    env = dict(example.values)
    for name, op in variables_used(raw_text).items():
        if op in ("?", ":?") and not env.get(name):
            env[name] = secrets.token_hex(16)  # letters and digits, as .env.example asks
    return env


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name (`FROM image AS name`), each with its instructions in order."""
    lines, pending = [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):  # also inside a continuation
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in lines:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]
            stage = stages[name] = Stage(name, words[0])
        elif stage is not None:
            stage.instructions.append((keyword, args))
    return stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    chain = []
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name].base
    return chain


def stage_runs(stages: dict[str, Stage], name: str) -> list[str]:
    return [args for s in stage_chain(stages, name) for kw, args in s.instructions if kw == "RUN"]


def stage_arg_defaults(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """{NAME: default} of the stage's `ARG NAME=default` lines (the build as users run it)."""
    defaults = {}
    for stage in stage_chain(stages, name):
        for keyword, args in stage.instructions:
            if keyword == "ARG" and "=" in args:
                arg, _, value = args.partition("=")
                defaults[arg] = value.strip('"')
    return defaults


def with_arg_defaults(run: str, defaults: dict[str, str]) -> str:
    """`run` with `"$NAME"`, `${NAME}` and `$NAME` of the given build arguments filled in."""

    def fill(m: re.Match) -> str:
        return defaults.get(m[1], m[0])

    return re.sub(r'"?\$\{?(\w+)\}?"?', fill, run)


def stage_cmd(stages: dict[str, Stage], name: str) -> list[str] | None:
    cmds = [args for s in stage_chain(stages, name) for kw, args in s.instructions if kw == "CMD"]
    return json.loads(cmds[-1]) if cmds else None


def extras_installed(run: str) -> set[str]:
    """Extras of our package in a `pip install ... ".[a,b]"` command."""
    return {e.strip() for m in re.finditer(r"\.\[([\w,\s-]+)\]", run) for e in m[1].split(",")}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def resolved_compose() -> dict[str, Any]:
    raw = COMPOSE_FILE.read_text()
    return resolve(load_compose(), user_env(raw, read_env_example(ENV_EXAMPLE.read_text())))


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any], stages: dict[str, Stage]) -> list[str] | None:
    cmd = service.get("command")
    if isinstance(cmd, str):
        return shlex.split(cmd)
    if cmd is None and service.get("build"):
        return stage_cmd(stages, service["build"].get("target", ""))
    return cmd


def ours(compose: dict[str, Any], stages: dict[str, Stage]) -> dict[str, dict[str, Any]]:
    """Services built from our Dockerfile: the ones that run our code."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build") and svc["build"].get("target") in stages
    }


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """{dependency: condition}; the list form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (spec or {}).get("condition", "service_started") for d, spec in deps.items()}


def image_service(compose: dict[str, Any], image: str) -> str | None:
    """The service running the official `image` (redis, postgres)."""
    for name, svc in compose["services"].items():
        if svc.get("image", "").split(":")[0].removeprefix("library/") == image:
            return name
    return None


def gunicorn_target(argv: list[str]) -> str:
    """The `module:callable()` of a gunicorn command line (its one positional argument)."""
    positional = [a for a in argv[1:] if not a.startswith("-")]
    return positional[-1] if positional else ""


def gunicorn_port(argv: list[str]) -> int | None:
    for i, arg in enumerate(argv):
        bind = arg.split("=", 1)[1] if arg.startswith("--bind=") else None
        if arg in ("--bind", "-b") and i + 1 < len(argv):
            bind = argv[i + 1]
        if bind:
            return int(bind.rsplit(":", 1)[1])
    return None


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!")
        hit = any(
            fnmatch.fnmatch(c, pattern)
            or (pattern.startswith("**/") and fnmatch.fnmatch(c.split("/")[-1], pattern[3:]))
            for c in candidates
        )
        if hit:
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


# --------------------------------------------------------------------------- checks
def check_builds(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if not svc.get("image") and not build:
            problems.append(f"{name}: neither image nor build")
        if build:
            if isinstance(build, str) or build.get("context", ".") != ".":
                problems.append(f"{name}: build context should be the repository root")
            elif build.get("target") not in stages:
                problems.append(f"{name}: build target {build.get('target')!r} is no stage")
    return problems


def check_commands(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """Our services' commands, and the Dockerfile's CMDs, run programs our images install
    with arguments our parser accepts."""
    from shared.queue import QUEUES

    problems = []
    argvs = {f"service {n}": command(s, stages) for n, s in ours(compose, stages).items()}
    argvs |= {f"stage {n}": stage_cmd(stages, n) for n in stages if stage_cmd(stages, n)}
    for where, argv in argvs.items():
        if not argv:
            problems.append(f"{where}: no command")
        elif argv[0] == "text-diffusion":
            try:
                args = build_parser().parse_args(argv[1:])
            except SystemExit:
                problems.append(f"{where}: `{shlex.join(argv)}` does not parse")
                continue
            if args.command == "worker":
                queues = {q.strip() for q in args.queues.split(",")}
                if queues - set(QUEUES):
                    problems.append(f"{where}: unknown queue(s) {sorted(queues - set(QUEUES))}")
        elif argv[0] == "gunicorn":
            if not re.fullmatch(r"[\w.]+:\w+(\(\))?", gunicorn_target(argv)):
                problems.append(f"{where}: gunicorn app {gunicorn_target(argv)!r}")
        else:
            problems.append(f"{where}: runs {argv[0]!r}, not text-diffusion or gunicorn")
    return problems


def check_programs_installed(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """Each service's program comes with what its stage installs."""
    project = pyproject()
    problems = []
    for name, svc in ours(compose, stages).items():
        target, argv = svc["build"]["target"], command(svc, stages) or [""]
        extras = set().union(*map(extras_installed, stage_runs(stages, target)))
        optional = project["project"]["optional-dependencies"]
        problems += [
            f"{name}: stage {target} installs an unknown extra {e!r}"
            for e in extras - set(optional)
        ]
        requirements = [r for e in extras & set(optional) for r in optional[e]]
        if argv[0] == "text-diffusion" and "text-diffusion" not in project["project"]["scripts"]:
            problems.append(f"{name}: pyproject.toml has no text-diffusion script")
        if argv[0] == "gunicorn" and not any(r.startswith("gunicorn") for r in requirements):
            problems.append(f"{name}: stage {target} installs no extra with gunicorn")
    return problems


def check_environment(compose: dict[str, Any]) -> list[str]:
    """Every variable a service sets is a setting, or one its image documents."""
    return [
        f"{name}: {var} is neither a setting of shared/settings.py nor an image variable"
        for name, svc in compose["services"].items()
        for var in environment(svc)
        if var not in SETTINGS_VARIABLES and var not in IMAGE_VARIABLES
    ]


def check_interpolations(raw_text: str, example: EnvExample) -> list[str]:
    used = variables_used(raw_text)
    problems = [f"${{{v}}} is not listed in .env.example" for v in used if v not in example.listed]
    problems += [
        f".env.example lists {v}, which compose never uses" for v in example.listed - set(used)
    ]
    for name, op in used.items():
        if op in ("?", ":?") and example.values.get(name, None) != "":
            problems.append(f"{name} is required: .env.example should list it blank (`{name}=`)")
    return problems


def check_settings(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """Each of our services' environments makes valid Settings pointing at our services."""
    problems = []
    postgres, redis = image_service(compose, "postgres"), image_service(compose, "redis")
    for name, svc in ours(compose, stages).items():
        try:
            settings = Settings.from_env(environment(svc))
        except SettingsError as exc:
            problems.append(f"{name}: {exc}")
            continue
        db = urlsplit(settings.database_url)
        pg_env = environment(compose["services"][postgres]) if postgres else {}
        if db.hostname != postgres:
            problems.append(f"{name}: DATABASE_URL host {db.hostname!r} is not {postgres!r}")
        elif (db.username, db.password, db.path.lstrip("/")) != (
            pg_env.get("POSTGRES_USER"),
            pg_env.get("POSTGRES_PASSWORD"),
            pg_env.get("POSTGRES_DB"),
        ):
            problems.append(f"{name}: DATABASE_URL credentials differ from {postgres}'s")
        if urlsplit(settings.redis_url or "").hostname != redis:
            problems.append(f"{name}: REDIS_URL {settings.redis_url!r} is not the {redis} service")
    return problems


def check_shared_folders(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """DATA_DIR and a file:// ARTIFACT_URL lie on one named volume, at the same path, in
    every service that runs our code: a checkpoint one writes is a file all can read."""
    volumes = set(compose.get("volumes") or {})
    problems, layouts = [], {}
    for name, svc in ours(compose, stages).items():
        settings = Settings.from_env(environment(svc))
        mounts = dict(_mount(spec) for spec in svc.get("volumes", []))
        folders = {"DATA_DIR": str(settings.data_dir)}
        if settings.artifact_url.startswith("file://"):
            folders["ARTIFACT_URL"] = urlsplit(settings.artifact_url).path
        for var, path in folders.items():
            under = [t for t in mounts if path == t or path.startswith(t.rstrip("/") + "/")]
            volume = mounts[max(under, key=len)] if under else None
            if volume not in volumes:
                problems.append(f"{name}: {var}={path} is on no named volume")
            folders[var] = f"{path} on volume {volume}"
        layouts[name] = folders
    if len({json.dumps(f, sort_keys=True) for f in layouts.values()}) > 1:
        problems.append(f"services see different folders: {layouts}")
    return problems


def _mount(spec: str | dict[str, Any]) -> tuple[str, str]:
    """(container path, source) of a volume entry, short (`src:/path[:ro]`) or long."""
    if isinstance(spec, dict):
        return spec["target"], spec.get("source", "")
    source, _, target = spec.partition(":")
    return target.split(":")[0], source


def check_depends_on(compose: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            if dep not in services:
                problems.append(f"{name} depends on {dep}, which is no service")
                continue
            target = services[dep]
            if condition == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name} waits for {dep} to be healthy; it has no healthcheck")
            one_shot = _one_shot(target)
            if one_shot and condition != "service_completed_successfully":
                problems.append(f"{name} should wait for the one-shot {dep} to complete")
            if target.get("profiles") and not svc.get("profiles"):
                problems.append(f"{name} runs always but depends on {dep}, behind a profile")
    one_shots = [n for n, s in services.items() if _one_shot(s)]
    for name in ours(compose, stages):
        for job in one_shots:
            if name != job and job not in depends_on(services[name]):
                problems.append(f"{name} starts without waiting for {job}")
    problems += [f"dependency cycle: {' -> '.join(c)}" for c in _cycles(services)]
    return problems


def _one_shot(service: dict[str, Any]) -> bool:
    """A job that runs once and exits (`restart: "no"`), like the migration."""
    return service.get("restart") in ("no", False)  # unquoted `no` is YAML's false


def _cycles(services: dict[str, Any]) -> Iterator[list[str]]:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        state[name] = "open"
        for dep in depends_on(services.get(name, {})):
            if state.get(dep) == "open":
                yield [*path[path.index(dep) :], dep] if dep in path else [*path, dep]
            elif dep not in state:
                yield from visit(dep, [*path, dep])
        state[name] = "done"

    for name in services:
        if name not in state:
            yield from visit(name, [name])


def check_redis(compose: dict[str, Any]) -> list[str]:
    """Redis keeps queued messages: on disk (appendonly), and never evicted for memory."""
    name = image_service(compose, "redis")
    if name is None:
        return ["no redis service"]
    argv = compose["services"][name].get("command") or []
    argv = shlex.split(argv) if isinstance(argv, str) else argv
    options = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    problems = []
    if options.get("--appendonly") != "yes":
        problems.append(f"{name}: runs without --appendonly yes")
    if options.get("--maxmemory-policy") != "noeviction":
        problems.append(f"{name}: runs without --maxmemory-policy noeviction")
    if not compose["services"][name].get("volumes"):
        problems.append(f"{name}: its append-only file is on no volume")
    return problems


def check_gpu_worker(compose: dict[str, Any], name: str = "worker-gpu") -> list[str]:
    svc = compose["services"].get(name)
    if svc is None:
        return [f"no {name} service"]
    problems = []
    devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    if not any(
        d.get("driver") == "nvidia"
        and "gpu" in d.get("capabilities", [])
        and (d.get("count") or d.get("device_ids"))
        for d in devices
    ):
        problems.append(f"{name}: reserves no nvidia device with the gpu capability")
    if "CUDA_VISIBLE_DEVICES" not in environment(svc):
        problems.append(f"{name}: CUDA_VISIBLE_DEVICES is not set")
    if "gpu" not in (svc.get("profiles") or []):
        problems.append(f"{name}: not behind the gpu profile, so CPU-only hosts fail to start it")
    return problems


def check_scalable(compose: dict[str, Any], name: str) -> list[str]:
    """`--scale NAME=N` starts N copies only without a fixed name or host port."""
    svc = compose["services"].get(name)
    if svc is None:
        return [f"no {name} service"]
    problems = []
    if "container_name" in svc:
        problems.append(f"{name}: container_name makes --scale fail")
    if svc.get("ports"):
        problems.append(f"{name}: a host port makes --scale fail")
    return problems


def check_web_stage(stages: dict[str, Stage], name: str = "web") -> list[str]:
    """The web image has no torch: no `worker` extra, no torch install, no extra pulling it."""
    optional = pyproject()["project"]["optional-dependencies"]
    problems = []
    for run in stage_runs(stages, name):
        if re.search(r"\btorch\b", run):
            problems.append(f"stage {name} installs torch: {run}")
        for extra in extras_installed(run):
            heavy = [r for r in optional.get(extra, []) if re.match(r"(torch|transformers)\b", r)]
            if extra == "worker" or heavy:
                problems.append(f"stage {name} installs the {extra!r} extra (torch)")
    return problems


def check_worker_stage(stages: dict[str, Stage], name: str, torch_index: str | None) -> list[str]:
    """A worker stage installs torch as scripts/setup.sh does (same pin, first), then the
    worker and offline extras and the same --no-deps packages."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pin = re.search(r'"(torch==[\w.]+)"', setup)[1]
    no_deps = re.findall(r'--no-deps "([^"]+)"', setup)
    runs = [
        with_arg_defaults(r, stage_arg_defaults(stages, name)) for r in stage_runs(stages, name)
    ]
    torch_runs = [i for i, r in enumerate(runs) if pin in r]
    extra_runs = [i for i, r in enumerate(runs) if {"worker", "offline"} <= extras_installed(r)]
    problems = []
    if not torch_runs:
        problems.append(f"stage {name}: does not install {pin} (the pin of scripts/setup.sh)")
    elif torch_index and f"--index-url {torch_index}" not in runs[torch_runs[0]]:
        problems.append(f"stage {name}: {pin} does not come from {torch_index}")
    if not extra_runs:
        problems.append(f"stage {name}: does not install the worker and offline extras")
    elif torch_runs and torch_runs[0] > extra_runs[0]:
        problems.append(f"stage {name}: installs the extras before torch (pulls a CUDA torch)")
    for package in no_deps:
        if not any(f'--no-deps "{package}"' in r for r in runs):
            problems.append(f"stage {name}: does not install {package} with --no-deps")
    return problems


def check_runtime(stages: dict[str, Stage], targets: list[str]) -> list[str]:
    """Each target runs as a user other than root, with unbuffered Python output."""
    problems = []
    for name in targets:
        chain = [i for s in stage_chain(stages, name) for i in s.instructions]
        users = [args for keyword, args in chain if keyword == "USER"]
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problems.append(f"stage {name} runs as root")
        env = " ".join(args for keyword, args in chain if keyword == "ENV")
        if not re.search(r"\bPYTHONUNBUFFERED=1\b", env):
            problems.append(f"stage {name}: PYTHONUNBUFFERED=1 is not set")
    return problems


def check_dockerfile_sources(stages: dict[str, Stage], text: str) -> list[str]:
    """Files the Dockerfile copies exist and are in the build context; a web/package.json
    is installed with `npm ci --prefix web`."""
    patterns = dockerignore_patterns()
    problems = []
    for stage in stages.values():
        for keyword, args in stage.instructions:
            words = args.split()
            if keyword not in ("COPY", "ADD") or any(w.startswith("--from") for w in words):
                continue
            sources = [w for w in words[:-1] if not w.startswith("--")]
            for source in sources:
                matches = list(ROOT.glob(source)) if source != "." else [ROOT]
                if not matches and not re.search(r"[*?\[]", source):
                    problems.append(f"stage {stage.name} copies {source}, which does not exist")
                if source != "." and matches and dockerignored(source, patterns):
                    problems.append(
                        f"stage {stage.name} copies {source}, which .dockerignore drops"
                    )
            if sources and not any(ROOT.glob(s) for s in sources):
                problems.append(f"stage {stage.name}: `COPY {args}` matches no file")
    if (ROOT / "web" / "package.json").exists():
        if "npm ci --prefix web" not in text:
            problems.append("web/package.json exists but no stage runs `npm ci --prefix web`")
        if not (ROOT / "web" / "package-lock.json").exists():
            problems.append("web/package.json has no package-lock.json (npm ci needs it)")
    return problems


def check_base_images(stages: dict[str, Stage], text: str) -> list[str]:
    """Base images are build arguments whose defaults are the official images, and no
    `# syntax=` line makes BuildKit fetch a frontend from a registry."""
    problems = []
    if re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE):
        problems.append("a `# syntax=` line: builds fail where no registry is reachable")
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    for stage in stages.values():
        m = re.fullmatch(r"\$\{?(\w+)\}?", stage.base)
        if stage.base in stages:
            continue
        if not m:
            problems.append(f"stage {stage.name}: base {stage.base} is no build argument")
        elif defaults.get(m[1]) not in ("python:3.11-slim", "node:22-slim"):
            problems.append(f"stage {stage.name}: {m[1]} defaults to {defaults.get(m[1])}")
    return problems


def check_package_copies(stages: dict[str, Stage], targets: list[str]) -> list[str]:
    """Each target copies every package of pyproject.toml (`COPY pkg pkg/`, one each)."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    problems = []
    for name in targets:
        chain = [i for s in stage_chain(stages, name) for i in s.instructions]
        copied = {
            args.split()[0]
            for keyword, args in chain
            if keyword == "COPY"
            and len(args.split()) == 2
            and args.split()[1].rstrip("/") == args.split()[0]
        }
        problems += [
            f"stage {name} does not copy the package {p}" for p in sorted(packages - copied)
        ]
    return problems


def shell_lines(markdown: str) -> list[str]:
    """The commands in a Markdown text's shell code blocks, continued lines joined, comments
    cut."""
    blocks: list[str] = []
    inside, shell = False, None  # in a code block; the lines of the open shell block
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if not inside:
                shell = [] if line.strip()[3:] in ("", "bash", "sh", "shell", "console") else None
            elif shell is not None:
                blocks.append("\n".join(shell))
            inside = not inside
        elif inside and shell is not None:
            shell.append(line)
    lines = []
    for text in blocks:
        for line in text.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def compose_commands(markdown: str) -> list[list[str]]:
    """Every `docker compose ...` command of a Markdown text (code blocks and inline code)."""
    texts = shell_lines(markdown) + re.findall(r"`(docker compose [^`]+)`", markdown)
    texts = [t[t.index("docker compose") :] for t in texts if "docker compose" in t]
    commands = []
    for text in texts:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # words, and the operators && ; | between commands
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word not in ("&&", "||", ";", "|", "&"):
                words.append(word)
                continue
            if words[:2] == ["docker", "compose"]:
                commands.append(words)
            words = []
    return commands


# Options that take a value, before the subcommand (compose's own) and after it.
GLOBAL_VALUE_OPTIONS = {"--profile", "-f", "--file", "-p", "--project-name", "--env-file"}
VALUE_OPTIONS = {"--scale", "-t", "--timeout", "--tail", "-e", "--env", "-u", "--user", "-w"}
VALUE_OPTIONS |= {"--build-arg", "--index", "--entrypoint", "--name", "-l", "--label"}


def check_compose_commands(markdown: str, compose: dict[str, Any]) -> list[str]:
    """`docker compose` commands name services, --scale services and --profile profiles
    that exist."""
    services = compose["services"]
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    problems = []
    for argv in compose_commands(markdown):
        subcommand, positional, words = None, [], iter(argv[2:])
        for word in words:
            option, has_value, value = word.partition("=")
            takes = GLOBAL_VALUE_OPTIONS if subcommand is None else VALUE_OPTIONS
            if option in takes and not has_value:
                value = next(words, "")
            if option == "--profile" and value not in profiles:
                problems.append(f"`{shlex.join(argv)}`: no profile {value!r}")
            if option == "--scale" and value.split("=")[0] not in services:
                problems.append(f"`{shlex.join(argv)}`: --scale of no service {value!r}")
            if word.startswith("-"):
                continue
            if subcommand is None:
                subcommand = word
            else:
                positional.append(word)
        if subcommand in ("run", "exec"):  # SERVICE COMMAND...: only the first names one
            positional = positional[:1]
        if subcommand == "cp":  # SERVICE:PATH on one side, a local path on the other
            positional = [p.split(":")[0] for p in positional if ":" in p]
        problems += [
            f"`{shlex.join(argv)}`: no service {p!r}" for p in positional if p not in services
        ]
    return problems


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture
def compose() -> dict[str, Any]:
    return resolved_compose()


def test_compose_uses_the_spec_without_version():
    assert "version" not in load_compose()


def test_dockerfile_has_the_three_targets(stages):
    assert {"web", "worker-cpu", "worker-gpu"} <= set(stages)
    assert check_runtime(stages, ["web", "worker-cpu", "worker-gpu"]) == []


def test_services_build_stages_of_the_dockerfile(compose, stages):
    assert check_builds(compose, stages) == []
    assert {"redis", "postgres", "migrate", "web", "worker-cpu", "worker-gpu"} <= set(
        compose["services"]
    )


def test_commands_parse_with_our_parser(compose, stages):
    assert check_commands(compose, stages) == []
    assert check_programs_installed(compose, stages) == []


def test_environment_is_made_of_settings(compose):
    assert check_environment(compose) == []


def test_every_interpolation_is_in_env_example():
    example = read_env_example(ENV_EXAMPLE.read_text())
    assert check_interpolations(COMPOSE_FILE.read_text(), example) == []


def test_compose_refuses_to_start_without_the_required_secrets():
    raw = COMPOSE_FILE.read_text()
    with pytest.raises(InterpolationError):
        resolve(load_compose(), read_env_example(ENV_EXAMPLE.read_text()).values)
    assert {"POSTGRES_PASSWORD", "SECRET_KEY", "ADMIN_PASSWORD"} <= {
        v for v, op in variables_used(raw).items() if op == ":?"
    }


def test_services_make_valid_settings_pointing_at_our_services(compose, stages):
    assert check_settings(compose, stages) == []
    assert check_shared_folders(compose, stages) == []


def test_depends_on_is_consistent(compose, stages):
    assert check_depends_on(compose, stages) == []


def test_redis_keeps_messages(compose):
    assert check_redis(compose) == []


def test_gpu_worker_reserves_a_gpu(compose):
    assert check_gpu_worker(compose) == []


def test_cpu_workers_scale(compose):
    assert check_scalable(compose, "worker-cpu") == []


def test_web_image_has_no_torch(stages):
    assert check_web_stage(stages) == []


def test_worker_images_install_torch_as_setup_does(stages):
    assert check_worker_stage(stages, "worker-cpu", "https://download.pytorch.org/whl/cpu") == []
    assert check_worker_stage(stages, "worker-gpu", None) == []


def test_dockerfile_copies_what_exists(stages):
    assert check_dockerfile_sources(stages, DOCKERFILE.read_text()) == []


def test_dockerfile_env_is_settings_or_image_variables(stages):
    names = {
        m[1]
        for stage in stages.values()
        for keyword, args in stage.instructions
        if keyword == "ENV"
        for m in re.finditer(r"(\w+)=", args)
    }
    pip_variables = {n for n in names if n.startswith("PIP_")}
    extra = {"PYTHONDONTWRITEBYTECODE"}  # Python: no .pyc files in the read-only /app
    assert names - pip_variables - extra - SETTINGS_VARIABLES - set(IMAGE_VARIABLES) == set()


def test_readme_and_deploy_guide_compose_commands(compose):
    for doc in ("README.md", "docs/deploy.md"):
        text = (ROOT / doc).read_text()
        assert compose_commands(text), f"{doc} has no docker compose command"
        assert check_compose_commands(text, compose) == [], doc
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running as services (docker compose)", 1)[1].split("\n## ", 1)[0]
    for command_text in ("cp .env.example .env", "--scale worker-cpu=", "--profile gpu"):
        assert command_text in section
    commands = 0
    for line in shell_lines(section):
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value text-diffusion ...
            words.pop(0)
        if words and words[0].endswith("text-diffusion"):
            build_parser().parse_args(words[1:])
            commands += 1
    assert commands, "the section shows no text-diffusion command (the second machine's)"


def test_web_service_serves_its_healthcheck(compose, stages, tmp_path, monkeypatch):
    """Run what the migrate and web services run, with their environment on SQLite: the
    migration through our CLI, then gunicorn's `module:factory()` target, and fetch the
    page the healthcheck fetches."""
    import importlib

    from flask import Flask

    from shared import db
    from shared.settings import get_settings
    from text_diffusion.cli import main

    web = compose["services"]["web"]
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = environment(web) | {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'td.db'}",
        "ARTIFACT_URL": str(tmp_path / "artifacts"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    db.dispose_engines()
    try:
        assert main(command(compose["services"]["migrate"], stages)[1:]) == 0

        argv = command(web, stages)
        module_name, _, factory = gunicorn_target(argv).partition(":")
        app = getattr(importlib.import_module(module_name), factory.removesuffix("()"))
        if factory.endswith("()"):
            app = app()
        assert isinstance(app, Flask)

        probe = " ".join(map(str, web["healthcheck"]["test"]))
        url = urlsplit(re.search(r"https?://[^'\"\s]+", probe)[0])
        published = [str(p).rsplit(":", 1)[-1] for p in web.get("ports", [])]
        assert url.port == gunicorn_port(argv) and published == [str(url.port)]
        response = app.test_client().get(url.path)
        assert response.status_code == 200, response.data
    finally:
        get_settings.cache_clear()
        db.dispose_engines()


# --------------------------------------------------------------------------- checks can fail
def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            doc = doc[key]
        if value is None:
            del doc[last]
        else:
            doc[last] = value

    return mutate


BROKEN = {
    "typo in a variable": (
        _set("services/web/environment/REDIS_ULR", "redis://redis:6379/0"),
        check_environment,
        "REDIS_ULR",
    ),
    "unknown build target": (_set("services/web/build/target", "webb"), check_builds, "webb"),
    "command our parser refuses": (
        _set("services/worker-cpu/command", ["text-diffusion", "wroker", "--queues", "cpu"]),
        check_commands,
        "does not parse",
    ),
    "unknown queue": (
        _set("services/worker-cpu/command", ["text-diffusion", "worker", "--queues", "cuda"]),
        check_commands,
        "unknown queue",
    ),
    "database elsewhere": (
        _set("services/worker-cpu/environment/DATABASE_URL", "postgresql://u:p@db/x"),
        check_settings,
        "DATABASE_URL host",
    ),
    "invalid setting": (
        _set("services/web/environment/SECRET_KEY", "short"),
        check_settings,
        "SECRET_KEY",
    ),
    "artifacts on no volume": (
        _set("services/worker-cpu/volumes", ["data:/data"]),
        check_shared_folders,
        "ARTIFACT_URL",
    ),
    "web not waiting for migrate": (
        _set("services/web/depends_on/migrate", {"condition": "service_started"}),
        check_depends_on,
        "one-shot migrate",
    ),
    "healthy without a healthcheck": (
        _set("services/web/depends_on/migrate", {"condition": "service_healthy"}),
        check_depends_on,
        "no healthcheck",
    ),
    "a cycle": (
        _set("services/postgres/depends_on", {"web": {"condition": "service_healthy"}}),
        check_depends_on,
        "cycle",
    ),
    "redis evicting": (
        _set("services/redis/command", ["redis-server", "--appendonly", "yes"]),
        check_redis,
        "noeviction",
    ),
    "gpu worker without a gpu": (
        _set("services/worker-gpu/deploy", None),
        check_gpu_worker,
        "nvidia",
    ),
    "gpu worker for every host": (
        _set("services/worker-gpu/profiles", None),
        check_gpu_worker,
        "profile",
    ),
    "named worker": (
        _set("services/worker-cpu/container_name", "worker"),
        lambda c: check_scalable(c, "worker-cpu"),
        "container_name",
    ),
    "worker with a host port": (
        _set("services/worker-cpu/ports", ["9000:9000"]),
        lambda c: check_scalable(c, "worker-cpu"),
        "host port",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_checks_catch_a_broken_compose_file(case, compose, stages):
    mutate, check, expected = BROKEN[case]
    broken = copy.deepcopy(compose)
    mutate(broken)
    try:
        problems = check(broken)
    except TypeError:  # checks that also read the Dockerfile's stages
        problems = check(broken, stages)
    assert any(expected in p for p in problems), problems


def test_dockerfile_builds_without_a_registry_and_copies_every_package(stages):
    assert check_base_images(stages, DOCKERFILE.read_text()) == []
    assert check_package_copies(stages, ["web", "worker-cpu", "worker-gpu"]) == []


def test_checks_catch_a_broken_dockerfile(stages):
    text = DOCKERFILE.read_text()
    with_syntax = "# syntax=docker/dockerfile:1\n" + text
    assert any("syntax" in p for p in check_base_images(stages, with_syntax))
    fixed_base = text.replace("FROM ${PYTHON_IMAGE} AS base", "FROM python:3.11-slim AS base")
    problems = check_base_images(parse_dockerfile(fixed_base), fixed_base)
    assert any("is no build argument" in p for p in problems)
    no_shared = parse_dockerfile(text.replace("COPY shared shared/\n", "", 1))
    assert check_package_copies(no_shared, ["web"]) == [
        "stage web does not copy the package shared"
    ]
    heavy = parse_dockerfile(text.replace('-e ".[web]"', '-e ".[web,worker]"'))
    assert any("'worker' extra" in p for p in check_web_stage(heavy))
    unpinned = parse_dockerfile(text.replace('"torch==', '"torch>='))
    assert any(
        "does not install torch==" in p for p in check_worker_stage(unpinned, "worker-cpu", None)
    )
    wrong_index = parse_dockerfile(text.replace("whl/cpu", "whl/cu128"))
    problems = check_worker_stage(wrong_index, "worker-cpu", "https://download.pytorch.org/whl/cpu")
    assert any("does not come from" in p for p in problems)
    as_root = parse_dockerfile(text.replace("USER app", "USER root"))
    assert any("runs as root" in p for p in check_runtime(as_root, ["web"]))
    missing = parse_dockerfile(text.replace("COPY pyproject.toml", "COPY pyproject.tom"))
    assert any("does not exist" in p for p in check_dockerfile_sources(missing, text))
    ignored = parse_dockerfile(text + "\nCOPY .venv/bin /x\n")
    assert any(".dockerignore drops" in p for p in check_dockerfile_sources(ignored, text))


def test_checks_catch_broken_docs_and_env_example(compose):
    bad = "```bash\ndocker compose up -d --scale worker=4\n```\n"
    bad += "Then `docker compose --profile cuda up -d webb`."
    problems = check_compose_commands(bad, compose)
    assert any("--scale of no service" in p for p in problems)
    assert any("no profile 'cuda'" in p for p in problems)
    assert any("no service 'webb'" in p for p in problems)
    raw = COMPOSE_FILE.read_text() + "\nx-extra: ${UNLISTED_VARIABLE}\n"
    example = read_env_example(ENV_EXAMPLE.read_text())
    assert any("UNLISTED_VARIABLE" in p for p in check_interpolations(raw, example))
