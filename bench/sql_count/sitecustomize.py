"""SQL counting for bench/worker_scaling.py, in processes the benchmark does not run itself.

Python imports `sitecustomize` at startup from any folder on its path: the benchmark puts
this folder on the workers' PYTHONPATH and sets TD_COUNT_SQL=PATH, so the worker, its warm
process and every job process (forked ones inherit it; fresh ones import it again) count
their SQL statements, their writes by kind and table ("UPDATE jobs": n) and their
transactions that wrote, and append them to PATH as a JSON line when they exit. The
product itself carries no benchmark code.
"""

from __future__ import annotations

import atexit
import json
import os
import re
from typing import Any

# A write's kind and table: INSERT [OR x] INTO t, UPDATE t, DELETE FROM t.
_WRITE = re.compile(
    r'\s*(INSERT|UPDATE|DELETE)\b(?:\s+OR\s+\w+)?(?:\s+INTO|\s+FROM)?\s+"?(\w+)', re.IGNORECASE
)


def count_sql(path: str) -> dict[str, int]:
    """Count this process's statements from now on; append them to `path` at exit.
    Returns the live counts."""
    from sqlalchemy import Engine, event

    counts = {"statements": 0, "write_transactions": 0}

    def on_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts["statements"] += 1
        write = _WRITE.match(statement)
        if write:
            key = f"{write[1].upper()} {write[2]}"
            counts[key] = counts.get(key, 0) + 1
            conn.info["td_wrote"] = True

    def on_commit(conn: Any) -> None:
        if conn.info.pop("td_wrote", False):  # a commit that must reach the disk
            counts["write_transactions"] += 1

    def append() -> None:
        if counts["statements"]:
            with open(path, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), **counts}) + "\n")

    event.listen(Engine, "after_cursor_execute", on_execute)
    event.listen(Engine, "commit", on_commit)
    atexit.register(append)
    return counts


if os.environ.get("TD_COUNT_SQL"):
    count_sql(os.environ["TD_COUNT_SQL"])
