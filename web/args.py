"""Query-string arguments, parsed and bounded: each bad one is a `QueryError` naming it.

Pages and the API read their arguments through here, so `?page=0` is the same 400 on both.
"""

from __future__ import annotations

from typing import Any

from shared.contracts.limits import MAX_ID
from shared.models import JobStatus
from web.errors import QueryError
from web.queries.compare import MAX_COMPARE
from web.queries.runs import MAX_PER_PAGE, PER_PAGE, RUN_SORTS, RunQuery

MAX_PAGE = 10**6
MAX_QUERY_CHARS = 200  # the runs page's name search
ORDERS = ("desc", "asc")  # the first is the default


def int_arg(args: Any, name: str, default: int, low: int, high: int) -> int:
    """`args[name]` as an integer in [low, high]; `default` when absent or empty."""
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise QueryError(name, f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise QueryError(name, f"must be between {low} and {high}")
    return value


def id_arg(args: Any, name: str) -> int | None:
    """An optional row id (None when absent or empty)."""
    return int_arg(args, name, 0, 1, MAX_ID) or None


def run_query(args: Any) -> RunQuery:
    """The runs page's filters, sort and page."""
    status = args.get("status") or None
    if status is not None and status not in {s.value for s in JobStatus}:
        raise QueryError("status", f"unknown status {status!r}")
    sort = args.get("sort") or RUN_SORTS[0]
    if sort not in RUN_SORTS:
        raise QueryError("sort", f"choose one of {', '.join(RUN_SORTS)}")
    order = args.get("order") or ORDERS[0]
    if order not in ORDERS:
        raise QueryError("order", f"choose {' or '.join(ORDERS)}")
    page = int_arg(args, "page", 1, 1, MAX_PAGE)
    per_page = int_arg(args, "per_page", PER_PAGE, 1, MAX_PER_PAGE)
    q = (args.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_QUERY_CHARS:
        raise QueryError("q", f"at most {MAX_QUERY_CHARS} characters")
    return RunQuery(
        status=status,
        preset=args.get("preset") or None,
        tag=args.get("tag") or None,
        q=q,
        sort=sort,
        desc=order == "desc",
        page=page,
        per_page=per_page,
    )


def run_ids(text: str | None) -> list[int]:
    """'3,1,3 2' -> [3, 1, 2]: 2 to MAX_COMPARE distinct run ids, in the order given."""
    ids: list[int] = []
    for part in (text or "").replace(" ", ",").split(","):
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or int(part) > MAX_ID:
            raise QueryError("runs", f"expected run ids separated by commas, got {part!r}")
        if int(part) not in ids:
            ids.append(int(part))
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise QueryError("runs", f"pick 2 to {MAX_COMPARE} runs, got {len(ids)}")
    return ids
