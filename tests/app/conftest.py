"""Fixtures for the UI's unit tests: a fake backend over real HTTP, and a client pointed at it."""

import pytest

from app.client import BackendClient

from .fake_backend import FakeBackend


@pytest.fixture
def fake():
    backend = FakeBackend().start()
    yield backend
    backend.stop()


@pytest.fixture
def client(fake):
    c = BackendClient(fake.url, timeout=2.0, slow_timeout=2.0)
    yield c
    c.close()
