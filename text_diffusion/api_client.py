"""A small client of the dashboard's JSON API (stdlib only), for the CLI's `--url` mode.

    client = ApiClient("http://gpu-box:8000", token=os.environ["TD_API_TOKEN"])
    client.post("/api/runs", {"preset": "tiny"})      # -> {"job_id": 3, "run_id": 2, ...}

`RemoteJobs` offers the functions of `shared.jobs` that the CLI calls (submit_train, submit,
get_job, list_jobs, cancel, retry) over HTTP, so the commands run unchanged against a server
instead of the database. Every failure is an `ApiClientError` that says what to do:
a server that does not answer, a missing or refused token, the fields a spec got wrong.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from text_diffusion.errors import TOKEN_ENV, URL_ENV, UserError

TIMEOUT_S = 30.0  # a submit waits for one database commit; anything slower is a stuck server


class ApiClientError(UserError):
    """The request failed; the message is meant for the user. `status` is the HTTP status
    (None when the server was not reached) and `fields` the API's field errors."""

    def __init__(
        self, message: str, status: int | None = None, fields: list[dict] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields or []


class ApiClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiClientError(f"--url must look like http://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self.request("GET", path + (f"?{urlencode(query)}" if query else ""))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in, JSON out; `ApiClientError` for anything but a 2xx answer."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiClientError(
                f"cannot reach {self.url}: {reason} "
                f"(is the server running? check --url or ${URL_ENV})"
            ) from None

    def _http_error(self, exc: urllib.error.HTTPError) -> ApiClientError:
        try:
            error = json.loads(exc.read()).get("error", {})
        except (ValueError, AttributeError):
            error = {}
        message = error.get("message") or exc.reason
        fields = error.get("fields") or []
        if exc.code == 401:
            hint = (
                f"set {TOKEN_ENV} to one of the server's API_TOKENS"
                if not self.token
                else f"the server refused the token in {TOKEN_ENV}: use one of its API_TOKENS"
            )
            return ApiClientError(f"{self.url} needs an API token: {hint}", 401)
        if exc.code == 422 and fields:
            problems = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
            return ApiClientError(f"invalid request: {problems}", 422, fields)
        return ApiClientError(f"{message} (HTTP {exc.code})", exc.code, fields)


@dataclass(frozen=True)
class RemoteJob:
    """A job as the API returns it, with the attributes the CLI reads from a `Job` row."""

    id: int
    kind: str
    status: str
    run_id: int | None
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    progress: float
    worker: str | None
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    spec: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> RemoteJob:
        return cls(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            run_id=row.get("run_id"),
            queue=row["queue"],
            priority=row.get("priority", 0),
            attempts=row.get("attempts", 0),
            max_attempts=row.get("max_attempts", 0),
            progress=row.get("progress") or 0.0,
            worker=row.get("worker"),
            error=row.get("error"),
            result=row.get("result"),
            created_at=datetime.fromisoformat(row["created_at"]),
            spec=row.get("spec"),
        )


@dataclass(frozen=True)
class Submitted:
    id: int
    kind: str
    queue: str
    run_id: int | None


class RemoteJobs:
    """`shared.jobs`' user-facing functions, over the API of the server at `url`."""

    def __init__(self, url: str, token: str | None) -> None:
        self.api = ApiClient(url, token)

    def _submitted(self, kind: str, body: dict[str, Any]) -> Submitted:
        return Submitted(body["job_id"], kind, body["queue"], body.get("run_id"))

    def submit_train(
        self,
        spec,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        queue: str | None = None,
        priority: int = 0,
    ) -> Submitted:
        fields = spec.model_dump(mode="json")
        preset = fields.pop("preset")
        body = {"preset": preset, "spec": fields, "name": name, "tags": tags or []}
        body.update(queue=queue, priority=priority)
        return self._submitted("train", self.api.post("/api/runs", _drop_none(body)))

    def submit(self, kind: str, spec, *, queue: str | None = None, priority: int = 0) -> Submitted:
        """A job of a routed kind of the table (`shared.kinds`): POST /api/<route>."""
        from shared.kinds import get

        body = {"spec": spec.model_dump(mode="json"), "queue": queue, "priority": priority}
        path = f"/api/{get(kind).route}"
        return self._submitted(kind, self.api.post(path, _drop_none(body)))

    def get_job(self, job_id: int) -> RemoteJob:
        return RemoteJob.from_json(self.api.get(f"/api/jobs/{job_id}"))

    def resumed_from_step(self, run_id: int) -> int | None:
        """As `shared.job_reads.resumed_from_step`: from the run's summary."""
        return self.api.get(f"/api/runs/{run_id}")["summary"].get("resumed_from_step")

    def list_jobs(self, limit: int = 50, status: str | None = None) -> list[RemoteJob]:
        rows = self.api.get("/api/jobs", {"limit": limit, "status": status})
        return [RemoteJob.from_json(r) for r in rows]

    def cancel(self, job_id: int) -> str:
        """The job's status after the request: `running` means it is stopping."""
        return self.api.post(f"/api/jobs/{job_id}/cancel")["status"]

    def retry(self, job_id: int) -> RemoteJob:
        return RemoteJob.from_json(self.api.post(f"/api/jobs/{job_id}/retry"))


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
