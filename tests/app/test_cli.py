"""`pss ui`: argument checks answer in one line."""

import argparse
import socket

import pytest

from app import cli


def _args(**kwargs):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args([f"--{k}={v}" for k, v in kwargs.items()])


def test_backend_must_be_a_url():
    with pytest.raises(cli.UsageError, match="http"):
        cli.run(_args(backend="localhost:8000"))


def test_busy_port_is_one_line(fake):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(cli.UsageError, match="cannot listen"):
            cli.run(_args(backend=fake.url, port=taken.getsockname()[1]))
