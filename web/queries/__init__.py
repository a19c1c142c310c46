"""What the dashboard reads, as plain JSON-ready dicts: pages and the API share these.

One module per domain; every function takes an open session and returns dicts and lists
only, so a page renders them and the API returns them unchanged:

    runs      the runs table: filter, sort, page; a run's row, progress and ETA
    run       one run: its jobs, checkpoints, sample sets and settings
    curves    a run's evaluation curves, bound and training loss, downsampled
    compare   several runs side by side, with paired samples
    samples   sample sets and their samples
    jobs      job rows
    workers   workers, queues, and ETAs from past runtimes
    datasets  corpus files under DATASET_ROOT

Query-string parsing is in `web.args`, errors in `web.errors`. A new domain is a new module
here, imported by the pages and API routes that show it.
"""
