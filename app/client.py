"""The only place in the UI that speaks HTTP: typed calls to the backend's /api routes.

Every failure (4xx/5xx answer, refused connection, timeout, malformed JSON) becomes one ``BackendError``
with a readable message, so callbacks can show it next to the control that caused it instead of crashing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import httpx

Kind = Literal["samples", "uploads"]


UNREACHABLE = ("cannot reach the analysis server: it may be starting or stopped (if you run it yourself, start it "
               "with `pss serve --artifacts <your artifacts folder>`). This page retries by itself (see the banner "
               "at the top)")


class BackendError(Exception):
    """The backend refused or could not answer; ``status`` is the HTTP code (None: no answer at all)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Subject:
    """A sample of the dataset (``kind="samples"``) or an uploaded image (``kind="uploads"``)."""

    kind: Kind
    id: str
    target: int | None = None  # explain against this class (?target=) instead of the true label

    @property
    def path(self) -> str:
        return f"/api/{self.kind}/{self.id}"

    def params(self, **params: Any) -> dict[str, Any]:
        """A request's query parameters, with the subject's ``target`` when it has one."""
        return params if self.target is None else {**params, "target": self.target}


class SampleItem(TypedDict):
    id: int
    label: int
    pred: int
    confidence: float


class SamplePage(TypedDict):
    total: int
    items: list[SampleItem]


class Filter(TypedDict):
    filter: int
    layer: str
    channel: int
    z: float
    raw: float


class Neighbor(TypedDict):
    id: int
    score: float
    label: int
    pred: int


