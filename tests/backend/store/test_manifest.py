"""The manifest as one typed object: what is written is what is read, and dirs written before the
``feature_layer`` field still open."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from backend.errors import PSSError
from backend.store import Artifacts, Manifest
from tests.precompute.tiny import build_artifacts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest") / "a"
    build_artifacts(out, n=40)
    return out


@pytest.fixture
def copy(built, tmp_path):
    shutil.copytree(built, tmp_path / "copy")
    return tmp_path / "copy"


def test_round_trip_and_feature_layer_field(built):
    manifest = Artifacts.open(built).manifest
    doc = manifest.to_json()
    assert doc["engine"]["feature_layer"] == manifest.engine.feature_layer
    assert Manifest.from_json(json.loads(json.dumps(doc))) == manifest
    assert doc["num_filters"] == manifest.layout.num_filters and doc["num_layers"] == len(manifest.layout)


def test_a_manifest_without_the_field_still_opens(copy):
    directory = copy
    doc = json.loads((directory / "manifest.json").read_text())
    feature_layer = doc["engine"].pop("feature_layer")
    (directory / "manifest.json").write_text(json.dumps(doc))
    assert Artifacts.open(directory).manifest.engine.feature_layer == feature_layer


def test_an_incomplete_manifest_is_one_line(copy):
    directory = copy
    doc = json.loads((directory / "manifest.json").read_text())
    del doc["engine"]
    (directory / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(PSSError, match="manifest.json is incomplete.*pss precompute --force"):
        Artifacts.open(directory)


def test_params_and_preprocessing_round_trip_and_old_dirs_open_without_them(copy):
    from backend.models import model_input_spec

    manifest = Artifacts.open(copy).manifest
    spec = model_input_spec("demo").with_overrides(input_size=24)
    richer = dataclasses.replace(manifest, params="conv", preprocess=spec)
    again = Manifest.from_json(json.loads(json.dumps(richer.to_json())))
    assert again == richer and again.preprocess.source == "flags"

    doc = json.loads((copy / "manifest.json").read_text())
    doc.pop("params", None)
    doc.pop("preprocess", None)
    (copy / "manifest.json").write_text(json.dumps(doc))
    old = Artifacts.open(copy).manifest
    assert (old.params, old.preprocess) == ("conv", None)


def test_unknown_params_in_a_manifest_is_one_line(copy):
    doc = json.loads((copy / "manifest.json").read_text())
    doc["params"] = "everything"
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(PSSError, match="incomplete .*params 'everything' is not one of conv, linear, conv\\+linear"):
        Artifacts.open(copy)
