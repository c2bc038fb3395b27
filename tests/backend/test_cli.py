"""The `pss` shell: a user error from any layer is one line on stderr and exit status 2."""

from __future__ import annotations

import app.cli
import pytest

from backend.cli import main
from backend.errors import PSSError


@pytest.mark.parametrize("error", [PSSError("cannot listen on 127.0.0.1:1: taken"),
                                   SystemExit("cannot listen on 127.0.0.1:1: taken"),
                                   SystemExit("error: cannot listen on 127.0.0.1:1: taken")])
def test_user_errors_are_one_line(monkeypatch, capsys, error):
    def run(_args):
        raise error

    monkeypatch.setattr(app.cli, "run", run)
    assert main(["ui", "--backend", "http://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "error: cannot listen on 127.0.0.1:1: taken\n"


def test_an_exit_status_passes_through(monkeypatch):
    def run(_args):
        raise SystemExit(3)

    monkeypatch.setattr(app.cli, "run", run)
    with pytest.raises(SystemExit) as exc:
        main(["ui", "--backend", "http://127.0.0.1:1"])
    assert exc.value.code == 3
