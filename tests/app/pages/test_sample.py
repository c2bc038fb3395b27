"""Sample-view callbacks as functions: deep-link parsing, pruning modes, neighbours, filter search."""

import json

import pytest

from app.client import BackendError, Subject
from app.pages import sample
from app.pages.sample import filter_search, input_map, neighbours, pruning
from app.pages.sample.view import MAX_TOP_K, STATE, layer_span, slider_layers

S = Subject("samples", "3")


def test_deep_link_round_trip():
    link = "?top_k=7&boost=30&layers=1:3&space=feature&mistakes=1&prune=4&mode=least"
    state = STATE.parse(link)
    assert state == {"top_k": 7, "boost": 30, "layers": (1, 3), "space": "feature", "misclassified_only": True,
                     "prune_top_k": 4, "prune_mode": "least", "target": None, "off": None, "seed": 0,
                     "filter": None, "mask_percent": 5, "mask_mode": "salient", "fix_top_k": 25,
                     "fix_mode": "salient", "fix_step": 0.001}
    assert STATE.build(state) == link
    whatifs = "?top_k=10&mask=20&mask_by=random&fix=5&fix_by=least&fix_step=0.1"
    state = STATE.parse(whatifs)
    assert (state["mask_percent"], state["mask_mode"], state["fix_top_k"], state["fix_mode"], state["fix_step"]) == \
        (20, "random", 5, "least", 0.1)
    assert STATE.build(state) == whatifs
    hand = "?top_k=10&prune=3&off=7,2,11&seed=4&filter=2"
    assert STATE.parse(hand)["off"] == (7, 2, 11) and STATE.build(STATE.parse(hand)) == hand
    assert STATE.parse("?off=3,x")["off"] is None and STATE.parse("?off=-1")["off"] is None
    assert STATE.build(STATE.parse("")) == "?top_k=10"  # top_k is always in the link; other defaults are not


def test_deep_link_clamps_bad_values():
    state = STATE.parse("?top_k=999&boost=-1&layers=2:1&space=x&prune=-3&mode=evil")
    assert state["top_k"] == MAX_TOP_K and state["boost"] == 100 and state["layers"] is None
    assert state["space"] == "saliency" and state["prune_top_k"] == 0 and state["prune_mode"] == "salient"
    assert STATE.parse("?boost=90")["boost"] == 100
    # the what-if cards' controls have fixed stops: a link gets the nearest one, or the default
    odd = STATE.parse("?mask=7&mask_by=least&fix=0&fix_by=x&fix_step=0.002")
    assert (odd["mask_percent"], odd["mask_mode"], odd["fix_top_k"], odd["fix_mode"], odd["fix_step"]) == \
        (5, "salient", 25, "salient", 0.001)
    assert STATE.parse("?mask=8&fix=30&fix_step=0.05")["mask_percent"] == 10
    assert STATE.parse("?fix=30")["fix_top_k"] == 25 and STATE.parse("?fix_step=0.05")["fix_step"] == 0.1
    # a range past the model's last layer shows as all layers (the link's form is fine, its bound is not)
    assert slider_layers(STATE.parse("?layers=2:9")["layers"], 3) == [0, 3]
    assert slider_layers((1, 3), 3) == [1, 3]


def test_layer_range():
    assert layer_span([0, 3], 3) is None
    assert layer_span([1, 2], 3) == (1, 2)
    assert neighbours.describe_layers([1, 2], [("a.weight", 0, 1), ("b.weight", 1, 2), ("c.weight", 2, 3)]) == \
        "layer 2 of 3: b"


