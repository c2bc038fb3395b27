"""Routing through Dash's pages and the image proxy of the Dash server, against the fake backend."""

import json
import socket

import pytest

from app.main import create_dash_app


def route(http, pathname: str, search: str = ""):
    """The page Dash's router renders for a URL, asked the way the browser asks."""
    answer = http.post("/_dash-update-component", json={
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                   {"id": "_pages_location", "property": "search", "value": search}],
        "changedPropIds": ["_pages_location.pathname"], "state": []})
    assert answer.status_code == 200
    return answer.get_json()["response"]["_pages_content"]["children"]


@pytest.fixture
def render(fake):
    http = create_dash_app(fake.url).server.test_client()
    return lambda pathname, search="": route(http, pathname, search)


def _ids(tree) -> set[str]:
    """Every component id in a rendered (JSON) Dash tree."""
    if isinstance(tree, list):
        return set().union(*(_ids(t) for t in tree)) if tree else set()
    if not isinstance(tree, dict):
        return set()
    props = tree.get("props", {})
    found = {props["id"]} if isinstance(props.get("id"), str) else set()
    return found | _ids(props.get("children"))


def test_routes_pick_pages(render):
    assert "overview-confusion-box" in _ids(render("/"))
    assert "gallery-results" in _ids(render("/mistakes", "?true=1"))
    assert "upload-drop" in _ids(render("/upload"))
    assert "upload-drop" in _ids(render("/upload/"))
    sample_page = _ids(render("/sample/3", "?top_k=5"))
    assert {"sample-overlay", "sample-neighbors", "sample-prediction"} <= sample_page
    assert "sample-overlay" in _ids(render("/upload/424242"))


def test_query_reaches_the_page(render):
    page = json.dumps(render("/sample/3", "?top_k=7&layers=1:2&mode=least"))
    assert '"id": "sample-topk"' in page and '"value": 7' in page and '"value": [1, 2]' in page
    assert '"value": "least"' in page


def test_bad_paths_give_messages(render):
    assert "no sample 999" in json.dumps(render("/sample/999"))
    assert "No page at /nowhere" in json.dumps(render("/nowhere"))
    assert "No page at /sample/abc" in json.dumps(render("/sample/abc"))


def test_backend_down_is_a_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = json.dumps(route(create_dash_app(f"http://127.0.0.1:{port}").server.test_client(), "/"))
    assert "cannot answer" in page and "pss serve" in page and "reloads by itself" in page
    assert "127.0.0.1" not in page and "ConnectError" not in page  # no internal address or exception names


def test_media_proxy(fake):
    app = create_dash_app(fake.url)
    http = app.server.test_client()
    answer = http.get("/media/samples/4/image.png")
    assert answer.status_code == 200 and answer.mimetype == "image/png" and answer.data.startswith(b"\x89PNG")
    assert http.get("/media/samples/999/image.png").status_code == 404
    assert http.get("/media/secrets/1/image.png").status_code == 404
    sneaky = http.get("/media/samples/..%2F..%2Fetc/image.png")  # never reaches the backend
    assert sneaky.mimetype != "image/png"
    assert http.get("/media/samples/1x/image.png").status_code == 404
    assert all(r[1] == "/api/samples/4/image.png" or r[1] == "/api/samples/999/image.png" for r in fake.requests)


def test_dash_app_serves_its_shell(fake):
    app = create_dash_app(fake.url)
    http = app.server.test_client()
    page = http.get("/")
    assert page.status_code == 200 and b"Parameter-space saliency" in page.data
    assert http.get("/assets/style.css").status_code == 200
