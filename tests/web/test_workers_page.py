"""The workers and queues page: workers online, queue depths, ETAs, reordering by priority."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from shared import job_reads, submit, workers
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import JobStatus, Worker, WorkerState, utcnow
from tests.web.conftest import csrf_token
from tests.web.seed import add_run


def _queue_train(name: str, priority: int = 0) -> int:
    spec = TrainSpec.from_preset("tiny", max_steps=5)
    return submit.submit_train(spec, name=name, priority=priority).id


def _queued_order(html: str, queue: str) -> list[int]:
    section = html.split(f'data-queue="{queue}"', 1)[1].split("</section>", 1)[0]
    return [int(x) for x in re.findall(r'<tr data-job="(\d+)"', section)]


def test_workers_and_queues_are_shown_with_positions_and_etas(client):
    add_run("finished", steps=400)  # a 400 s tiny run: 1 s per step
    workers.register("gpu-box@a100", ["gpu"], "cuda:0 <b>A100</b>")
    workers.register("cpu-1@laptop", ["cpu"], "cpu")
    workers.register("cpu-2@old", ["cpu"], "cpu")
    workers.set_state("cpu-2@old", WorkerState.OFFLINE)
    first = _queue_train("first")
    second = _queue_train("second")

    r = client.get("/workers")
    assert r.status_code == 200
    html = r.text
    assert "2 online of 3" in html
    assert 'data-worker="cpu-1@laptop"' in html and 'data-worker="gpu-box@a100"' in html
    assert "cuda:0 &lt;b&gt;A100&lt;/b&gt;" in html  # escaped
    assert '<span class="badge offline">offline</span>' in html
    cpu = html.split('data-queue="cpu"', 1)[1].split("</section>", 1)[0]
    assert '<span class="depth">2</span> queued' in cpu
    assert '<span class="online">1</span> worker online' in cpu
    assert _queued_order(html, "cpu") == [first, second]
    # One worker, nothing running: the first starts now, the second after the first's 5
    # steps at the finished tiny run's 1 s per step.
    rows = re.findall(r'<td class="eta">([^<]*)</td>', cpu)
    assert rows == ["now", "in 5s"]
    gpu = html.split('data-queue="gpu"', 1)[1].split("</section>", 1)[0]
    assert "Nothing queued." in gpu
    assert 'name="csrf_token"' in cpu
    assert "/static/workers.js" in html and 'data-api="/api/workers"' in html


def test_training_etas_come_from_finished_runs_of_the_same_preset_and_steps(client):
    """A 40-step tiny run is estimated by the 40 s tiny run, not by the median of every
    training job (a 2000 s minilm run would make it 17 minutes); a step count never run
    before is estimated from the preset's seconds per step."""
    add_run("tiny done", steps=40, preset="tiny")  # 40 s
    add_run("minilm done", steps=2000, eval_every=1000, log_every=500, preset="minilm")  # 2000 s
    workers.register("cpu-1@laptop", ["cpu"], "cpu")
    submit.submit_train(TrainSpec.from_preset("tiny", max_steps=40), name="a")
    submit.submit_train(TrainSpec.from_preset("tiny", max_steps=80), name="b")
    submit.submit_train(TrainSpec.from_preset("tiny", max_steps=40), name="c")
    submit.submit_train(TrainSpec.from_preset("minilm", max_steps=2000), name="d")
    cpu = client.get("/workers").text.split('data-queue="cpu"', 1)[1].split("</section>", 1)[0]
    etas = re.findall(r'<td class="eta">([^<]*)</td>', cpu)
    # a starts now; b after a's 40 s; c after 40 + 80 x 1 s/step; d after c's 40 s more.
    assert etas == ["now", "in 40s", "in 2m 00s", "in 2m 40s"]


