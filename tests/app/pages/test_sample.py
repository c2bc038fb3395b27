"""Sample-view callbacks as functions: deep-link parsing, pruning modes, neighbours, filter search."""

import pytest

from app.client import BackendError, Ref
from app.pages import sample

S = Ref("samples", "3")


def test_deep_link_round_trip():
    state = sample.parse_query("?top_k=7&boost=30&layers=1:3&space=feature&mistakes=1&prune=4&mode=least", 3)
    assert state == {"top_k": 7, "boost": 30, "layers": [1, 3], "space": "feature", "mistakes_only": True,
                     "prune": 4, "mode": "least"}
    assert sample.parse_query(sample.build_query(state, 3), 3) == state


def test_deep_link_clamps_bad_values():
    state = sample.parse_query("?top_k=999&boost=-1&layers=2:9&space=x&prune=-3&mode=evil", 3)
    assert state["top_k"] == sample.MAX_TOP_K and state["boost"] == 100 and state["layers"] == [0, 3]
    assert state["space"] == "saliency" and state["prune"] == 0 and state["mode"] == "salient"
    assert sample.parse_query("?boost=90", 3)["boost"] == 100


def test_layer_range():
    assert sample.layer_range([0, 3], 3) is None
    assert sample.layer_range([1, 2], 3) == (1, 2)
    assert sample.describe_layers([1, 2], [("a.weight", 0, 1), ("b.weight", 1, 2), ("c.weight", 2, 3)]) == \
        "layer 2 of 3: b"


def test_pruning_controls(client, fake):
    filters = client.filters(S, top=5)
    top2 = [f["filter"] for f in filters[:2]]
    # the slider ticks the top-k boxes in "most salient" mode and prunes exactly those
    checked, cls, panel = sample.pruning(client, S, "sample-prune-k", [], 2, "salient", filters)
    assert checked == top2 and cls == "filter-checklist"
    assert fake.requests[-1][3] == ('{"filters":[%d,%d]}' % tuple(top2)).encode()
    # hand-ticked boxes win over the slider
    checked, _, _ = sample.pruning(client, S, "sample-prune-check", [filters[4]["filter"]], 2, "salient", filters)
    assert checked == [filters[4]["filter"]]
    assert fake.requests[-1][3] == ('{"filters":[%d]}' % filters[4]["filter"]).encode()
    # other modes leave the boxes alone and grey them out
    checked, cls, _ = sample.pruning(client, S, "sample-prune-mode", top2, 3, "least", filters)
    assert checked == top2 and "is-disabled" in cls
    assert fake.requests[-1][3] == b'{"top_k":3,"mode":"least"}'


def test_prediction_panel_prunes_checked_filters(client, fake):
    panel = sample.prediction_panel(client, S, [5, 2], 2, "salient")
    body = fake.requests[-1]
    assert body[1] == "/api/samples/3/prune" and body[3] == b'{"filters":[5,2]}'
    assert "2 filters off" in str(panel) and "flip to correct" in str(panel)


def test_prediction_panel_random_mode_uses_top_k(client, fake):
    sample.prediction_panel(client, S, [5], 3, "random")
    assert fake.requests[-1][3] == b'{"top_k":3,"mode":"random"}'


def test_prediction_panel_without_pruning(client, fake):
    panel = sample.prediction_panel(client, S, [], 0, "salient")
    assert "No filters pruned" in str(panel)
    assert not any(r[1].endswith("/prune") for r in fake.requests)


def test_neighbours_mark_same_and_reversed_confusions(client, fake):
    i = next(i for i in range(len(fake.labels)) if fake.labels[i] != fake.preds[i])
    tiles = sample.neighbor_strip(client, Ref("samples", str(i)), [0, 3], "saliency", [])
    assert len(tiles) == 10
    for tile in tiles:
        j = int(tile.href.rsplit("/", 1)[1])
        same = fake.labels[j] == fake.labels[i] and fake.preds[j] == fake.preds[i]
        assert ("thumb-same" in tile.className) == bool(same)
    sample.neighbor_strip(client, Ref("samples", str(i)), [1, 2], "saliency", ["1"])
    assert fake.requests[-1][2] == {"k": "10", "layers": "1:2", "space": "saliency", "misclassified_only": "true"}
    sample.neighbor_strip(client, Ref("samples", str(i)), [1, 2], "feature", [])
    assert fake.requests[-1][2] == {"k": "10", "space": "feature"}  # a layer range selects filters only


def client_error(client, ref) -> BackendError:
    with pytest.raises(BackendError) as err:
        client.sample(ref)
    return err.value


def test_header_names_classes(client):
    parts = str(sample.header(client.sample(S), ["cat", "dog", "bird"], S))
    assert "Sample #3" in parts and "loss 0.500" in parts
    upload = str(sample.header({"label": None, "pred": 2, "probs": [0.1, 0.2, 0.7]}, ["cat", "dog", "bird"],
                               Ref("uploads", "9")))
    assert "Uploaded image" in upload and "no true label given" in upload and "bird" in upload and "70%" in upload


def test_backend_errors_become_messages(client):
    missing = Ref("samples", "999")
    assert "no sample 999" in str(sample.missing_message(client_error(client, missing), missing))
    assert "uploads expire" in str(sample.missing_message(BackendError("gone", 404), Ref("uploads", "5")))
    assert "no sample 999" in str(sample.overlay(client, missing, 10, 4))
    assert "no sample 999" in str(sample.neighbor_strip(client, missing, [0, 3], "saliency", []))
    assert "no sample 999" in str(sample.prediction_panel(client, missing, [1], 1, "salient"))


def _hrefs(component) -> list[str]:
    """Every link target in a Dash component tree."""
    found = [component.href] if getattr(component, "href", None) else []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if hasattr(child, "to_plotly_json"):
            found += _hrefs(child)
    return found


def test_mistakes_sharing_a_filter(client, fake, monkeypatch):
    monkeypatch.setattr(sample, "FILTER_RANK", 2)
    filter_id = sample.filter_of_click({"points": [{"customdata": 5, "x": "ignored"}]})
    assert filter_id == 5
    shown = [int(h.rsplit("/", 1)[1]) for h in _hrefs(sample.mistakes_with_filter(client, S, filter_id))]
    candidates = fake.neighbors(3, {"k": sample.FILTER_SEARCH_CANDIDATES, "layers": "1:2", "misclassified_only": "true"})
    expected = [c["id"] for c in candidates if 5 in [f["filter"] for f in fake.top_filters(c["id"], 2)]]
    assert expected and shown == expected