def test_controls_write_the_link():
    controls = {"top_k": 7, "boost_index": 3, "layers": [0, 3], "space": "saliency", "misclassified_only": ["1"],
                "prune_top_k": 2, "prune_mode": "random", "mask_index": 2, "mask_mode": "salient", "fix_index": 3,
                "fix_mode": "salient", "fix_step": 0.001}
    assert sample.url_search(controls, 3) == "?top_k=7&boost=30&mistakes=1&prune=2&mode=random"
    whatifs = {**controls, "mask_index": 0, "mask_mode": "random", "fix_index": 5, "fix_mode": "least", "fix_step": 0.01}
    assert sample.url_search(whatifs, 3).endswith("&mask=1&mask_by=random&fix=100&fix_by=least&fix_step=0.01")
    drawn = {**controls, "pruned": json.dumps({"filters": [4, 9], "seed": 3, "hand": False})}
    assert sample.url_search(drawn, 3) == "?top_k=7&boost=30&mistakes=1&prune=2&mode=random&seed=3"
    ticked = {**controls, "prune_mode": "salient", "prune_top_k": 3, "selected": "9",
              "pruned": json.dumps({"filters": [4, 9, 1], "seed": 0, "hand": True})}
    assert sample.url_search(ticked, 3) == "?top_k=7&boost=30&mistakes=1&prune=3&off=4,9,1&filter=9"
    assert sample.url_search({**controls, "layers": [1, 3]}, 3).startswith("?top_k=7&boost=30&layers=1:3&")


def test_pruning_controls(client, fake):
    filters = client.filters(S, top=5)
    top2 = [f["filter"] for f in filters[:2]]
    # the slider ticks the top-k boxes in "most salient" mode and prunes exactly those
    checked, _, cls, k, pruned, _ = pruning.pruning(client, S, "sample-prune-k", [], 2, "salient", filters)
    assert checked == top2 and cls == "filter-checklist" and k == 2 and pruned == {"filters": top2, "seed": 0,
                                                                                 "hand": False}
    assert fake.requests[-1][3] == ('{"filters":[%d,%d]}' % tuple(top2)).encode()
    # hand-ticked boxes win over the slider, which follows their count; the link must carry them
    hand = [*top2, filters[4]["filter"]]
    checked, _, _, k, pruned, _ = pruning.pruning(client, S, "sample-prune-check", hand, 2, "salient", filters)
    assert checked == hand and k == 3 and pruned["hand"]
    assert fake.requests[-1][3] == ('{"filters":[%d,%d,%d]}' % tuple(hand)).encode()
    # other modes tick (greyed out) exactly what the backend switched off, listing those outside the top 5
    checked, extra, cls, _, pruned, panel = pruning.pruning(client, S, "sample-prune-mode", top2, 3, "least",
                                                              filters)
    assert fake.requests[-1][1].endswith("/profile")  # the z of filters outside the top 5
    assert fake.requests[-2][3] == b'{"top_k":3,"mode":"least"}'
    shown = {f["filter"] for f in filters}
    assert pruned["filters"] == [0, 1, 2] and "is-disabled" in cls  # the fake prunes 0..k-1
    assert checked == [f for f in [0, 1, 2] if f in shown]  # the salient boxes tick those among them
    assert extra[1].value == [f for f in [0, 1, 2] if f not in shown] and extra[1].value  # the others listed
    # "draw again" asks for the next random draw
    *_, pruned, _ = pruning.pruning(client, S, "sample-prune-draw", [], 3, "random", filters, seed=4)
    assert pruned["seed"] == 5 and fake.requests[-2][3] == b'{"top_k":3,"mode":"random","seed":5}'


def test_prediction_panel_prunes_checked_filters(client, fake):
    _, panel = pruning.prediction_panel(client, S, [5, 2], 2, "salient")
    body = fake.requests[-1]
    assert body[1] == "/api/samples/3/prune" and body[3] == b'{"filters":[5,2]}'
    assert "2 filters off" in str(panel) and "flip to correct" in str(panel)


def test_prediction_panel_random_mode_uses_top_k(client, fake):
    pruning.prediction_panel(client, S, [5], 3, "random")
    assert fake.requests[-1][3] == b'{"top_k":3,"mode":"random"}'


def test_prediction_panel_without_pruning(client, fake):
    result, panel = pruning.prediction_panel(client, S, [], 0, "salient")
    assert result is None and "No filters pruned" in str(panel)
    assert not any(r[1].endswith("/prune") for r in fake.requests)


