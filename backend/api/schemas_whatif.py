"""Request and response bodies of the what-if routes (masks, one-step fix, groups, jobs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from .schemas import Prediction, PrunedNeighbor

ID = Annotated[int, Field(ge=0, le=2**53)]  # ids and classes: bounded, so no huge number reaches numpy
SEED = Field(0, ge=0, le=2**32 - 1, description="seed of `random` mode, so answers are reproducible")


class TargetOut(BaseModel):
    class_: int = Field(alias="class", description="the class the profile's loss is taken against")
    source: Literal["label", "chosen", "predicted"] = Field(
        description="label: the true label; chosen: ?target=; predicted: an upload without a label")


class MaskIn(BaseModel):
    percent: float = Field(5.0, gt=0, le=100, description="percent of the image's pixels to mask")
    mode: Literal["salient", "random"] = Field("salient", description="highest input-space map pixels, or random")
    top_k: int = Field(10, ge=1, description="filters boosted for the input-space map (and shown before/after)")
    boost: float = Field(100.0, gt=0, le=1e6, description="factor applied to the top_k entries")
    seed: int = SEED


class MaskedFilter(BaseModel):
    filter: int
    z_before: float
    z_after: float = Field(description="standardized saliency of the masked image (same target class)")


class MaskOut(BaseModel):
    before: Prediction
    after: Prediction
    masked_pixels: int
    filters: list[MaskedFilter] = Field(description="the image's top_k filters, most salient first")
    target: TargetOut


class FinetuneIn(BaseModel):
    top_k: int = Field(25, ge=1, description="filters whose weights take the step")
    mode: Literal["salient", "random", "least"] = Field("salient", description="which filters take the step")
    step: float = Field(0.001, gt=0, le=10, description="plain SGD step size")
    neighbors: int = Field(10, ge=0, le=100, description="nearest misclassified samples in saliency space")
    seed: int = SEED


class FinetuneOut(BaseModel):
    filters: list[int]
    step: float = Field(description="the step size applied (random/least: scaled to the salient filters' norm)")
    before: Prediction
    after: Prediction
    neighbors: list[PrunedNeighbor]
    target: TargetOut


class GroupIn(BaseModel):
    """The group (exactly one of sample_ids, confusion, failure_mode) and the intervention's parameters."""

    sample_ids: list[ID] | None = Field(None, min_length=1, max_length=1000)
    confusion: tuple[ID, ID] | None = Field(None, description="[true class, predicted class]")
    failure_mode: ID | None = Field(None, description="a failure mode's cluster id")
    top_k: int = Field(10, ge=1, description="filters shared by the group (highest mean z)")
    mode: Literal["salient", "random", "least"] = "salient"
    step: float = Field(0.001, gt=0, le=10, description="finetune only: plain SGD step size")
    neighbors: int = Field(10, ge=0, le=100, description="saliency neighbours of the group re-evaluated")
    seed: int = SEED

    @model_validator(mode="after")
    def _one_group(self) -> "GroupIn":
        given = [self.sample_ids is not None, self.confusion is not None, self.failure_mode is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of `sample_ids`, `confusion` ([true, pred]) or `failure_mode`")
        return self


class ExportIn(GroupIn):
    intervention: Literal["prune", "finetune"]


class Accuracy(BaseModel):
    before: float
    after: float


class GroupOut(BaseModel):
    intervention: Literal["prune", "finetune"]
    filters: list[int]
    group: list[PrunedNeighbor]
    group_accuracy: Accuracy
    neighbors: list[PrunedNeighbor]
    neighbors_accuracy: Accuracy | None
    dataset_accuracy: Accuracy | None = Field(description="null while the dataset job runs (see `dataset_job`)")
    dataset_job: str | None = Field(description="id of the background job computing dataset_accuracy")


class RunIn(BaseModel):
    quick: bool = Field(True, description="a seeded subset (about 3 minutes for all on the demo on 2 cores)")


class JobOut(BaseModel):
    id: str
    kind: str
    title: str
    state: Literal["running", "done", "failed", "cancelled"]
    progress: float = Field(description="0..1")
    message: str
    started: float
    finished: float | None
    result: Any = None
    error: str | None
