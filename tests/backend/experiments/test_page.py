"""The Experiments page and its figures, from results that `pss experiments` really wrote."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from app import experiment_figures as figs
from app.pages import experiments as page
from backend.experiments import EXPERIMENTS, NAMES


@pytest.fixture(scope="module")
def docs(results_dir) -> dict:
    return {name: json.loads((results_dir / "experiments" / f"{name}.json").read_text()) for name in NAMES}


def test_every_figure_draws_its_results(docs):
    for name, doc in docs.items():
        fig = figs.FIGURES[name](doc)
        assert isinstance(fig, go.Figure) and fig.data, name
        fig.to_json()  # serializable as Dash will send it
    curves = figs.curves_figure(docs["pruning"])
    means = [t for t in curves.data if t.mode == "lines+markers"]
    assert len(means) == 9  # 3 modes x 3 panels
    first = docs["pruning"]["results"]["curves"]["salient"]["incorrect_conf_change"]["mean"]
    assert list(means[0].y) == [100 * v for v in first]
    heat = figs.gradcam_figure(docs["gradcam"], ["a"] * 10)
    examples = docs["gradcam"]["results"]["examples"]
    maps = [t.z for t in heat.data if isinstance(t, go.Heatmap)]
    assert len(maps) == 3 * len(examples)  # input-space map, Grad-CAM, input gradient (the control)
    assert [list(map(list, z)) for z in maps[:3]] == [examples[0][k] for k in ("input_saliency", "gradcam",
                                                                                "input_gradient")]


def test_headlines_quote_the_json(docs):
    for name, doc in docs.items():
        text = page.headline(name, doc)
        assert text and "None" not in text, name
    neighbors = docs["neighbors"]["results"]["share"]["saliency"]
    assert f"{100 * neighbors['mean']:.1f}%" in page.headline("neighbors", docs["neighbors"])


def test_sections_for_missing_and_present_results(docs):
    item = {"name": "sanity", "title": EXPERIMENTS["sanity"].title, "paper": EXPERIMENTS["sanity"].paper}
    missing = str(page.section("sanity", item, None, []))
    assert "pss experiments --artifacts DIR --which sanity" in missing
    present = str(page.section("masking", {**item, "name": "masking"}, docs["masking"], []))
    assert "experiments-masking-graph" in present and docs["masking"]["command"] in present


def test_explorer_links_to_sample_pages(docs):
    doc = json.loads(json.dumps(docs["masking"]))
    doc["results"]["explorer"] = [{"id": 7, "label": 1, "pred": 2, "true_conf_before": 0.1, "true_conf_after": 0.6,
                                   "pred_after": 1}]
    text = str(page.explorer(doc, ["zero", "one", "two"]))
    assert "/sample/7" in text and "10.0% → 60.0%" in text
