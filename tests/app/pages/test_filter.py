"""The filter page (/filter/<index>) rendered by Dash's router against the fake backend, its map proxy, and the
sample page's links to it."""

import json

import numpy as np
import pytest

from app.client import Subject
from app.main import create_dash_app
from app.pages import filter as filter_page
from app.pages.sample import filter_search

from ..fake_backend import NUM_FILTERS
from ..test_main import route

FILTER = 5


def canned(fake, filter_id: int = FILTER) -> dict:
    """The fake's answers for one filter, from its own arrays (30 samples, so 20 stored per kind here)."""
    z = fake.z[:, filter_id]
    order = np.argsort(-z, kind="stable")[:20]
    correct = fake.labels == fake.preds
    edges = np.histogram_bin_edges(z, 8)
    detail = {"filter": filter_id, "layer": "layer1.conv.weight", "channel": filter_id - 4, "raw_mean": 0.01,
              "raw_std": 0.002, "top_samples": [{"id": int(i), "z": float(z[i])} for i in order],
              "top_activating": [{"id": int(i), "activation": float(i) / 10} for i in order[::-1]],
              "classes": [{"class": 1, "mean_z": 0.4}, {"class": 0, "mean_z": -0.1}],
              "confusions": [{"true": 0, "pred": 1, "count": 3, "mean_z": 2.5}, {"true": 2, "pred": 0, "count": 1,
                                                                                "mean_z": 1.0}]}
    distribution = {"filter": filter_id, "layer": "layer1.conv.weight", "channel": filter_id - 4,
                    "edges": edges.tolist(), "correct": np.histogram(z[correct], edges)[0].tolist(),
                    "misclassified": np.histogram(z[~correct], edges)[0].tolist(),
                    "correct_mean": float(z[correct].mean()), "misclassified_mean": float(z[~correct].mean())}
    fake.overrides[f"/api/filters/{filter_id}"] = (200, detail)
    fake.overrides[f"/api/filters/{filter_id}/distribution"] = (200, distribution)
    return detail


@pytest.fixture
def http(fake):
    return create_dash_app(fake.url).server.test_client()


def props(tree, key: str) -> list:
    """Every value of one property in a rendered (JSON) Dash tree, in document order."""
    if isinstance(tree, list):
        return [v for t in tree for v in props(t, key)]
    if not isinstance(tree, dict):
        return []
    p = tree.get("props", {})
    return ([p[key]] if key in p else []) + props(p.get("children"), key)


def test_page_shows_every_section_with_links_and_filter_maps(http, fake):
    detail = canned(fake)
    page = route(http, f"/filter/{FILTER}")
    ids = set(props(page, "id"))
    assert {"filter-title", "filter-explained", "filter-position", "filter-distribution", "filter-classes",
            "filter-confusions", "filter-references", "filter-show-all"} <= ids
    text = json.dumps(page, ensure_ascii=False)
    assert "Filter layer1.conv #1" in text and "output channel 1" in text and "layer 2 of 3" in text
    hrefs = props(page, "href")
    assert [h for h in hrefs if h.startswith("/confusion/")] == ["/confusion/0/1", "/confusion/2/0"]
    salient = [s["id"] for s in detail["top_samples"][:filter_page.SHOWN]]
    activating = [s["id"] for s in detail["top_activating"][:filter_page.SHOWN]]
    assert [h for h in hrefs if h.startswith("/sample/")] == [f"/sample/{i}" for i in salient + activating]
    maps = [src for src in props(page, "src") if "filter-map" in src]
    assert maps == [filter_page.map_url(i, FILTER) for i in salient + activating]
    assert "dog → cat" not in text and "cat → dog" in text and "bird → cat" in text  # class names, true → pred
    # each tile carries its sample's true and predicted class from the backend
    assert f"{fake.detail(salient[0])['label_name']}" in text


def test_all_reference_samples_on_request(http, fake):
    detail = canned(fake)
    page = route(http, f"/filter/{FILTER}", "?all=1")
    maps = [src for src in props(page, "src") if "filter-map" in src]
    assert len(maps) == len(detail["top_samples"]) + len(detail["top_activating"])
    assert "filter-show-fewer" in props(page, "id")


@pytest.mark.parametrize("path, words", [("/filter/abc", "“abc” is not a filter id"),
                                         ("/filter/-3", "not a filter id"),
                                         (f"/filter/{NUM_FILTERS}", f"no filter {NUM_FILTERS} in this model: "
                                                                    f"filter ids are 0 to {NUM_FILTERS - 1}")])
def test_bad_index_is_a_message(http, fake, path, words):
    page = route(http, path)
    assert "filter-bad-index" in props(page, "id") and words in json.dumps(page, ensure_ascii=False)


def test_without_the_analysis_the_page_keeps_what_it_can(http, fake):
    canned(fake)
    fake.overrides[f"/api/filters/{FILTER}"] = (422, {"detail": "DIR has no filter reference samples; rerun it"})
    page = route(http, f"/filter/{FILTER}")
    ids = set(props(page, "id"))
    assert {"filter-position", "filter-distribution"} <= ids and "filter-references" not in ids
    assert "rerun it" in json.dumps(page, ensure_ascii=False)


def test_map_proxy_asks_for_exactly_that_filter(http, fake):
    answer = http.get(filter_page.map_url(4, FILTER))
    assert answer.status_code == 200 and answer.mimetype == "image/png" and answer.data.startswith(b"\x89PNG")
    asked = [r for r in fake.requests if r[1] == "/api/samples/4/input-saliency.png"]
    assert [r[2] for r in asked] == [{"filters": str(FILTER)}]
    for bad in ("/media/samples/4/filter-map.png", "/media/samples/4/filter-map.png?filter=1,2",
                "/media/samples/x/filter-map.png?filter=1"):
        assert http.get(bad).status_code == 404
    assert http.get(filter_page.map_url(999, FILTER)).status_code == 404  # the backend's 404
    assert len(fake.requests) == 2  # the bad forms never reached the backend


def test_the_sample_page_links_every_filter_to_its_page(http, client, fake):
    """Once the filter page is registered (create_dash_app did), a click's answer and every row of the
    salient-filters table link to /filter/<id>."""
    canned(fake)
    answer = json.dumps(filter_search.samples_with_filter(client, Subject("samples", "3"), FILTER).to_plotly_json(),
                        default=lambda c: c.to_plotly_json())
    assert f'"href": "/filter/{FILTER}"' in answer and "open the page of layer1.conv #1" in answer
    page = route(http, "/sample/3")
    table_links = [h for h in props(page, "href") if h.startswith("/filter/")]
    assert table_links == [f"/filter/{f['filter']}" for f in fake.top_filters(3, 20)]


def test_distribution_is_drawn_by_its_callback(client, fake):
    canned(fake)
    graph, hint = filter_page.distribution_view(client, FILTER)
    correct = fake.labels == fake.preds
    assert [t.name for t in graph.figure.data] == [f"correct ({correct.sum()})", f"misclassified ({(~correct).sum()})"]
    assert f"mean z on correct samples {fake.z[correct, FILTER].mean():.2f}" in hint.children
    fake.overrides[f"/api/filters/{FILTER}/distribution"] = (422, {"detail": "profiles unreadable"})
    assert "profiles unreadable" in str(filter_page.distribution_view(client, FILTER))
