"""`text-diffusion sweep`: create a sweep from a file, watch it, and steer it.

    text-diffusion sweep submit sweep.yaml          # create and launch its first trials
    text-diffusion sweep list
    text-diffusion sweep show 3 [--json]
    text-diffusion sweep pause|resume|stop|retry-failed 3
    text-diffusion sweep extend 3 --trials 8
    text-diffusion sweep export 3 > sweep.yaml

The file is YAML or JSON in the shape of W&B's sweep files (`shared.contracts.sweep`).
Locally through the database (`shared.sweeps`), or with --url / TD_URL through the API
(/api/sweeps), the same data either way. None of it imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from text_diffusion.errors import TOKEN_ENV, UserError

from . import remote

ACTIONS = ("pause", "resume", "stop", "retry-failed")


def register(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser("sweep", help="sweeps: search training settings with Optuna, in parallel")
    ss = sw.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    s = ss.add_parser("submit", help="create a sweep from a YAML or JSON file and launch it")
    s.add_argument("file", type=Path, help="the sweep file (see docs/sweeps.md)")
    s.add_argument("--name", help="overrides the file's name")
    s.add_argument(
        "--base-run",
        type=int,
        metavar="RUN",
        help="start the base from this run's settings (the file's base overrides them)",
    )
    remote.add_url_argument(s)
    s.set_defaults(handler=sweep_submit)

    ls = ss.add_parser("list", help="sweeps, newest first")
    remote.add_url_argument(ls)
    ls.set_defaults(handler=sweep_list)

    sh = ss.add_parser("show", help="a sweep's trials, best so far and parameter importance")
    sh.add_argument("sweep_id", type=int)
    sh.add_argument("--json", action="store_true", help="the API's JSON")
    remote.add_url_argument(sh)
    sh.set_defaults(handler=sweep_show)

    for action in ACTIONS:
        a = ss.add_parser(action, help=_ACTION_HELP[action])
        a.add_argument("sweep_id", type=int)
        remote.add_url_argument(a)
        a.set_defaults(handler=sweep_act, action=action)

    ex = ss.add_parser("extend", help="raise the trial cap (a finished sweep runs again)")
    ex.add_argument("sweep_id", type=int)
    ex.add_argument("--trials", type=int, required=True, help="trials to add")
    remote.add_url_argument(ex)
    ex.set_defaults(handler=sweep_extend)

    ep = ss.add_parser("export", help="print the sweep's file (YAML)")
    ep.add_argument("sweep_id", type=int)
    remote.add_url_argument(ep)
    ep.set_defaults(handler=sweep_export)


_ACTION_HELP = {
    "pause": "start no new trials; running ones go on",
    "resume": "start trials again",
    "stop": "start no new trials and cancel the running ones",
    "retry-failed": "queue the failed runs of its trials again",
}


def _api(args: argparse.Namespace):
    from text_diffusion.api_client import ApiClient

    return ApiClient(remote.url(args), os.environ.get(TOKEN_ENV) or None)


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping (name, parameters, ...) at the top")
    return data


def _detail(args: argparse.Namespace) -> dict[str, Any]:
    if remote.url(args):
        return _api(args).get(f"/api/sweeps/{args.sweep_id}")
    from shared.db import read_scope
    from web.queries.sweeps import sweep_detail

    with read_scope() as s:
        detail = sweep_detail(s, args.sweep_id)
    if detail is None:
        raise UserError(f"no sweep with id {args.sweep_id}")
    return detail


def _run_spec(args: argparse.Namespace, run_id: int) -> dict[str, Any]:
    """The stored spec of run `run_id`, here or through the API."""
    if remote.url(args):
        return _api(args).get(f"/api/runs/{run_id}")["spec"]
    from shared.db import read_scope
    from shared.models import Run

    with read_scope() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise UserError(f"no run with id {run_id}")
        return dict(run.spec or {})


def sweep_submit(args: argparse.Namespace) -> int:
    data = _read_file(args.file)
    if args.name:
        data["name"] = args.name
    if args.base_run is not None:
        from shared.contracts.sweep import base_from_run

        own = data.get("base") or {}
        if not isinstance(own, dict):
            raise UserError(f"{args.file}: base must be a mapping of training settings")
        data["base"] = {**base_from_run(_run_spec(args, args.base_run)), **own}
    if remote.url(args):
        created = _api(args).post("/api/sweeps", {"spec": data})
        sweep_id, job_ids = created["sweep_id"], created["job_ids"]
    else:
        from pydantic import ValidationError

        from shared import sweeps
        from shared.contracts.specs import SpecError
        from shared.contracts.sweep import SweepSpec

        try:
            sweep_id, job_ids = sweeps.create(SweepSpec.model_validate(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "the file"
            raise UserError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
        except SpecError as exc:
            raise UserError(str(exc)) from None
    print(f"sweep {sweep_id} created; first trials queued as jobs {', '.join(map(str, job_ids))}")
    print(f"watch it: text-diffusion sweep show {sweep_id}")
    return 0


def sweep_list(args: argparse.Namespace) -> int:
    if remote.url(args):
        rows = _api(args).get("/api/sweeps")
    else:
        from shared.db import read_scope
        from web.queries.sweeps import list_sweeps

        with read_scope() as s:
            rows = list_sweeps(s)
    if not rows:
        print("no sweeps yet")
    for r in rows:
        print(
            f"{r['id']}\t{r['name']}\t{r['status']}\t{r['method']}\t"
            f"{r['trials']}/{r['trial_cap']} trials\t{r['goal']} {r['metric']}"
        )
    return 0


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def sweep_show(args: argparse.Namespace) -> int:
    d = _detail(args)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    spec = d["spec"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(d["counts"].items())) or "none yet"
    print(f"sweep {d['id']} {d['name']} · {d['status']} · {spec['method']} · trials: {counts}")
    print(f"best {spec['metric']['name']} ({spec['metric']['goal']}): {_num(d['best'])}")
    names = [a["name"] for a in d["parameters"]]
    print("\t".join(["trial", "state", "value", "steps", *names, "runs"]))
    for t in d["trials"]:
        value = _num(t["value"])
        if t["spread"] is not None:
            value += f" ± {t['spread']:.2g}"
        elif t["state"] == "pruned":
            value = f"pruned at step {t['pruned_at']}"
        elif t.get("judging"):
            value = "judging its samples"
        params = [_num(t["params"].get(n)) for n in names]
        runs = ",".join(str(r["id"]) for r in t["runs"])
        print("\t".join([str(t["number"]), t["state"], value, str(t["steps"]), *params, runs]))
    scores = d["importance"]["scores"]
    if scores:
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in ranked))
    else:
        print(f"importance: — ({d['importance']['reason']})")
    return 0


def sweep_act(args: argparse.Namespace) -> int:
    if remote.url(args):
        d = _api(args).post(f"/api/sweeps/{args.sweep_id}/{args.action}")
    else:
        from shared import sweeps

        action = {
            "pause": sweeps.pause,
            "resume": sweeps.resume,
            "stop": sweeps.stop,
            "retry-failed": sweeps.retry_failed,
        }[args.action]
        try:
            action(args.sweep_id)
        except sweeps.SweepError as exc:
            raise UserError(str(exc)) from None
        d = _detail(args)
    print(f"sweep {d['id']} is {d['status']}")
    return 0


def sweep_extend(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise UserError("--trials must be at least 1")
    if remote.url(args):
        d = _api(args).post(f"/api/sweeps/{args.sweep_id}/extend", {"trials": args.trials})
    else:
        from shared import sweeps

        try:
            sweeps.extend(args.sweep_id, args.trials)
        except sweeps.SweepError as exc:
            raise UserError(str(exc)) from None
        d = _detail(args)
    print(f"sweep {d['id']} is {d['status']}, up to {d['trial_cap']} trials")
    return 0


def sweep_export(args: argparse.Namespace) -> int:
    import yaml

    if remote.url(args):
        data = _api(args).get(f"/api/sweeps/{args.sweep_id}/export")
    else:
        from shared import sweeps

        try:
            data = sweeps.export(args.sweep_id)
        except sweeps.SweepError as exc:
            raise UserError(str(exc)) from None
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
