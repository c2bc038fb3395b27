"""The what-if cards and the Experiments page's run controls, as functions against the fake backend."""

from __future__ import annotations

import json

from dash import html

from app.client import Subject
from app.pages import experiments
from app.pages.sample import masks, one_step_fix, target

S = Subject("samples", "3")


def texts(component) -> str:
    """All text in a Dash component tree."""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(texts(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else texts(children)


def test_target_href_sets_and_clears_the_class():
    assert target.target_href("/sample/3", "?top_k=7", "2", label=0, pred=1) == "/sample/3?top_k=7&target=2"
    assert target.target_href("/sample/3", "?top_k=7&target=2", target.LABEL, 0, 1) == "/sample/3?top_k=7"
    assert target.target_href("/sample/3", "", target.PREDICTED, 0, 1) == "/sample/3?target=1"
    # an upload without a label is already against its prediction: no parameter needed
    assert target.target_href("/upload/9", "", target.PREDICTED, None, 1) == "/upload/9"


def test_target_statements():
    names = ["cat", "dog", "bird"]
    plain = texts(target.statement({"label": 0}, names, {"class": 0, "source": "label"}))
    assert "true label (cat)" in plain
    chosen = target.statement({"label": 0}, names, {"class": 2, "source": "chosen"})
    assert "alert-warn" in chosen.className and "bird" in texts(chosen) and "not the true label (cat)" in texts(chosen)
    unlabelled = texts(target.statement({"label": None}, names, {"class": 1, "source": "predicted"}))
    assert "no true label" in unlabelled and "predicted class (dog)" in unlabelled and "not comparable" in unlabelled


def test_masks_card_asks_with_the_target(client, fake):
    image, panel = masks.result(client, Subject("samples", "3", 2), percent=10, mode="random", top_k=4, boost=30.0)
    assert isinstance(image, html.Img) and image.src.startswith("data:image/png;base64,")
    posts = [r for r in fake.requests if r[1] == "/api/samples/3/mask"]
    assert json.loads(posts[0][3]) == {"percent": 10, "mode": "random", "top_k": 4, "boost": 30.0, "seed": 0}
    assert posts[0][2] == {"target": "2"}
    assert "6 pixels masked" in texts(panel)  # the fake masks round(64 * 10%) pixels
    png = [r for r in fake.requests if r[1] == "/api/samples/3/mask.png"][0]
    assert png[2]["percent"] == "10" and png[2]["target"] == "2"


def test_masks_card_shows_errors(client, fake):
    fake.overrides["/api/samples/3/mask"] = (422, {"detail": "percent must be in (0, 100]"})
    image, panel = masks.result(client, S, percent=5, mode="salient", top_k=10, boost=100.0)
    assert "percent must be in (0, 100]" in texts(image) and image is panel


def test_one_step_fix_card(client, fake):
    parts = one_step_fix.result(client, S, top_k=25, mode="least", step=0.01)
    body = json.loads([r for r in fake.requests if r[1] == "/api/samples/3/finetune"][0][3])
    assert body == {"top_k": 25, "mode": "least", "step": 0.01, "neighbors": 10, "seed": 0}
    assert "25 least filters, step 0.01" in texts(parts[0])
    assert "Nearest mistakes in saliency space after the same step" in texts(parts[-1])


def test_experiments_start_poll_cancel(client, fake):
    job_id, status = experiments.start_or_cancel(client, experiments.RUN_ALL, None)
    assert job_id == "job0" and "25%" in status
    again, refused = experiments.start_or_cancel(client, {"type": "experiments-run", "name": "masking"}, job_id)
    assert again == job_id and "could not start" in refused and "already running" in refused
    listing = {"experiments": [], "command": "pss experiments --artifacts DIR"}
    fake.overrides["/api/experiments"] = (200, listing)
    progress, style, text, polling_off, cancel_off, sections, stamps = experiments.poll(client, job_id, {})
    assert progress == 0.25 and style == {} and not polling_off and not cancel_off and stamps == {}
    assert experiments.running_job(client)["id"] == job_id
    experiments.start_or_cancel(client, experiments.CANCEL, job_id)
    progress, style, text, polling_off, cancel_off, *_ = experiments.poll(client, job_id, {})
    assert text.endswith("cancelled") and polling_off and cancel_off and style == {"display": "none"}
