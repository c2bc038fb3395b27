"""Each experiment on tiny artifacts (real precompute, random narrow demo ResNet, 48 Fashion-MNIST images):
properties that must hold whatever the model, checked against independent computations."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from backend.experiments import NAMES
from backend.saliency import input_saliency, prune_filters


def _within(stat: dict) -> bool:
    triples = zip(*(stat[k] if isinstance(stat[k], list) else [stat[k]] for k in ("low", "mean", "high")))
    return all(lo is None or lo - 1e-9 <= m <= hi + 1e-9 for lo, m, hi in triples)


@pytest.fixture(scope="module")
def pruning(ctx):
    from backend.experiments.pruning import run_pruning

    return run_pruning(ctx, ns=(0, 1, 5, 20))


def test_pruning_n0_changes_nothing_and_cis_hold(ctx, pruning):
    res = pruning["results"]
    assert res["n"] == [0, 1, 5, 20]
    assert pruning["num_samples"] == len(ctx.mistakes) > 10
    for mode in ("salient", "random", "least"):
        curves = res["curves"][mode]
        assert curves["incorrect_conf_change"]["mean"][0] == 0.0
        assert curves["true_conf_change"]["mean"][0] == 0.0
        assert curves["corrected_fraction"]["mean"][0] == 0.0  # all were misclassified
        assert all(_within(stat) for stat in curves.values())
        assert curves["corrected_fraction"]["count"] == [pruning["num_samples"]] * 4
    written = json.loads((ctx.artifacts.directory / "experiments" / "pruning.json").read_text())
    assert written == pruning


def test_pruning_numbers_match_prune_filters_on_one_sample(ctx, pruning):
    """The batched per-row pruning gives the same confidence changes as the engine's prune_filters."""
    ids = pruning["sample_ids"]
    row = 3
    sample = ids[row]
    z = ctx.z([sample])[0]
    top5 = np.argsort(-z, kind="stable")[:5]
    x = ctx.images([sample])
    before = ctx.probs(x)[0]
    with prune_filters(ctx.model, top5.tolist(), ctx.layout):
        after = ctx.probs(x)[0]
    assert not torch.allclose(before, after)  # pruning a sample's salient filters changes its prediction
    # recompute the mean over samples of the n=5 salient column from per-sample engine runs
    changes = []
    for s in ids:
        order = np.argsort(-ctx.z([s])[0], kind="stable")[:5]
        xs = ctx.images([s])
        base = ctx.probs(xs)[0]
        with prune_filters(ctx.model, order.tolist(), ctx.layout):
            pruned = ctx.probs(xs)[0]
        changes.append(float(pruned[int(ctx.artifacts.labels[s])] - base[int(ctx.artifacts.labels[s])]))
    assert pruning["results"]["curves"]["salient"]["true_conf_change"]["mean"][2] == pytest.approx(
        np.mean(changes), abs=1e-5)


def test_perturbation_is_seeded_and_zero_noise_is_identity(ctx):
    from backend.experiments.pruning import run_perturbation

    a = run_perturbation(ctx, ns=(0, 3, 10), noise_std=0.05)
    b = run_perturbation(ctx, ns=(0, 3, 10), noise_std=0.05)
    assert a["results"] == b["results"]
    salient = a["results"]["curves"]["salient"]["true_conf_change"]["mean"]
    assert salient[0] == 0.0 and salient[2] != 0.0
    quiet = run_perturbation(ctx, ns=(0, 3, 10), noise_std=0.0)
    for curves in quiet["results"]["curves"].values():
        assert all(abs(v) < 1e-6 for v in curves["true_conf_change"]["mean"])
    assert quiet["params"]["noise_std"] == 0.0


def test_neighbors_shares_match_a_brute_force_count(ctx):
    from backend.experiments.neighbors import run_neighbors

    doc = run_neighbors(ctx, k=5)
    a = ctx.artifacts
    share = doc["results"]["share"]
    assert set(share) == {"saliency", "saliency_shallow", "saliency_deep", "feature", "chance"}
    pairs = list(zip(a.labels.tolist(), a.preds.tolist()))
    mistakes = ctx.mistakes.tolist()
    saliency, chance = [], []
    for s in mistakes:
        same = {pairs[s], pairs[s][::-1]}
        others = [m for m in mistakes if m != s]
        z = np.asarray(a.profiles_std, dtype=np.float64)
        unit = z / np.linalg.norm(z, axis=1, keepdims=True)
        sims = unit[others] @ unit[s]
        nearest = [others[i] for i in np.argsort(-sims, kind="stable")[:5]]
        saliency.append(np.mean([pairs[n] in same for n in nearest]))
        chance.append(np.mean([pairs[o] in same for o in others]))
    assert share["saliency"]["mean"] == pytest.approx(np.mean(saliency), abs=1e-6)
    assert share["chance"]["mean"] == pytest.approx(np.mean(chance), abs=1e-6)
    assert all(_within(stat) for stat in share.values())