def test_neighbours_mark_same_and_reversed_confusions(client, fake):
    i = next(i for i in range(len(fake.labels)) if fake.labels[i] != fake.preds[i])
    tiles = neighbours.neighbor_strip(client, Subject("samples", str(i)), [0, 3], "saliency", [])
    assert len(tiles) == 10
    for tile in tiles:
        j = int(tile.href.rsplit("/", 1)[1])
        same = fake.labels[j] == fake.labels[i] and fake.preds[j] == fake.preds[i]
        assert ("thumb-same" in tile.className) == bool(same)
    neighbours.neighbor_strip(client, Subject("samples", str(i)), [1, 2], "saliency", ["1"])
    assert fake.requests[-1][2] == {"k": "10", "layers": "1:2", "space": "saliency", "misclassified_only": "true"}
    neighbours.neighbor_strip(client, Subject("samples", str(i)), [1, 2], "feature", [])
    assert fake.requests[-1][2] == {"k": "10", "space": "feature"}  # a layer range selects filters only


def client_error(client, ref) -> BackendError:
    with pytest.raises(BackendError) as err:
        client.sample(ref)
    return err.value


def test_header_names_classes(client):
    parts = str(sample.header(client.sample(S), ["cat", "dog", "bird"], S))
    assert "Sample #3" in parts and "loss 0.500" in parts
    upload = str(sample.header({"label": None, "pred": 2, "probs": [0.1, 0.2, 0.7]}, ["cat", "dog", "bird"],
                               Subject("uploads", "9")))
    assert "Uploaded image" in upload and "no true label given" in upload and "bird" in upload and "70%" in upload


def test_backend_errors_become_messages(client):
    missing = Subject("samples", "999")
    assert "no sample 999" in str(sample.missing_message(client_error(client, missing), missing))
    assert "uploads expire" in str(sample.missing_message(BackendError("gone", 404), Subject("uploads", "5")))
    assert "no sample 999" in str(input_map.overlay(client, missing, 10, 4))
    assert "no sample 999" in str(neighbours.neighbor_strip(client, missing, [0, 3], "saliency", []))
    assert "no sample 999" in str(pruning.prediction_panel(client, missing, [1], 1, "salient"))


def _hrefs(component) -> list[str]:
    """Every link target in a Dash component tree."""
    found = [component.href] if getattr(component, "href", None) else []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if hasattr(child, "to_plotly_json"):
            found += _hrefs(child)
    return found


def _sample_links(component) -> list[int]:
    """The sample ids a component tree links to (its other links, e.g. to the filter page, left out)."""
    return [int(h.rsplit("/", 1)[1]) for h in _hrefs(component) if h.startswith("/sample/")]


def test_mistakes_sharing_a_filter_without_a_filter_index(client, fake, monkeypatch):
    monkeypatch.setattr(filter_search, "FILTER_RANK", 2)
    answer = filter_search.samples_with_filter(client, S, 5)  # the fake has no /api/filters: 404
    shown = _sample_links(answer)
    candidates = fake.neighbors(3, {"k": filter_search.FILTER_SEARCH_CANDIDATES, "layers": "1:2",
                                    "misclassified_only": "true"})
    expected = [c["id"] for c in candidates if 5 in [f["filter"] for f in fake.top_filters(c["id"], 2)]]
    assert expected and shown == expected
    assert "nearest mistakes" in str(answer) and "no index of the whole dataset" in str(answer)


def test_samples_with_a_filter_from_the_filter_index(client, fake):
    top = [{"id": 7, "z": 4.5}, {"id": 3, "z": 4.0}, {"id": 1, "z": 2.5}]  # 3 is this sample: left out
    fake.overrides["/api/filters/5"] = (200, {"filter": 5, "layer": "b.weight", "channel": 1, "top_samples": top})
    answer = filter_search.samples_with_filter(client, S, 5)
    assert _sample_links(answer) == [7, 1]
    assert "in the whole dataset" in str(answer) and "z 4.5" in str(answer)
    assert not any("/neighbors" in r[1] for r in fake.requests)


def test_unlike_uploads_get_a_notice(client, fake):
    upload = Subject("uploads", "9")
    fake.overrides["/api/uploads/9/typicality"] = (200, {"nn_similarity": 0.31, "percentile": 0.4})
    assert "unlike the dataset" in str(sample.typicality_notice(client, upload)) and "0.31" in str(
        sample.typicality_notice(client, upload))
    fake.overrides["/api/uploads/9/typicality"] = (200, {"nn_similarity": 0.93, "percentile": 37.0})
    assert sample.typicality_notice(client, upload) is None
    fake.overrides["/api/uploads/9/typicality"] = (404, {"detail": "Not Found"})  # an older backend
    assert sample.typicality_notice(client, upload) is None
