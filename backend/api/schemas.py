"""Request and response bodies of the HTTP API (they make up the OpenAPI schema at /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong and, where it applies, the allowed range")


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    ready: bool = Field(description="true once the model is loaded and warmed up")


class LayerOut(BaseModel):
    index: int
    name: str
    start: int = Field(description="first filter id of the layer")
    stop: int = Field(description="one past the last filter id of the layer")


class InfoOut(BaseModel):
    model: str
    dataset: str
    device: str
    num_samples: int
    num_filters: int
    num_layers: int
    accuracy: float
    classes: list[str]
    layers: list[LayerOut]
    weights_sha256: str


class SampleItem(BaseModel):
    id: int
    label: int
    pred: int
    confidence: float = Field(description="probability of the predicted class")


class SampleList(BaseModel):
    total: int = Field(description="number of samples matching the filters")
    offset: int
    limit: int
    items: list[SampleItem]


class DetailOut(BaseModel):
    id: int
    label: int | None = Field(description="true class; null for an upload sent without one")
    pred: int
    probs: list[float]
    loss: float | None = Field(description="cross-entropy w.r.t. the true class; null without a label")
    correct: bool | None
    saliency_label: int = Field(description="class whose loss the saliency profile differentiates")
    target: dict = Field(description='{"class", "source": "label|chosen|predicted"}: why that class')
    label_name: str | None
    pred_name: str
    class_names: list[str]


class FilterOut(BaseModel):
    filter: int = Field(description="filter id (index into the profile)")
    layer: str = Field(description="parameter name of the conv weight")
    layer_index: int
    channel: int
    z: float = Field(description="standardized saliency")
    raw: float = Field(description="raw saliency: mean |dL/dW| over the filter's weights")


class ProfileOut(BaseModel):
    id: int
    z: list[float] = Field(description="standardized saliency of every filter, in filter-id order")
    layers: list[LayerOut]
    target: dict = Field(description='{"class", "source": "label|chosen|predicted"}: the loss\'s class and why')


class NeighborOut(BaseModel):
    id: int
    score: float = Field(description="cosine similarity in the chosen space (higher is closer)")
    label: int
    pred: int


class UploadOut(BaseModel):
    id: int = Field(description="id of the upload under /api/uploads/{id}/...")
    pred: int
    probs: list[float]
    label: int | None


class PruneIn(BaseModel):
    """Either ``filters`` (explicit ids) or ``top_k`` with a ``mode`` (the paper's comparison)."""

    filters: list[int] | None = Field(None, description="filter ids to switch off", min_length=1)
    top_k: int | None = Field(None, ge=1, description="switch off this many filters chosen by `mode`")
    mode: Literal["salient", "random", "least"] = Field(
        "salient", description="most salient, uniformly random (seeded) or least salient filters of this sample"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of `random` mode, so answers are reproducible")
    neighbors: int | None = Field(
        None, ge=0, le=100, description="also re-evaluate this many saliency-space neighbours (server default 10)"
    )

    @model_validator(mode="after")
    def _one_choice(self) -> "PruneIn":
        if (self.filters is None) == (self.top_k is None):
            raise ValueError("give exactly one of `filters` (a list of filter ids) or `top_k` (with `mode`)")
        return self


class Prediction(BaseModel):
    pred: int
    probs: list[float]


class PrunedNeighbor(BaseModel):
    id: int
    label: int
    before: Prediction
    after: Prediction


class PruneOut(BaseModel):
    filters: list[int] = Field(description="the filter ids that were switched off")
    before: Prediction
    after: Prediction
    neighbors: list[PrunedNeighbor]


class SummaryOut(BaseModel):
    confusion: list[list[int]] = Field(description="confusion[true][pred] sample counts")
    num_correct: int
    num_misclassified: int
    mean_profile_correct: list[float] = Field(description="mean standardized profile of correct samples")
    mean_profile_misclassified: list[float] = Field(description="mean standardized profile of mistakes")
    mean_raw: list[float] = Field(description="dataset mean of the raw saliency per filter")
