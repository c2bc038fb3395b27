"""The router and the image proxy of the Dash server, against the fake backend."""

import socket

from app.client import BackendClient
from app.main import create_dash_app, route


def _ids(component) -> set[str]:
    """Every component id in a Dash tree."""
    found = {component.id} if isinstance(getattr(component, "id", None), str) else set()
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if hasattr(child, "to_plotly_json"):
            found |= _ids(child)
    return found


def test_routes_pick_pages(client):
    assert "overview-confusion-box" in _ids(route(client, "/", ""))
    assert "gallery-results" in _ids(route(client, "/mistakes", "?true=1"))
    assert "upload-drop" in _ids(route(client, "/upload", ""))
    sample_page = _ids(route(client, "/sample/3", "?top_k=5"))
    assert {"sample-overlay", "sample-neighbors", "sample-prediction"} <= sample_page
    assert "sample-overlay" in _ids(route(client, "/upload/424242", ""))


def test_bad_paths_give_messages(client):
    assert "There is no sample 999" in str(route(client, "/sample/999", ""))
    assert "No page at /nowhere" in str(route(client, "/nowhere", ""))
    assert "No page at /sample/abc" in str(route(client, "/sample/abc", ""))


def test_backend_down_is_a_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = str(route(BackendClient(f"http://127.0.0.1:{port}"), "/", ""))
    assert "cannot answer" in page and "pss serve" in page


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
