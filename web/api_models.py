"""Request bodies of the JSON API, validated by pydantic; their JSON schemas go into the
OpenAPI document, so the description and the checks are the same code."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)

from shared import kinds
from shared.contracts.frontier import FrontierSpec
from shared.contracts.labels import MAX_NAME_CHARS, MAX_TAG_CHARS, MAX_TAGS, check_name, check_tag
from shared.contracts.strict import no_boolean_numbers
from shared.contracts.sweep import SweepSpec
from shared.kinds import Kind

Queue = Literal["cpu", "gpu"]
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(check_name)]
Tag = Annotated[str, Field(max_length=MAX_TAG_CHARS), AfterValidator(check_tag)]


class _Body(BaseModel):
    """A request body: unknown fields refused, and no boolean or NaN for a number."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return no_boolean_numbers(value, cls.model_fields[info.field_name].annotation)


class SubmitTrain(_Body):
    """Queue a training run. `spec` holds TrainSpec fields; those left out come from
    `preset` (see GET /api/schema/train for every field, its limits and its help)."""

    preset: str = Field("minilm", description="Preset the spec starts from.")
    spec: dict[str, Any] = Field(
        default_factory=dict, description="TrainSpec fields that override the preset."
    )
    name: Name | None = Field(
        None, description="Shown in lists: no control or bidirectional-override characters."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    queue: Queue | None = Field(None, description="Default: the spec's device's queue.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first.")


@cache
def submit_model(kind: Kind) -> type[BaseModel]:
    """The body of `POST /api/<route>` for a job kind of the table (`shared.kinds`):
    `Submit<Kind>` with its spec, a queue and a priority."""
    return create_model(
        f"Submit{kind.name.title()}",
        __base__=_Body,
        __doc__=f"Queue a {kind.name} job: {kind.help}.",
        spec=(kind.spec, ...),
        queue=(Queue | None, Field(None, description="Default: the spec's device's queue.")),
        priority=(int, Field(0, ge=-1000, le=1000, description="Higher runs first.")),
    )


SubmitGenerate = submit_model(kinds.get("generate"))
SubmitEvaluate = submit_model(kinds.get("evaluate"))


class SubmitFrontier(_Body):
    """Queue a speed-quality frontier: a generation job per checkpoint over the grid."""

    spec: FrontierSpec
    queue: Queue | None = None
    priority: int = Field(0, ge=-1000, le=1000)


class FrontierSubmitted(BaseModel):
    frontier: str = Field(description="Its name: GET /api/frontiers/{name} has its points.")
    job_ids: list[int]
    sample_sets: int = Field(description="Sample sets its jobs will write.")


class PatchJob(_Body):
    """Change a queued job."""

    priority: int = Field(ge=-1000, le=1000)


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    status: int
    message: str
    fields: list[FieldError] = []


class Error(BaseModel):
    error: ErrorBody


class Submitted(BaseModel):
    job_id: int
    run_id: int | None = None
    queue: str
    sample_sets: int | None = Field(None, description="Generation: sets the job will write.")


class SubmitSweep(_Body):
    """Create a sweep and queue its first trials. `spec` is the sweep file as JSON
    (GET /api/schema/sweep)."""

    spec: SweepSpec


class SweepSubmitted(BaseModel):
    sweep_id: int
    job_ids: list[int]


class ExtendSweep(_Body):
    trials: int = Field(..., ge=1, le=10_000, description="Trials added to the cap.")
