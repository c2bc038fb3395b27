"""A tiny real HTTP server on 127.0.0.1 that answers the backend's routes from a small synthetic dataset.

It exists for the client and callback unit tests only (the browser tests use the real backend). Each
request is recorded so tests can check what the UI asked for; ``overrides`` maps a path to a canned
``(status, json_body)`` answer to simulate errors.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

CLASSES = ["cat", "dog", "bird"]
LAYERS = [("conv1.weight", 0, 4), ("layer1.conv.weight", 4, 10), ("fc_conv.weight", 10, 12)]
NUM_FILTERS = 12


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class FakeBackend:
    def __init__(self, num_samples: int = 30):
        rng = np.random.default_rng(0)
        self.labels = rng.integers(0, 3, num_samples)
        self.preds = np.where(rng.random(num_samples) < 0.6, self.labels, (self.labels + 1) % 3)
        self.confidence = np.round(rng.uniform(0.34, 1.0, num_samples), 3)
        self.z = rng.normal(size=(num_samples, NUM_FILTERS))
        self.raw = np.abs(rng.normal(size=(num_samples, NUM_FILTERS))) * 1e-3
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.overrides: dict[str, tuple[int, object]] = {}
        self.delay = 0.0
        self.uploads = 0
        self.jobs: dict[str, dict] = {}  # experiment runs started through the API, by id
        self.dataset_jobs = False  # group what-ifs answer the dataset's accuracy through a job (a large dataset)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeBackend":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- route logic -------------------------------------------------------------------------
    def info(self) -> dict:
        return {"model": "fake", "dataset": "synthetic", "num_samples": len(self.labels),
                "num_filters": NUM_FILTERS, "num_layers": len(LAYERS), "accuracy": float(np.mean(self.labels == self.preds)),
                "classes": CLASSES, "weights_sha256": "0" * 64,
                "layers": [{"index": i, "name": n, "start": a, "stop": b} for i, (n, a, b) in enumerate(LAYERS)]}

    def summary(self) -> dict:
        confusion = np.zeros((3, 3), dtype=int)
        np.add.at(confusion, (self.labels, self.preds), 1)
        correct = self.labels == self.preds
        return {"confusion": confusion.tolist(), "num_correct": int(correct.sum()),
                "num_misclassified": int((~correct).sum()), "mean_profile_correct": self.z[correct].mean(0).tolist(),
                "mean_profile_misclassified": self.z[~correct].mean(0).tolist(), "mean_raw": self.raw.mean(0).tolist()}

    def listing(self, q: dict) -> dict:
        ids = np.arange(len(self.labels))
        if "correct" in q:
            ids = ids[(self.labels[ids] == self.preds[ids]) == (q["correct"] == "true")]
        if "true_class" in q:
            ids = ids[self.labels[ids] == int(q["true_class"])]
        if "pred_class" in q:
            ids = ids[self.preds[ids] == int(q["pred_class"])]
        if q.get("sort") == "confidence":
            ids = ids[np.argsort(-self.confidence[ids], kind="stable")]
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 50))
        items = [{"id": int(i), "label": int(self.labels[i]), "pred": int(self.preds[i]),
                  "confidence": float(self.confidence[i])} for i in ids[offset:offset + limit]]
        return {"total": int(ids.size), "offset": offset, "limit": limit, "items": items}

    def detail(self, i: int) -> dict:
        probs = np.full(3, (1 - self.confidence[i]) / 2)
        probs[self.preds[i]] = self.confidence[i]
        return {"id": i, "label": int(self.labels[i]), "pred": int(self.preds[i]), "probs": probs.tolist(),
                "loss": 0.5, "correct": bool(self.labels[i] == self.preds[i]), "saliency_label": int(self.labels[i]),
                "label_name": CLASSES[self.labels[i]], "pred_name": CLASSES[self.preds[i]], "class_names": CLASSES}

    def top_filters(self, i: int, top: int) -> list[dict]:
        order = np.argsort(-self.z[i], kind="stable")[:top]
        out = []
        for f in order:
            layer = next(k for k, (_, a, b) in enumerate(LAYERS) if a <= f < b)
            out.append({"filter": int(f), "layer": LAYERS[layer][0], "layer_index": layer,
                        "channel": int(f - LAYERS[layer][1]), "z": float(self.z[i, f]), "raw": float(self.raw[i, f])})
        return out

    def neighbors(self, i: int, q: dict) -> list[dict]:
        k = int(q.get("k", 10))
        z = self.z
        if "layers" in q:
            start, stop = (int(v) for v in q["layers"].split(":"))
            z = z[:, LAYERS[start][1]:LAYERS[stop - 1][2]]
        norm = z / np.linalg.norm(z, axis=1, keepdims=True)
        scores = norm @ norm[i]
        order = [int(j) for j in np.argsort(-scores, kind="stable") if j != i]
        if q.get("misclassified_only") == "true":
            order = [j for j in order if self.labels[j] != self.preds[j]]
        return [{"id": j, "score": float(scores[j]), "label": int(self.labels[j]), "pred": int(self.preds[j])}
                for j in order[:k]]

    def prune(self, i: int, body: dict) -> dict:
        filters = sorted(body["filters"]) if body.get("filters") else list(range(int(body["top_k"])))
        before = self.detail(i)
        after_probs = np.roll(before["probs"], len(filters))
        nb = self.neighbors(i, {"k": 3})
        return {"filters": filters, "before": {"pred": before["pred"], "probs": before["probs"]},
                "after": {"pred": int(np.argmax(after_probs)), "probs": after_probs.tolist()},
                "neighbors": [{"id": n["id"], "label": n["label"], "before": {"pred": n["pred"], "probs": [0.2, 0.3, 0.5]},
                               "after": {"pred": n["label"], "probs": [0.5, 0.3, 0.2]}} for n in nb]}

    def target(self, i: int, q: dict) -> dict:
        if "target" in q and int(q["target"]) != self.labels[i]:
            return {"class": int(q["target"]), "source": "chosen"}
        return {"class": int(self.labels[i]), "source": "label"}

    def mask(self, i: int, body: dict, q: dict) -> dict:
        before = self.detail(i)
        after_probs = np.roll(before["probs"], 1)
        top = self.top_filters(i, int(body.get("top_k", 10)))
        return {"before": {"pred": before["pred"], "probs": before["probs"]},
                "after": {"pred": int(np.argmax(after_probs)), "probs": after_probs.tolist()},
                "masked_pixels": int(round(64 * float(body.get("percent", 5)) / 100)) or 1,
                "filters": [{"filter": f["filter"], "z_before": f["z"], "z_after": f["z"] / 2} for f in top],
                "target": self.target(i, q)}

    def finetune(self, i: int, body: dict, q: dict) -> dict:
        answer = self.prune(i, {"top_k": body["top_k"]})
        return {**answer, "step": float(body.get("step", 0.001)), "target": self.target(i, q)}

    def run_experiment(self, name: str) -> tuple[int, str, bytes]:
        running = [j for j in self.jobs.values() if j["state"] == "running"]
        if running:
            return 409, "application/json", json.dumps({"detail": f"already running ({running[0]['id']})"}).encode()
        job = {"id": f"job{len(self.jobs)}", "kind": "experiments", "title": f"{name}, quick", "state": "running",
               "progress": 0.25, "message": f"running {name}", "started": 0.0, "finished": None, "result": None,
               "error": None}
        self.jobs[job["id"]] = job
        return 202, "application/json", json.dumps(job).encode()

    def confusion(self, true: int, pred: int, q: dict) -> tuple[int, str, bytes]:
        if true == pred:
            return 422, "application/json", json.dumps({"detail": "a confusion needs two different classes"}).encode()
        members = np.flatnonzero((self.labels == true) & (self.preds == pred))
        if members.size == 0:
            detail = f"no sample of class {true} is predicted as {pred}"
            return 404, "application/json", json.dumps({"detail": detail}).encode()
        mean = self.z[members].mean(axis=0)
        correct = (self.labels == true) & (self.preds == true)
        top = [{**f, "mean_z": float(mean[f["filter"]])}
               for f in self.top_filters_of(mean, int(q.get("top", 20)))]
        profile = q.get("profile") == "true"
        baseline = self.z[correct].mean(axis=0).tolist() if profile and correct.any() else None
        return self._json({"count": int(members.size), "sample_ids": members.tolist(), "top_filters": top,
                           "profile": mean.tolist() if profile else None, "class_profile": baseline})

    def top_filters_of(self, values: np.ndarray, top: int) -> list[dict]:
        out = []
        for f in np.argsort(-values, kind="stable")[:top]:
            name, start, _ = next(layer for layer in LAYERS if layer[1] <= f < layer[2])
            out.append({"filter": int(f), "layer": name, "channel": int(f - start)})
        return out

    def group(self, intervention: str, body: dict) -> dict:
        """Every member's prediction becomes right; the neighbours' stay; the dataset from a job if asked."""
        true, pred = body["confusion"]
        ids = np.flatnonzero((self.labels == true) & (self.preds == pred))
        rows = [{"id": int(i), "label": int(self.labels[i]), "before": {"pred": int(self.preds[i]), "probs": []},
                 "after": {"pred": int(self.labels[i]), "probs": []}} for i in ids]
        answer = {"intervention": intervention, "filters": list(range(int(body.get("top_k", 10)))), "group": rows,
                  "group_accuracy": {"before": 0.0, "after": 1.0}, "neighbors": [], "neighbors_accuracy": None,
                  "dataset_accuracy": None, "dataset_job": None}
        if self.dataset_jobs:
            job = {"id": f"dataset{len(self.jobs)}", "kind": "dataset-accuracy", "title": "dataset accuracy",
                   "state": "running", "progress": 0.5, "message": "", "started": 0.0, "finished": None,
                   "result": None, "error": None}
            self.jobs[job["id"]] = job
            answer["dataset_job"] = job["id"]
        else:
            answer["dataset_accuracy"] = {"before": float(np.mean(self.labels == self.preds)), "after": 0.5}
        return answer

    def answer(self, method: str, path: str, q: dict, body: bytes) -> tuple[int, str, bytes]:
        if path in self.overrides:
            status, payload = self.overrides[path]
            return status, "application/json", json.dumps(payload).encode()
        parts = path.strip("/").split("/")
        if path == "/api/health":
            return self._json({"status": "ok", "ready": True})
        if path == "/api/info":
            return self._json(self.info())
        if path == "/api/summary":
            return self._json(self.summary())
        if path == "/api/samples":
            return self._json(self.listing(q))
        if len(parts) == 4 and parts[1] == "experiments" and parts[3] == "run" and method == "POST":
            return self.run_experiment(parts[2])
        if path == "/api/jobs":
            return self._json([j for j in self.jobs.values() if j["kind"] == q.get("kind", j["kind"])][-1:])
        if len(parts) == 3 and parts[1] == "jobs":
            job = self.jobs.get(parts[2])
            if job is None:
                return 404, "application/json", json.dumps({"detail": f"no job {parts[2]}"}).encode()
            if method == "DELETE":
                job["state"] = "cancelled"
            return self._json(job)
        if len(parts) == 4 and parts[1] == "confusions":
            return self.confusion(int(parts[2]), int(parts[3]), q)
        if path in ("/api/groups/prune", "/api/groups/finetune") and method == "POST":
            return self._json(self.group(parts[2], json.loads(body)))
        if path == "/api/groups/export" and method == "POST":
            return 200, "application/octet-stream", b"weights for " + body
        if path == "/api/uploads" and method == "POST":
            if b"\x89PNG" not in body:
                return 415, "application/json", json.dumps({"detail": "not an image in a supported format"}).encode()
            self.uploads += 1
            return self._json({"id": 424242, "pred": 1, "probs": [0.1, 0.8, 0.1], "label": None})
        if len(parts) >= 3 and parts[1] in ("samples", "uploads"):
            try:
                i = int(parts[2]) if parts[1] == "samples" else 0
            except ValueError:
                return 422, "application/json", json.dumps({"detail": [{"loc": ["path", "sample_id"],
                                                                        "msg": "Input should be a valid integer"}]}).encode()
            if not 0 <= i < len(self.labels):
                return 404, "application/json", json.dumps({"detail": f"no sample {i}"}).encode()
            view = parts[3] if len(parts) > 3 else ""
            if view == "":
                return self._json(self.detail(i))
            if view == "image.png":
                return 200, "image/png", _png(i)
            if view == "input-saliency.png":
                return 200, "image/png", _png(255 - int(q.get("top_k", 10)))
            if view == "filters":
                return self._json(self.top_filters(i, int(q.get("top", 20))))
            if view == "profile":
                return self._json({"id": i, "z": self.z[i].tolist(), "layers": self.info()["layers"]})
            if view == "neighbors":
                return self._json(self.neighbors(i, q))
            if view == "prune" and method == "POST":
                return self._json(self.prune(i, json.loads(body)))
            if view == "mask" and method == "POST":
                return self._json(self.mask(i, json.loads(body), q))
            if view == "mask.png":
                return 200, "image/png", _png(int(float(q.get("percent", 5))))
            if view == "finetune" and method == "POST":
                return self._json(self.finetune(i, json.loads(body), q))
        return 404, "application/json", json.dumps({"detail": "Not Found"}).encode()

    @staticmethod
    def _json(payload) -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps(payload).encode()

    def _handler(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                backend.requests.append((method, url.path, query, body))
                if backend.delay:
                    time.sleep(backend.delay)
                status, ctype, data = backend.answer(method, url.path, query, body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_DELETE(self):
                self._serve("DELETE")

            def log_message(self, *args):
                pass

        return Handler
