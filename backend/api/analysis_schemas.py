"""Answers of the filter, confusion, map and failure-mode routes (issue 12)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FilterRef(BaseModel):
    filter: int
    layer: str = Field(description="the weight's parameter name")
    channel: int


class RankedFilter(FilterRef):
    mean_z: float = Field(description="mean standardized saliency over the group's samples")


class SampleZ(BaseModel):
    id: int
    z: float


class SampleActivation(BaseModel):
    id: int
    activation: float | None = Field(description="max over positions of the filter's output channel; null for a "
                                                "layer that does not run in eval mode (e.g. an auxiliary head)")


class ClassZ(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: int = Field(alias="class")
    mean_z: float = Field(description="mean standardized saliency over the class's correct samples")


class ConfusionZ(BaseModel):
    true: int
    pred: int
    count: int
    mean_z: float = Field(description="mean standardized saliency over the pair's mistakes")


class FilterPageOut(FilterRef):
    raw_mean: float
    raw_std: float
    top_samples: list[SampleZ] = Field(description="largest standardized saliency first (ties: smaller id)")
    top_activating: list[SampleActivation] = Field(description="largest activation first (ties: smaller id)")
    classes: list[ClassZ] = Field(description="classes with correct samples, largest mean_z first")
    confusions: list[ConfusionZ] = Field(description="(true, pred) pairs with mistakes, largest mean_z first")


class ConfusionOut(BaseModel):
    count: int
    sample_ids: list[int] = Field(description="the pair's mistakes, ascending")
    top_filters: list[RankedFilter] = Field(description="largest mean_z first (ties: smaller filter)")
    profile: list[float] | None = Field(None, description="with ?profile=true: the pair's mean standardized "
                                                          "profile, one value per filter (its fingerprint)")
    class_profile: list[float] | None = Field(None, description="with ?profile=true: the mean standardized profile "
                                                                "of the true class's correct samples (null: none)")


class MapPoint(BaseModel):
    id: int
    x: float
    y: float
    cluster: int = Field(description="the mistake's failure mode")


class MapOut(BaseModel):
    method: str | None
    params: dict
    points: list[MapPoint]


class MapColumnsOut(BaseModel):
    method: str | None
    params: dict
    ids: list[int] = Field(description="the mistakes, ascending")
    x: list[float]
    y: list[float]
    cluster: list[int] = Field(description="each mistake's failure mode")
    label: list[int] = Field(description="each mistake's true class")
    pred: list[int] = Field(description="each mistake's predicted class")


class PairCount(BaseModel):
    true: int
    pred: int
    count: int


class FailureModeOut(BaseModel):
    cluster: int
    size: int
    confusions: list[PairCount] = Field(description="by count, then pair")
    top_filters: list[RankedFilter]
    sample_ids: list[int]


class FilterDistributionOut(FilterRef):
    edges: list[float] = Field(description="bins + 1 shared edges, from the smallest to the largest z of the filter")
    correct: list[int] = Field(description="correctly classified samples per bin")
    misclassified: list[int] = Field(description="misclassified samples per bin")
    correct_mean: float | None = Field(description="mean z over the correct samples (null: none)")
    misclassified_mean: float | None = Field(description="mean z over the misclassified samples (null: none)")


class SelectionIn(BaseModel):
    sample_ids: list[int] = Field(description="the selected samples (at most 5,000; repeated ids count once)")
    top: int = Field(20, description="how many filters (at most the model's filter count)")


class SelectionFiltersOut(BaseModel):
    count: int = Field(description="distinct samples averaged over")
    top_filters: list[RankedFilter] = Field(description="largest mean standardized saliency over the selection "
                                                        "first (ties: smaller filter)")