def _detail(response: httpx.Response) -> str:
    """FastAPI's ``{"detail": ...}`` as one line (422 answers carry a list of field errors)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p not in ("query", "body", "path"))
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    if not detail:
        detail = response.reason_phrase or "error"
    return str(detail)


class BackendClient:
    """Typed methods for every backend route. Thread-safe (one pooled ``httpx.Client``)."""

    MAPS_KEPT = 32  # recent input-saliency maps kept (and shared with requests that arrive meanwhile)
    MAPS_TTL_S = 300.0

    def __init__(self, base_url: str, timeout: float = 10.0, slow_timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.slow_timeout = slow_timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=3.0),
                                  limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self._info: tuple[float, dict] | None = None
        self._lock = threading.Lock()
        # two pools, so that slow map requests never hold up the quick calls a page needs
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pss-client")
        self._map_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pss-maps")
        self._maps: OrderedDict[tuple, tuple[float, Future]] = OrderedDict()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._map_pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def parallel(self, *calls):
        """Runs independent zero-argument calls side by side; returns their results in order (the first
        BackendError raised is re-raised)."""
        futures = [self._pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs) -> httpx.Response:
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=3.0)
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise BackendError(f"the backend did not answer in time ({method} {path})", 504) from None
        except httpx.HTTPError:
            with self._lock:
                self._info = None  # what the backend said before an outage may not hold after it
            raise BackendError(UNREACHABLE, None) from None
        if response.status_code >= 400:
            message = _detail(response)
            if response.status_code == 503:
                retry = response.headers.get("Retry-After")
                message = f"the backend is busy: {message}" + (f" (retry in {retry} s)" if retry else "")
            raise BackendError(message, response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"the backend sent malformed JSON for {path}", response.status_code) from None

    def _png(self, path: str, **kwargs) -> bytes:
        response = self._request("GET", path, **kwargs)
        if not response.headers.get("content-type", "").startswith("image/"):
            raise BackendError(f"the backend sent no image for {path}", response.status_code)
        return response.content

    # -- dataset-level routes ---------------------------------------------------------------------

    def health(self) -> dict:
        return self._json("GET", "/api/health")

    def info(self, max_age: float = 60.0) -> dict:
        """Model, dataset, accuracy, class names and layers; cached briefly since it never changes."""
        with self._lock:
            if self._info is not None and time.monotonic() - self._info[0] < max_age:
                return self._info[1]
        info = self._json("GET", "/api/info")
        with self._lock:
            self._info = (time.monotonic(), info)
        return info

    def summary(self) -> dict:
        """Dataset-wide aggregates for the overview (confusion matrix, average profiles)."""
        return self._json("GET", "/api/summary", timeout=self.slow_timeout)

    def experiments(self, name: str | None = None) -> dict:
        """What `pss experiments` wrote: the listing, or one experiment's results."""
        path = "/api/experiments" if name is None else f"/api/experiments/{name}"
        return self._json("GET", path, timeout=self.slow_timeout)

    def run_experiment(self, name: str, quick: bool = True) -> dict:
        """Starts an experiment (or ``all``) in the background; returns the job (409 if one is running)."""
        return self._json("POST", f"/api/experiments/{name}/run", json={"quick": quick})

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/api/jobs/{job_id}")

    def jobs(self, kind: str | None = None) -> list[dict]:
        """The latest job of each kind (or of ``kind``)."""
        return self._json("GET", "/api/jobs", params={"kind": kind} if kind else None)

    def cancel_job(self, job_id: str) -> dict:
        return self._json("DELETE", f"/api/jobs/{job_id}")
    def filter_detail(self, index: int) -> dict:
        """One filter across the dataset (issue 12): ``top_samples`` [{id, z}] best first, and more; a 404
        when this backend has no such index yet."""
        return self._json("GET", f"/api/filters/{int(index)}")

    def samples(
        self,
        *,
        correct: bool | None = None,
        true_class: int | None = None,
        pred_class: int | None = None,
        sort: Literal["id", "loss", "confidence"] = "id",
        offset: int = 0,
        limit: int = 50,
    ) -> SamplePage:
        """One page of the listing; ``sort`` by loss or confidence puts the highest first."""
        params: dict[str, Any] = {"offset": offset, "limit": limit, "sort": sort}
        if correct is not None:
            params["correct"] = "true" if correct else "false"
        if true_class is not None:
            params["true_class"] = true_class
        if pred_class is not None:
            params["pred_class"] = pred_class
        return self._json("GET", "/api/samples", params=params)

    # -- per-sample routes (dataset samples and uploads alike) ------------------------------------

    def sample(self, subject: Subject) -> dict:
        return self._json("GET", subject.path, params=subject.params())

    def image_png(self, subject: Subject) -> bytes:
        return self._png(f"{subject.path}/image.png")

    def filters(self, subject: Subject, top: int = 20) -> list[Filter]:
        return self._json("GET", f"{subject.path}/filters", params=subject.params(top=top))

    def profile(self, subject: Subject) -> dict:
        return self._json("GET", f"{subject.path}/profile", params=subject.params())

    def input_saliency_png(self, subject: Subject, top_k: int = 10, boost: float = 100.0) -> bytes:
        """The overlay PNG; joins a prefetch of the same map that is still running instead of asking twice."""
        return self._map_future(subject, top_k, boost).result()

    def prefetch_input_saliency(self, subject: Subject, top_k: int = 10, boost: float = 100.0) -> None:
        """Starts computing a map in the background (e.g. while the browser is still drawing the page)."""
        self._map_future(subject, top_k, boost)

    def _map_future(self, subject: Subject, top_k: int, boost: float) -> Future:
        key = (subject, int(top_k), float(boost))
        now = time.monotonic()
        with self._lock:
            entry = self._maps.get(key)
            if entry is not None:
                started, future = entry
                failed = future.done() and future.exception() is not None
                if not failed and now - started < self.MAPS_TTL_S:
                    self._maps.move_to_end(key)
                    return future
            future = self._map_pool.submit(self._png, f"{subject.path}/input-saliency.png",
                                       params=subject.params(top_k=int(top_k), boost=float(boost)),
                                       timeout=self.slow_timeout)
            self._maps[key] = (now, future)
            while len(self._maps) > self.MAPS_KEPT:
                self._maps.popitem(last=False)
        return future

    def neighbors(
        self,
        subject: Subject,
        *,
        k: int = 10,
        layers: tuple[int, int] | None = None,
        space: Literal["saliency", "feature"] = "saliency",
        misclassified_only: bool = False,
    ) -> list[Neighbor]:
        params: dict[str, Any] = {"k": k, "space": space}
        if layers is not None:
            params["layers"] = f"{layers[0]}:{layers[1]}"
        if misclassified_only:
            params["misclassified_only"] = "true"
        return self._json("GET", f"{subject.path}/neighbors", params=subject.params(**params))

    def prune(
        self,
        subject: Subject,
        *,
        filters: list[int] | None = None,
        top_k: int | None = None,
        mode: Literal["salient", "random", "least"] = "salient",
        seed: int = 0,
    ) -> dict:
        """Either explicit ``filters`` or the ``top_k`` by ``mode`` (``seed``: which random draw); before/after for
        the sample and neighbours, and ``filters``: the ids that were switched off."""
        if (filters is None) == (top_k is None):
            raise ValueError("give either filters or top_k")
        body: dict[str, Any] = {"filters": list(filters)} if filters is not None else {"top_k": top_k, "mode": mode}
        if filters is None and mode == "random" and seed:
            body["seed"] = int(seed)
        return self._json("POST", f"{subject.path}/prune", json=body, params=subject.params(),
                          timeout=self.slow_timeout)

    def mask(self, subject: Subject, *, percent: float, mode: Literal["salient", "random"] = "salient",
             top_k: int = 10, boost: float = 100.0, seed: int = 0) -> dict:
        """Masks ``percent``% of the pixels; prediction and top filters' z before/after."""
        body = {"percent": percent, "mode": mode, "top_k": top_k, "boost": boost, "seed": seed}
        return self._json("POST", f"{subject.path}/mask", json=body, params=subject.params(),
                          timeout=self.slow_timeout)

    def mask_png(self, subject: Subject, *, percent: float, mode: Literal["salient", "random"] = "salient",
                 top_k: int = 10, boost: float = 100.0, seed: int = 0) -> bytes:
        params = subject.params(percent=percent, mode=mode, top_k=top_k, boost=boost, seed=seed)
        return self._png(f"{subject.path}/mask.png", params=params, timeout=self.slow_timeout)

    def finetune(self, subject: Subject, *, top_k: int, mode: Literal["salient", "random", "least"] = "salient",
                 step: float = 0.001, neighbors: int = 10, seed: int = 0) -> dict:
        """One gradient step on ``top_k`` filters; the sample's and its neighbours' predictions before/after."""
        body = {"top_k": top_k, "mode": mode, "step": step, "neighbors": neighbors, "seed": seed}
        return self._json("POST", f"{subject.path}/finetune", json=body, params=subject.params(),
                          timeout=self.slow_timeout)

    def typicality(self, subject: Subject) -> dict:
        """An upload's ``{nn_similarity, percentile}``: how close its nearest dataset image is in feature space,
        against the dataset's own images (a low percentile: unlike the dataset)."""
        return self._json("GET", f"{subject.path}/typicality")

    def upload(self, filename: str, content: bytes, label: int | None = None) -> dict:
        """Send an image; returns ``{id, pred, probs}``. The id then works with ``Subject("uploads", id)``."""
        data = {"label": str(label)} if label is not None else None
        return self._json(
            "POST",
            "/api/uploads",
            files={"file": (filename or "upload", content, "application/octet-stream")},
            data=data,
            timeout=self.slow_timeout,
        )

    def filter_distribution(self, index: int, bins: int = 40) -> dict:
        """One filter's z histogram over the correct and the misclassified samples (shared ``edges``)."""
        return self._json("GET", f"/api/filters/{int(index)}/distribution", params={"bins": int(bins)})

    def filter_map_png(self, subject: Subject, filters: list[int]) -> bytes:
        """The input-space map for boosting exactly ``filters`` (the pixels that drive them)."""
        return self._png(f"{subject.path}/input-saliency.png",
                         params=subject.params(filters=",".join(str(int(f)) for f in filters)),
                         timeout=self.slow_timeout)

    # -- confusions and group what-ifs (issues 12 and 13) ----------------------------------------------

    def confusion(self, true_class: int, pred_class: int, top: int = 20, profile: bool = False) -> dict:
        """One (true, predicted) pair: ``count``, ``sample_ids``, ``top_filters``; ``profile``: also its mean
        profile over every filter and its true class's correct samples' (``class_profile``, may be None)."""
        params: dict[str, Any] = {"top": top}
        if profile:
            params["profile"] = "true"
        return self._json("GET", f"/api/confusions/{int(true_class)}/{int(pred_class)}", params=params,
                          timeout=self.slow_timeout)

    def group_intervention(self, intervention: Literal["prune", "finetune"], group: dict, **params: Any) -> dict:
        """Prune or fine-tune the filters a group shares (``group``: ``{"confusion": [t, p]}`` or
        ``{"sample_ids": [...]}``); ``params``: top_k, mode, step, neighbors, seed. The dataset's accuracy
        after may come later, from the job ``dataset_job``."""
        return self._json("POST", f"/api/groups/{intervention}", json={**group, **params},
                          timeout=self.slow_timeout)

    def group_export(self, intervention: Literal["prune", "finetune"], group: dict, **params: Any) -> bytes:
        """The patched weights of the same change, as safetensors bytes (the served model never changes)."""
        body = {**group, **params, "intervention": intervention}
        return self._request("POST", "/api/groups/export", json=body, timeout=self.slow_timeout).content

    # -- the map of the mistakes (issue 12) --------------------------------------------------------

    def mistake_map(self, space: Literal["saliency", "feature"]) -> dict:
        """``{method, params, ids, x, y, cluster}``: every mistake's 2-D position in ``space``, one array per field."""
        return self._json("GET", "/api/map", params={"space": space, "format": "columns"}, timeout=self.slow_timeout)

    def failure_modes(self) -> list[dict]:
        """``[{cluster, size, confusions, top_filters, sample_ids}]``, largest mode first."""
        return self._json("GET", "/api/failure-modes", timeout=self.slow_timeout)

    def selection_filters(self, sample_ids: list[int], top: int = 10) -> dict:
        """``{count, top_filters: [{filter, layer, channel, mean_z}]}``: the filters a set of samples shares."""
        return self._json("POST", "/api/selection/filters", json={"sample_ids": [int(i) for i in sample_ids], "top": top},
                          timeout=self.slow_timeout)
