"""The confusion page and its "Fix this kind of mistake" panel, as functions against the fake backend."""

from __future__ import annotations

import json

import flask
import pytest

from app.pages import attach_client, confusion, group_fix
from tests.app.pages.test_whatif_cards import texts

from ..fake_backend import LAYERS


def most_common_pair(fake) -> tuple[int, int]:
    wrong = fake.labels != fake.preds
    pairs = list(zip(fake.labels[wrong].tolist(), fake.preds[wrong].tolist()))
    return max(set(pairs), key=pairs.count)


@pytest.fixture
def render(client):
    """Calls the page's layout as Dash's router does, inside a Flask app holding the client."""
    server = flask.Flask(__name__)
    attach_client(server, client)

    def call(true_class: str, pred_class: str):
        with server.app_context():
            return confusion.layout(true_class=true_class, pred_class=pred_class)

    return call


def find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = find(child, component_id)
            if found is not None:
                return found
    return None


def test_page_shows_the_pair_its_filters_and_its_mistakes(render, fake):
    true, pred = most_common_pair(fake)
    page = render(str(true), str(pred))
    members = [i for i in range(len(fake.labels)) if fake.labels[i] == true and fake.preds[i] == pred]
    assert f"{len(members)} mistakes" in texts(find(page, "confusion-count"))
    assert "cat dog bird".split()[true] in texts(page) and "fingerprint" in texts(find(page, "confusion-about"))
    answer = fake.confusion(true, pred, {"top": "15", "profile": "true"})
    top = json.loads(answer[2])["top_filters"]
    for f in top:
        assert find(page, f"confusion-filter-{f['filter']}").href == f"/filter/{f['filter']}"
    thumbs = find(page, "confusion-mistakes").children
    assert [t.href for t in thumbs] == [f"/sample/{i}" for i in members][: confusion.MAX_THUMBS]
    graph = find(page, "confusion-fingerprint")
    assert list(graph.figure.data[1].customdata) == [f["filter"] for f in top]
    assert find(page, "confusion-gallery").href == f"/mistakes?true={true}&pred={pred}"
    assert find(page, "confusion-fix-group").data == {"confusion": [true, pred]}


@pytest.mark.parametrize("path, words", [
    (("0", "0"), "No such confusion: a confusion needs two different classes"),
    (("0", "x"), "names no pair of classes"),
    (("0", "7"), "No such confusion"),
])
def test_bad_pairs_get_a_clear_message(render, fake, path, words):
    fake.overrides["/api/confusions/0/7"] = (404, {"detail": "no class 7 (pred_class): classes are 0..2"})
    assert words in texts(render(*path))


def test_a_pair_without_mistakes_says_so(render, fake):
    seen = set(zip(fake.labels.tolist(), fake.preds.tolist()))
    true, pred = next((t, p) for t in range(3) for p in range(3) if t != p and (t, p) not in seen)
    assert "The model makes no mistake of this kind" in texts(render(str(true), str(pred)))


def test_clicking_a_marked_filter_opens_its_page():
    assert confusion.clicked_filter({"points": [{"x": 4, "customdata": 4}]}) == "/filter/4"
    assert confusion.clicked_filter({"points": [{"x": 4, "y": 1.0}]}) is None  # the line, not a marked filter


def test_fix_panel_runs_and_shows_before_and_after(client, fake):
    true, pred = most_common_pair(fake)
    answer, status = group_fix.run(client, {"confusion": [true, pred]}, "finetune", 25, "random", 0.01)
    assert status is None
    body = json.loads(fake.requests[-1][3])
    assert fake.requests[-1][1] == "/api/groups/finetune"
    assert body == {"confusion": [true, pred], "top_k": 25, "mode": "random", "step": 0.01, "neighbors": 10}
    shown = group_fix.outcome(answer, LAYERS, len(fake.labels), "p")
    table = texts(shown)
    members = len(answer["group"])
    assert f"this group ({members} samples) 0.0% 100.0% +100.0 pts" in table
    before = float((fake.labels == fake.preds).mean())
    assert f"the whole dataset ({len(fake.labels)} samples) {before:.1%} 50.0%" in table
    assert f"25 random filters stepped: {members} of the group's {members} samples now predicted right" in table


def test_fix_panel_follows_the_dataset_job(client, fake):
    fake.dataset_jobs = True
    true, pred = most_common_pair(fake)
    answer, _ = group_fix.run(client, {"confusion": [true, pred]}, "prune", 10, "salient", 0.001)
    assert answer["dataset_accuracy"] is None
    answer, over = group_fix.poll(client, answer)
    assert not over and answer["dataset_progress"] == 0.5
    assert "evaluating all 30 samples… 50%" in texts(group_fix.outcome(answer, LAYERS, 30, "p"))
    fake.jobs[answer["dataset_job"]].update(state="done", progress=1.0, result={"before": 0.6, "after": 0.4})
    answer, over = group_fix.poll(client, answer)
    row = find(group_fix.outcome(answer, LAYERS, 30, "p")[1], "p-fix-dataset-row")
    assert over and texts(row) == "the whole dataset (30 samples) 60.0% 40.0% -20.0 pts"
    fake.jobs[answer["dataset_job"]].update(state="failed", error="worker died")
    answer, over = group_fix.poll(client, {**answer, "dataset_accuracy": None})
    assert over and "did not finish: worker died" in texts(group_fix.outcome(answer, LAYERS, 30, "p"))


def test_fix_panel_shows_refusals(client, fake):
    fake.overrides["/api/groups/prune"] = (409, {"detail": "a dataset-accuracy job is already running (x)"})
    answer, status = group_fix.run(client, {"confusion": [0, 1]}, "prune", 10, "salient", 0.001)
    assert answer is None and "already running" in texts(status)


def test_download_link_round_trips_and_proxies(client, fake):
    group = {"confusion": [2, 1]}
    href = group_fix.export_href(group, "finetune", top_k=25, mode="least", step=0.01, seed=3)
    path, query = href.split("?")
    server = flask.Flask(__name__)
    group_fix._register_download(server, client)
    with server.test_client() as browser:
        got = browser.get(href)
        assert got.status_code == 200
        assert got.headers["Content-Disposition"] == \
            'attachment; filename="pss-confusion-2-1-finetune-top25-least.safetensors"'
        sent = json.loads(got.data.removeprefix(b"weights for "))
        assert sent == {"confusion": [2, 1], "top_k": 25, "mode": "least", "step": 0.01, "seed": 3,
                        "intervention": "finetune"}
        bad = browser.get(f"{path}?intervention=melt&confusion=2,1")
        assert bad.status_code == 400 and b"intervention must be one of prune, finetune" in bad.data
        fake.overrides["/api/groups/export"] = (422, {"detail": "top_k must be in [1, 12], got 99"})
        refused = browser.get(group_fix.export_href(group, "prune", top_k=99, mode="salient", step=0.001))
        assert refused.status_code == 422 and b"top_k must be in [1, 12]" in refused.data
