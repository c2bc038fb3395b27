"""The manifest as one typed object: what is written is what is read, and dirs written before the
``feature_layer`` field still open."""

from __future__ import annotations

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
