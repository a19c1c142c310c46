"""`text-diffusion frontier`: queue a speed-quality frontier, list frontiers, show one.

    text-diffusion frontier submit --checkpoints 3,9 --steps 8,16,32 --judge 9
    text-diffusion frontier list
    text-diffusion frontier show NAME [--json]

Locally through the database (`shared.frontier`, `web.queries.frontier`), or with --url /
TD_URL through the API (POST /api/frontiers, GET /api/frontiers[/NAME]), the same data
either way. None of it imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from shared.contracts.frontier import FrontierSpec
from text_diffusion.errors import TOKEN_ENV, UserError
from text_diffusion.specflags import add_spec_flags, spec_values

from . import remote


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("frontier", help="speed-quality frontiers: quality against sampling cost")
    fs = f.add_subparsers(dest="frontier_command", required=True, metavar="ACTION")

    s = fs.add_parser("submit", help="a generation job per checkpoint over a sampler grid")
    flags = add_spec_flags(s, FrontierSpec, rename={"prompts": "prompt"})
    s.add_argument("--queue", choices=["cpu", "gpu"], help="overrides the device's queue")
    s.add_argument("--priority", type=int, default=0)
    remote.add_url_argument(s)
    s.set_defaults(handler=frontier_submit, spec_flags=flags)

    ls = fs.add_parser("list", help="frontiers, newest first")
    remote.add_url_argument(ls)
    ls.set_defaults(handler=frontier_list)

    sh = fs.add_parser("show", help="a frontier's points: cost and quality")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true", help="the API's JSON")
    remote.add_url_argument(sh)
    sh.set_defaults(handler=frontier_show)


def _api(args: argparse.Namespace):
    from text_diffusion.api_client import ApiClient

    return ApiClient(remote.url(args), os.environ.get(TOKEN_ENV) or None)


def frontier_submit(args: argparse.Namespace) -> int:
    from shared.contracts.specs import SpecError

    spec = FrontierSpec.model_validate(spec_values(args, args.spec_flags))
    if remote.url(args):
        body: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "priority": args.priority}
        if args.queue:
            body["queue"] = args.queue
        out = _api(args).post("/api/frontiers", body)
        name, job_ids = out["frontier"], out["job_ids"]
    else:
        from shared.frontier import submit_frontier

        try:
            name, created = submit_frontier(spec, queue=args.queue, priority=args.priority)
        except SpecError as exc:
            raise UserError(str(exc)) from exc
        job_ids = [j.id for j in created]
    print(f"frontier {name}: jobs {', '.join(map(str, job_ids))} queued")
    print(f"see it with: text-diffusion frontier show {name}")
    return 0


def _local(fn, *a):
    from shared.db import read_scope

    with read_scope() as s:
        return fn(s, *a)


def frontier_list(args: argparse.Namespace) -> int:
    if remote.url(args):
        rows = _api(args).get("/api/frontiers")
    else:
        from web.queries.frontier import list_frontiers

        rows = _local(list_frontiers)
    if not rows:
        print("no frontiers yet")
    for r in rows:
        print(f"{r['name']}\t{r['jobs']} jobs\t{r['sample_sets']} sample sets\t{r['created_at']}")
    return 0


def _num(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def frontier_show(args: argparse.Namespace) -> int:
    if remote.url(args):
        data = _api(args).get(f"/api/frontiers/{args.name}")
    else:
        from web.errors import NotFound
        from web.queries.frontier import frontier_points

        try:
            data = _local(frontier_points, args.name)
        except NotFound as exc:
            raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    jobs = ", ".join(f"job {j['id']} {j['status']}" for j in data["jobs"])
    print(f"frontier {data['name']} · judge {data['judge'] or 'none'} · {jobs}")
    header = (
        "line",
        "steps",
        "T",
        "passes",
        "s/sample",
        "judge ppl",
        "entropy",
        "repeats",
        "MAUVE",
        "set",
    )
    print("\t".join(header))
    for line in data["lines"]:
        for i in line["points"]:
            p = data["points"][i]
            mauve = _num(p["mauve"]) if p["mauve"] is not None else f"— ({p['mauve_reason']})"
            cells = (
                line["label"],
                _num(p["steps"]),
                _num(p["temperature"]),
                _num(p["forward_passes"]),
                _num(p["seconds_per_sample"]),
                _num(p["judge_ppl"]),
                _num(p["unigram_entropy"]),
                _num(p.get("repetition")),
                mauve,
                str(p["sample_set_id"]),
            )
            print("\t".join(cells))
    if not data["points"]:
        print("no points yet: its jobs are still running")
    for r in data.get("references", []):
        print(
            f"human text ({r['texts']} held-out snippets, judge {r['judge']}): judge ppl "
            f"{_num(r['judge_ppl'])}, entropy {_num(r['unigram_entropy'])}, "
            f"repeats {_num(r['repetition'])}"
        )
    for line in data.get("diversity_lines", []):
        m = line["matched"]
        read = _num(m["judge_ppl"]) if m.get("judge_ppl") is not None else f"— ({m['reason']})"
        print(f"at human diversity: {line['label']}: judge ppl {read}")
    return 0
