"""Upload callback as a function: good files navigate to their analysis, bad ones explain why."""

import base64

from app.pages import upload


def _data_url(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


def test_good_upload_navigates(client, fake):
    message, href = upload.handle_upload(client, _data_url(b"\x89PNG fake"), "shoe.png", 2)
    assert href == "/upload/424242" and "uploaded" in str(message)
    assert b'name="label"' in fake.requests[-1][3]


def test_rejected_upload_shows_reason(client):
    message, href = upload.handle_upload(client, _data_url(b"just text"), "notes.txt", None)
    assert href is None and "not an image in a supported format" in str(message) and "notes.txt" in str(message)


def test_unreadable_or_huge_contents(client, fake, monkeypatch):
    message, href = upload.handle_upload(client, "data:;base64,@@@", "x.png", None)
    assert href is None and "cannot be read" in str(message)
    monkeypatch.setattr(upload, "MAX_BYTES", 4)
    message, href = upload.handle_upload(client, _data_url(b"\x89PNG fake"), "big.png", None)
    assert href is None and "at most 10 MB" in str(message)
    assert fake.uploads == 0
