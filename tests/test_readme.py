"""The README's two commands stay true: CI runs the test command, the main command parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from text_diffusion.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_commands():
    assert len(quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command():
    _, test_command = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_main_command_sets_up_then_runs_a_valid_cli_call():
    main_command, _ = quick_start_commands()
    setup, run = main_command.split(" && ")
    assert setup == "bash scripts/setup.sh" and (ROOT / "scripts" / "setup.sh").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup in ci  # CI sets up exactly as a newcomer does
    argv = shlex.split(run)
    assert argv[0] == ".venv/bin/text-diffusion"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "up"
