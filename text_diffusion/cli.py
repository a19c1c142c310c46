"""The `text-diffusion` command line.

The parser is built without importing torch, so `text-diffusion --help` is instant and the
web image (no torch) can run its own commands. Each command's handler imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .commands import diffusion, jobs
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
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a missing resource, not a bug."""
    errors: list[type[BaseException]] = [UserError, FileNotFoundError]
    from pydantic import ValidationError

    errors.append(ValidationError)
    try:
        from worker.diffusion.data import DatasetSourceError
        from worker.diffusion.hub import HubUnavailableError
        from worker.diffusion.modeling import ModelSourceError

        errors += [DatasetSourceError, HubUnavailableError, ModelSourceError]
    except ImportError:  # a web-only install has no torch
        pass
    return tuple(errors)


def _format_error(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "spec"
            parts.append(f"{field}: {err['msg']}")
        return "invalid settings: " + "; ".join(parts)
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given (to run it again)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {_format_error(exc)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
