"""`text-diffusion up`: the database, a worker and the dashboard in one command.

    up ──▶ migrate the database ──▶ web server (this process, main thread)
       └─▶ worker (`text-diffusion worker`, a session of its own; its output in up.log)

Its first screen is the dashboard's address, the login (a new password, or where it is)
and where the logs go; everything else (Celery's banner and warnings, request lines, the
worker's output) goes to DATA_DIR/up.log, or to the terminal with `--verbose`.

Stopping, like foreman or `docker compose up`: SIGINT (Ctrl-C) and SIGTERM both stop the
server and then the worker, which stops its running job at the next step and queues it
again (SIGKILL if it has not exited after its grace; a second Ctrl-C kills it at once).
The handlers are installed whatever was inherited: a shell starts background commands
with SIGINT ignored. If `up` dies without stopping (SIGKILL, the OOM killer), its worker
sees it gone and shuts down by itself (`worker.lifeline`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("text_diffusion.up")

LOG_FILE = "up.log"  # under DATA_DIR
RESET_HINT = "reset it with `text-diffusion up --new-password`"


def register(sub: argparse._SubParsersAction) -> None:
    host, port = _default_address()
    u = sub.add_parser(
        "up",
        help="database, worker and web page in one command (Ctrl-C stops)",
        description="Start the database, a worker and the dashboard; Ctrl-C stops them all.",
    )
    u.add_argument("--host", help=f"address to listen on (default {host}, from WEB_HOST)")
    u.add_argument("--port", type=int, help=f"port (default {port}, from WEB_PORT)")
    u.add_argument("--queues", default="cpu,gpu", help="the worker's queues (default cpu,gpu)")
    u.add_argument("--no-worker", action="store_true", help="web page only")
    u.add_argument(
        "--new-password",
        action="store_true",
        help="generate a new dashboard password and print it (the old one stops working)",
    )
    u.add_argument(
        "--verbose",
        action="store_true",
        help=f"show the worker's and the server's logs here instead of in DATA_DIR/{LOG_FILE}",
    )
    u.set_defaults(handler=run_up)


def _default_address() -> tuple[str, int]:
    """WEB_HOST and WEB_PORT as this environment sets them (the fields' defaults if a
    setting is invalid: `--help` must work even then; `up` itself reports it)."""
    from shared.settings import Settings, SettingsError, get_settings

    try:
        settings = get_settings()
        return settings.web_host, settings.web_port
    except SettingsError:
        fields = Settings.model_fields
        return fields["web_host"].default, fields["web_port"].default


class _Stop(Exception):
    """Raised in the main thread by the first SIGINT or SIGTERM."""


class _Signals:
    """SIGINT and SIGTERM stop `up`: the first raises `_Stop` out of the server's loop; one
    more while stopping kills the worker at once instead of waiting for its grace."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.worker: subprocess.Popen | None = None
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stop(signal.Signals(signum).name)
        if self.worker is not None and self.worker.poll() is None:
            print("killing the worker now", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)


def _request_handler() -> type:
    from web.security import RequestHandler

    class PlainRequestHandler(RequestHandler):
        """Request lines as werkzeug writes them, without its ANSI colours (they go to a
        file)."""

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            code = getattr(code, "value", code)  # an HTTPStatus
            line = f"{self.command} {self.path} {self.request_version}"
            self.log("info", '"%s" %s %s', line, code, size)

    return PlainRequestHandler


def _route_logs(path: Path, verbose: bool) -> IO[bytes] | None:
    """Send this process's log records to `path` (or stderr if `verbose`); return the
    file the worker writes to (None: it inherits the terminal)."""
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    return None if verbose else path.open("ab")


def _login_line(settings: Any, new: bool) -> str:
    from web.auth import USERNAME, ensure_password

    password = ensure_password(settings, new=new)
    if password is not None:
        return f"login:  {USERNAME} / {password}   (shown once; {RESET_HINT})"
    if settings.admin_password:
        return f"login:  {USERNAME}, with the password in ADMIN_PASSWORD"
    return f"login:  {USERNAME}; a password is already set; {RESET_HINT}"


def _start_worker(queues: str, out: IO[bytes] | None) -> subprocess.Popen:
    from worker.lifeline import SUPERVISOR_PID_ENV

    env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}  # it exits when we are gone
    return subprocess.Popen(
        [sys.executable, "-m", "text_diffusion.cli", "worker", "--queues", queues],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
        start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
    )


def _stop_worker(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the worker (it stops and requeues its jobs), SIGKILL its group if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run_up(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from shared import db
    from shared.settings import get_settings
    from text_diffusion.errors import UserError
    from web import create_app
    from worker.lifeline import exit_grace_s

    settings = get_settings()
    try:
        login = _login_line(settings, args.new_password)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    log_path = settings.data_dir / LOG_FILE
    worker_out = _route_logs(log_path, args.verbose)
    log.info("---- text-diffusion up (pid %d)", os.getpid())
    signals = _Signals()
    signals.install()
    server = worker = None
    try:
        db.upgrade()
        log.info("database: %s", db.database_url().render_as_string())
        log.info("broker: %s", settings.redis_url or f"embedded ({settings.broker_dir})")
        host, port = args.host or settings.web_host, args.port or settings.web_port
        server = make_server(
            host, port, create_app(), threaded=True, request_handler=_request_handler()
        )  # a port in use: werkzeug says so, and exits 1
        if not args.no_worker:
            worker = signals.worker = _start_worker(args.queues, worker_out)
        print(f"text-diffusion is up at http://{host}:{server.port}/  (Ctrl-C stops it)")
        print(f"  {login}")
        print("  logs:   " + ("shown here (--verbose)" if args.verbose else f"{log_path}"))
        sys.stdout.flush()
        server.serve_forever()
    except _Stop as stop:
        log.info("%s: stopping", stop)
    finally:
        signals.stopping = True  # from here on a signal no longer raises
        if server is not None or worker is not None:
            print("stopping ...", flush=True)
        if server is not None:
            server.server_close()
        if worker is not None:
            _stop_worker(worker, exit_grace_s(settings))
        signals.restore()
        if worker_out is not None:
            worker_out.close()
        if server is not None or worker is not None:
            print("stopped", flush=True)
    return 0
