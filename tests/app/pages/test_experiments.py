"""Experiments page: verdicts from confidence intervals, and one empty state with the real command."""

from app.pages import experiments


def stat(low, high):
    return {"mean": (low + high) / 2, "low": low, "high": high}


def test_verdicts_count_only_separated_intervals():
    doc = {"results": {"share": {"saliency": stat(0.4, 0.5), "feature": stat(0.3, 0.4), "chance": stat(0.1, 0.2)}}}
    text, supported = experiments.verdict("neighbors", doc)
    assert supported and text.startswith("Supported")
    doc["results"]["share"]["chance"] = stat(0.35, 0.45)  # overlaps
    assert experiments.verdict("neighbors", doc)[1] is False
    curve = lambda low, high: {"corrected_fraction": {k: [v] for k, v in stat(low, high).items()}}  # noqa: E731
    pruning = {"results": {"n": [10], "curves": {"salient": curve(0.5, 0.6), "random": curve(0.0, 0.1)}}}
    assert experiments.verdict("pruning", pruning)[1] is True
    pruning["results"]["curves"]["random"] = curve(0.55, 0.7)
    assert experiments.verdict("pruning", pruning) == (
        "Not shown here: the salient filters do no better than random ones (intervals overlap).", False)


def test_one_empty_state_with_the_real_command(client, fake):
    listing = {"experiments": [{"name": n, "title": n.title(), "paper": "§4", "available": False}
                               for n in ("pruning", "masking", "sanity")],
               "command": "pss experiments --artifacts /data/run1"}
    fake.overrides["/api/experiments"] = (200, listing)
    page = str(experiments.layout.__wrapped__(client, client.info()))
    assert page.count("pss experiments --artifacts /data/run1") == 1 and "DIR" not in page
    assert "experiments-empty" in page and page.count("card-title") == 1
    assert page.count("Run (quick)") == 3  # one per experiment, inside the one box