def test_lost_and_drained_workers_are_not_counted_online(client):
    workers.register("lost@box", ["cpu"], "cpu")
    workers.register("drained@box", ["cpu"], "cpu")
    workers.register("fine@box", ["cpu"], "cpu")
    with session_scope() as s:
        s.execute(
            update(Worker)
            .where(Worker.name == "lost@box")
            .values(last_heartbeat=utcnow() - timedelta(hours=1))
        )
    workers.request_drain("drained@box")
    workers.set_state("drained@box", WorkerState.OFFLINE)
    job = _queue_train("waiting")

    html = client.get("/workers").text
    assert "1 online of 3" in html
    row = html.split('data-worker="lost@box"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="badge lost">lost</span>' in row and "1h 00m ago" in row
    assert '<span class="badge drained">drained</span>' in html
    cpu = html.split('data-queue="cpu"', 1)[1].split("</section>", 1)[0]
    assert '<span class="online">1</span> worker online' in cpu
    assert _queued_order(html, "cpu") == [job]


def test_a_queue_without_workers_says_so(client):
    job = _queue_train("lonely")
    html = client.get("/workers").text
    assert _queued_order(html, "cpu") == [job]
    assert "no worker online" in html
    assert "No worker has reported yet" in html


def test_a_gpu_queue_served_only_by_cpu_workers_says_it_runs_on_the_cpu(client):
    """`up` on a laptop: its one worker takes both queues and has no GPU."""
    workers.register("celery@laptop", ["cpu", "gpu"], "cpu")
    html = client.get("/workers").text
    gpu = html.split('data-queue="gpu"', 1)[1].split("</section>", 1)[0]
    assert '<span class="online">1</span> worker online' in gpu
    assert "No GPU behind this queue: its worker has none" in gpu and "runs on the CPU" in gpu
    cpu = html.split('data-queue="cpu"', 1)[1].split("</section>", 1)[0]
    assert "No GPU" not in cpu
    api = client.get("/api/workers").json
    notes = {q["name"]: q["note"] for q in api["queues"]}
    assert notes["cpu"] is None and "runs on the CPU" in notes["gpu"]

    workers.register("gpu-box@a100", ["gpu"], "cuda")  # a real GPU worker joins: no note
    gpu = client.get("/workers").text.split('data-queue="gpu"', 1)[1].split("</section>", 1)[0]
    assert '<span class="online">2</span> workers online' in gpu and "No GPU" not in gpu


def test_changing_priority_reorders_the_queue(client):
    workers.register("cpu-1@laptop", ["cpu"], "cpu")
    first = _queue_train("first")
    second = _queue_train("second")
    page = client.get("/workers").text
    assert _queued_order(page, "cpu") == [first, second]

    r = client.post(
        f"/jobs/{second}/priority", data={"priority": "10", "csrf_token": csrf_token(page)}
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/workers")
    page = client.get("/workers").text
    assert f"Job {second} now has priority 10." in page
    assert _queued_order(page, "cpu") == [second, first]
    assert job_reads.get_job(second).priority == 10


def test_priority_errors_are_flashed_and_change_nothing(client):
    finished = add_run("done")
    queued = _queue_train("queued")
    token = csrf_token(client.get("/workers").text)
    done_job = job_reads.list_jobs(status=JobStatus.SUCCEEDED)[0].id
    assert job_reads.get_job(done_job).run_id == finished

    cases = [
        (done_job, "5", "only queued jobs can be reordered"),
        (queued, "5000", "must be between -1000 and 1000"),
        (queued, "soon", "Priority must be a whole number"),
        (999, "1", "no job with id 999"),
    ]
    for job_id, value, message in cases:
        r = client.post(
            f"/jobs/{job_id}/priority",
            data={"priority": value, "csrf_token": token},
            follow_redirects=True,
        )
        assert r.status_code == 200
        assert message in r.text, (job_id, value)
        assert 'class="flash error"' in r.text
    assert job_reads.get_job(queued).priority == 0


def test_priority_form_needs_csrf_and_login(app, client):
    job = _queue_train("guarded")
    r = client.post(f"/jobs/{job}/priority", data={"priority": "3"})
    assert r.status_code == 400  # no CSRF token
    anonymous = app.test_client()
    r = anonymous.post(f"/jobs/{job}/priority", data={"priority": "3"})
    assert r.status_code in (302, 400)
    assert job_reads.get_job(job).priority == 0
    r = anonymous.get("/workers")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
