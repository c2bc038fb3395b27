"""A served artifacts dir with 50,000 mistakes, grown from a small real one without running the model on them.

The small dir's model, layout, statistics and reference samples are kept; the samples become the first rows
of Fashion-MNIST's training split (60,000 images, so the backend's check that the dataset is large enough and
its fingerprint matches both hold). Profiles and features repeat the small dir's rows; labels, predictions
and the two maps are synthetic (seeded Gaussian blobs, one per failure mode), and the failure modes are
described from those arrays exactly as the precompute job describes them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

TRAIN_SPEC = "fashion-mnist:train"


def grow(source: Path, out: Path, *, mistakes: int = 50_000, correct: int = 1_000, modes: int = 8, seed: int = 0) -> Path:
    from backend.data import load_dataset
    from backend.store.analysis import ANALYSIS, FAILURE_MODES
    from backend.store.artifacts import (FEATURES, PREDICTIONS, PROFILE_NORMS, PROFILES_RAW, PROFILES_STD,
                                         describe_file)
    from backend.store.manifest import Manifest
    from precompute.analysis.failure_modes import describe_modes

    shutil.copytree(source, out)
    manifest = Manifest.read(source)
    rng = np.random.default_rng(seed)
    n, classes = mistakes + correct, manifest.num_classes
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.choice(n, mistakes, replace=False)] = True
    labels = rng.integers(0, classes, n)
    preds = np.where(wrong, (labels + rng.integers(1, classes, n)) % classes, labels)
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    logits[np.arange(n), preds] += 4.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(n), labels])
    np.savez(out / PREDICTIONS, label=labels, pred=preds, probs=probs.astype(np.float32), loss=loss.astype(np.float32))

    rows = np.arange(n) % manifest.num_samples
    for name in (PROFILES_RAW, PROFILES_STD, FEATURES, PROFILE_NORMS):
        np.save(out / name, np.load(source / name)[rows])

    mistake_ids = np.flatnonzero(wrong)
    mode_of = rng.integers(0, modes, mistakes)
    analysis = dict(np.load(source / ANALYSIS))
    for space in ("saliency", "feature"):
        centres = rng.uniform(-40, 40, (modes, 2))
        analysis[f"{space}_xy"] = (centres[mode_of] + rng.standard_normal((mistakes, 2)) * 4).astype(np.float32)
    analysis.update(mistake_ids=mistake_ids.astype(np.int64), failure_mode=mode_of.astype(np.int64))
    np.savez(out / ANALYSIS, **analysis)
    z = np.load(out / PROFILES_STD, mmap_mode="r")
    described = describe_modes(mode_of, z[mistake_ids], labels[mistake_ids], preds[mistake_ids], mistake_ids)
    (out / FAILURE_MODES).write_text(json.dumps(described))

    dataset = load_dataset(TRAIN_SPEC, manifest.model.spec, manifest.preprocess)
    files = dict(manifest.files)
    for name in (PREDICTIONS, PROFILES_RAW, PROFILES_STD, FEATURES, PROFILE_NORMS, ANALYSIS, FAILURE_MODES):
        files[name] = describe_file(out / name)
    maps = {space: {**params, "method": "synthetic"} for space, params in manifest.analysis.maps.items()}
    grown = dataclasses.replace(
        manifest, num_samples=n, accuracy=float(correct / n), files=files,
        data=dataclasses.replace(manifest.data, spec=TRAIN_SPEC, fingerprint=dataset.fingerprint(), limit=n),
        analysis=dataclasses.replace(manifest.analysis, maps=maps,
                                     failure_modes={**manifest.analysis.failure_modes, "clusters": modes}),
    )
    grown.write(out)
    return out