def test_finetuning_step_matches_an_explicitly_updated_model(ctx):
    from backend.experiments import finetuning

    doc = finetuning.run_finetuning(ctx, ns=(1, 5, 300), step_size=0.5, k=4, max_samples=6)
    res = doc["results"]
    assert ctx.layout.num_filters == 120
    assert res["n"] == [1, 5]  # 300 > the model's 120 filters is dropped
    assert doc["num_samples"] == 6
    for curves in res["curves"].values():
        assert all(_within(stat) for stat in curves.values())

    # the salient n=5 step on the first sample, done by hand on a copy of the model
    sample = doc["sample_ids"][0]
    x, y = ctx.images([sample]), ctx.labels([sample])
    params = dict(ctx.model.named_parameters())
    grads = finetuning._gradients(ctx, x, y, params)
    top5 = np.argsort(-ctx.z([sample])[0], kind="stable")[:5]
    changed = copy.deepcopy(ctx.model)
    changed_params = dict(changed.named_parameters())
    with torch.no_grad():
        for f in top5:
            name, channel = ctx.layout.locate(int(f))
            changed_params[name][channel] -= 0.5 * grads[name][channel]
        expected = torch.softmax(changed(x), 1)
    orders = {"salient": top5[None], "random": top5[None], "least": top5[None]}
    norms = torch.cat([grads[s.name].flatten(1).norm(dim=1) for s in ctx.layout.spans])
    deltas = finetuning._deltas(ctx, grads, norms, orders, [("salient", 5)], 0.5)
    from backend.saliency import row_weight_deltas

    with row_weight_deltas(ctx.model, ctx.layout, deltas, group_size=1):
        got = ctx.probs(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_finetuning_renormalizes_random_and_least_steps(ctx):
    from backend.experiments import finetuning
    from backend.experiments.common import salient_orders

    sample = int(ctx.mistakes[0])
    x, y = ctx.images([sample]), ctx.labels([sample])
    grads = finetuning._gradients(ctx, x, y, dict(ctx.model.named_parameters()))
    norms = torch.cat([grads[s.name].flatten(1).norm(dim=1) for s in ctx.layout.spans])
    orders = salient_orders(ctx.z([sample]), np.array([sample]), 0, 10)
    deltas = finetuning._deltas(ctx, grads, norms, orders, [("salient", 10), ("random", 10), ("least", 10)], 0.1)
    lengths = torch.zeros(3)
    for delta in deltas.values():
        lengths += delta.flatten(1).pow(2).sum(1).double().float()
    lengths = lengths.sqrt()
    torch.testing.assert_close(lengths[1], lengths[0], rtol=1e-4, atol=0)
    if float(norms[torch.as_tensor(orders["least"][0])].norm()) > 0:
        torch.testing.assert_close(lengths[2], lengths[0], rtol=1e-4, atol=0)


def test_masking_changes_and_explorer(ctx):
    from backend.experiments.masking import run_masking

    doc = run_masking(ctx, percent=10, explorer_threshold=0.0)
    res = doc["results"]
    for mode in ("salient", "random"):
        assert all(_within(stat) for stat in res[mode].values())
    # explorer: every listed sample's true-class confidence rose by at least the threshold, largest rise first
    rises = [e["true_conf_after"] - e["true_conf_before"] for e in res["explorer"]]
    assert all(r >= -1e-4 for r in rises) and rises == sorted(rises, reverse=True)
    # one sample by hand: mask its top 10% input-saliency pixels, check the confidence change
    sample = doc["sample_ids"][0]
    x, y = ctx.images([sample]), int(ctx.artifacts.labels[sample])
    heat = input_saliency(ctx.model, x[0], y, ctx.artifacts.stats, top_k=10, layout=ctx.layout)
    count = int(np.ceil(0.1 * heat.numel()))
    masked = x.clone()
    flat = masked.view(1, masked.shape[1], -1)
    flat[:, :, heat.flatten().topk(count).indices] = 0
    change = float(ctx.probs(masked)[0, y] - ctx.probs(x)[0, y])
    listed = {e["id"]: e for e in res["explorer"]}
    if change >= 0:
        assert listed[sample]["true_conf_after"] - listed[sample]["true_conf_before"] == pytest.approx(change, abs=2e-4)
    else:
        assert sample not in listed


def test_gradcam_and_sanity(ctx):
    from backend.experiments.gradcam import run_gradcam
    from backend.experiments.sanity import run_sanity

    doc = run_gradcam(ctx, max_samples=8, examples=3)
    res = doc["results"]
    assert doc["num_samples"] == 8 and len(res["examples"]) == 3
    assert np.asarray(res["examples"][0]["gradcam"]).shape == (28, 28)
    assert -1 <= res["spearman"]["mean"] <= 1 and _within(res["spearman"])
    assert res["pairs"]["input_saliency_vs_gradcam"]["spearman"] == res["spearman"]
    assert res["feature_size"] == [4, 4]  # the demo ResNet's last stage on 28x28 inputs
    for pair in res["pairs"].values():
        for key in ("spearman", "top_overlap", "spearman_feature_resolution"):
            assert pair[key]["count"] == 8 and _within(pair[key])
    assert np.asarray(res["examples"][0]["input_gradient"]).shape == (28, 28)

    sanity = run_sanity(ctx, max_samples=4, stats_samples=24)
    steps = sanity["results"]
    assert steps["randomized_stage"] == ["none", "fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    rho = steps["input_saliency_spearman"]["mean"]
    assert rho[0] == pytest.approx(1.0) and len(rho) == 8
    assert rho[-1] < 0.9  # a fully randomized model does not give back the original map
    # the model the context holds was not touched by the randomization
    assert all(not p.requires_grad or p.grad is None for p in ctx.model.parameters())


def test_results_are_plain_json(ctx):
    for name in NAMES:
        path = ctx.artifacts.directory / "experiments" / f"{name}.json"
        if path.exists():
            text = path.read_text()
            assert "NaN" not in text and "Infinity" not in text
            assert json.loads(text)["experiment"] == name
