"""The `text-diffusion` command line.

The parser is built without importing torch, so `text-diffusion --help` is instant and the
web image (no torch) can run its own commands. Each command's handler imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .commands import diffusion, frontier, jobs, sweep, up
from .errors import UserError

__all__ = ["UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text-diffusion",
        description="Train, sample and compare masked diffusion language models.",
    )
    parser.add_argument("--version", action="version", version=f"text-diffusion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    diffusion.register(sub)
    jobs.register(sub)
    up.register(sub)
    frontier.register(sub)
    sweep.register(sub)
    return parser


# Errors of the ML core that mean bad input, by module. Only modules already imported are
# looked at: an exception of one of them means its module was imported, and importing the
# core here would load torch just to print a one-line error.
CORE_USER_ERRORS = {
    "worker.diffusion.data": "DatasetSourceError",
    "worker.diffusion.hub": "HubUnavailableError",
    "worker.diffusion.modeling": "ModelSourceError",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a missing resource, not a bug."""
    from pydantic import ValidationError

    errors: list[type[BaseException]] = [UserError, FileNotFoundError, ValidationError]
    for module, name in CORE_USER_ERRORS.items():
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def _format_error(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "spec"
            # A validator's own message, without pydantic's "Value error, " in front of it.
            message = err["msg"].removeprefix("Value error, ")
            parts.append(f"{field}: {message}")
        return "invalid settings: " + "; ".join(parts)
    return str(exc)


# The exit status of a command whose reader went away (`| head`), as if SIGPIPE had killed it.
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader closed the pipe (`text-diffusion jobs list | head -6`): nothing more to
        # say. Python flushes stdout again at exit; point it at /dev/null so that flush is
        # quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version or a usage error: printed; flush it here
        sys.stdout.flush()
        raise
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given (to run it again)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows now, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {_format_error(exc)}", file=sys.stderr)
            return 2
        if _no_tables(exc):
            print(
                "error: the database has no tables yet: run `text-diffusion db upgrade` "
                "(`text-diffusion up` does it too)",
                file=sys.stderr,
            )
            return 2
        raise


def _no_tables(exc: BaseException) -> bool:
    """A query on a database that was never migrated (SQLite: "no such table"; PostgreSQL:
    "relation ... does not exist"). Only looked for when SQLAlchemy is already imported."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError):
        return False
    text = str(exc.orig)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


if __name__ == "__main__":
    sys.exit(main())
