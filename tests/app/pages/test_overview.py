"""Overview callbacks as functions: the summary figures, the top confusions, and a confusion-cell click
turning into a link to that confusion's page (the diagonal: the gallery)."""

import numpy as np

from app.pages import overview


def test_client_summary(client, fake):
    summary = client.summary()
    assert np.array_equal(np.asarray(summary["confusion"]), np.asarray(fake.summary()["confusion"]))


def test_render_gives_messages_on_backend_failure(client, fake):
    fake.overrides["/api/info"] = (503, {"detail": "overloaded"})
    outputs = overview.render(client)
    assert all("busy" in str(o) for o in outputs)


def test_render_draws_everything(client, fake):
    confusion, top, fig2, fig1 = overview.render(client)
    graph, table = confusion.children
    assert graph.figure.data[1].z[0][1] == fake.summary()["confusion"][0][1]
    assert "/confusion/0/1" in str(table) and "/mistakes?true=0&pred=0" in str(table)  # every cell is a link too
    assert {t.name for t in fig2.figure.data} == {"correct", "misclassified"}
    assert len(fig1.figure.data[0].y) == 12
    assert "/confusion/" in str(top)


def test_render_without_mistakes_explains(client, fake):
    fake.overrides["/api/summary"] = (200, {**fake.summary(), "mean_profile_misclassified": []})
    _, _, fig2, _ = overview.render(client)
    assert "needs both correct and misclassified" in str(fig2)


def test_top_confusions_and_click():
    m = np.array([[5, 3, 0], [9, 1, 1], [0, 0, 4]])
    assert overview.top_confusions(m, ["a", "b", "c"]) == [(1, 0, 9), (0, 1, 3), (1, 2, 1)]
    names = ["a", "b", "c"]
    assert overview.confusion_click({"points": [{"x": "a", "y": "b", "z": 9}]}, names) == "/confusion/1/0"
    assert overview.confusion_click({"points": [{"x": "c", "y": "c", "z": 4}]}, names) == "/mistakes?true=2&pred=2"
    assert overview.confusion_click({"points": []}, names) is None
    assert overview.confusion_click({"points": [{"x": "zzz", "y": "b"}]}, names) is None
