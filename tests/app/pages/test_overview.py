"""Overview callbacks as functions: the summary (with the estimate for a backend without /api/summary),
the top confusions, and a confusion-cell click turning into a gallery link."""

import numpy as np

from app.pages import overview


def test_estimated_summary_has_exact_confusion(client, fake):
    summary, note = overview.load_summary(client, client.info())
    expected = np.zeros((3, 3), dtype=int)
    for t, p in zip(fake.labels, fake.preds):
        expected[t, p] += 1
    assert np.array_equal(np.asarray(summary["confusion"]), expected)
    assert "estimated from" in note
    correct_ids = [i for i in range(len(fake.labels)) if fake.labels[i] == fake.preds[i]]
    assert np.allclose(summary["mean_profile_correct"], fake.z[correct_ids].mean(axis=0))
    assert np.allclose(summary["mean_raw"], fake.raw.mean(axis=0))


def test_backend_summary_is_used_when_present(client, fake):
    fake.overrides["/api/summary"] = (200, {"confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                                            "mean_profile_correct": [0.0] * 12,
                                            "mean_profile_misclassified": [1.0] * 12, "mean_raw": [1.0] * 12})
    summary, note = overview.load_summary(client, client.info())
    assert note == "" and summary["confusion"][0] == [1, 0, 0]


def test_render_gives_messages_on_backend_failure(client, fake):
    fake.overrides["/api/info"] = (503, {"detail": "overloaded"})
    outputs = overview.render(client)
    assert all("busy" in str(o) for o in outputs)


def test_render_draws_everything(client):
    confusion, top, fig2, fig1 = overview.render(client)
    assert confusion.figure is not None and fig2.figure is not None and fig1.figure is not None
    assert "/mistakes?true=" in str(top)


def test_top_confusions_and_click():
    m = np.array([[5, 3, 0], [9, 1, 1], [0, 0, 4]])
    assert overview.top_confusions(m, ["a", "b", "c"]) == [(1, 0, 9), (0, 1, 3), (1, 2, 1)]
    assert overview.confusion_click({"points": [{"customdata": [1, 0]}]}) == "/mistakes?true=1&pred=0"
    assert overview.confusion_click({"points": []}) is None
