"""The dashboard's HTML pages: one module per page, one blueprint.

Views are thin: they read through `web.queries` and write through `shared.jobs`, like the
API. Pages render on the server; their scripts (web/static) poll the JSON API for live
updates and draw charts with uPlot.
"""

from flask import Blueprint

bp = Blueprint("pages", __name__)

# Importing the modules registers their routes on `bp`.
from web.pages import (  # noqa: E402, F401
    compare,
    datasets,
    frontier,
    generate,
    new_run,
    run,
    runs,
    samples,
    sweeps,
    workers,
)
