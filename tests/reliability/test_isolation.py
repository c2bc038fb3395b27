"""Isolation: two API sessions pruning different filters of the same sample at the same moment each see only
their own pruning, and the shared model computes exactly what it did before.

Every round sends a different `neighbors` count, so no answer can come from the result cache: each one is a
fresh computation on the shared model. tests/backend/api/test_concurrency.py does the same with 8 threads and
a mixed workload in-process (and hashes the served model's weights); this is the two-user case end to end.
"""

from __future__ import annotations

import threading

from .conftest import model_fingerprint

SAMPLE = 3
ROUNDS = 30
SESSIONS = {"alice": {"top_k": 6, "mode": "salient"}, "bob": {"top_k": 6, "mode": "least"}}


def test_two_sessions_pruning_concurrently_see_only_their_own_pruning(server):
    before = model_fingerprint(server)
    with server.client() as http:
        expected = {name: http.post(f"/api/samples/{SAMPLE}/prune", json={**body, "neighbors": ROUNDS}).json()
                    for name, body in SESSIONS.items()}
    alice, bob = expected["alice"], expected["bob"]
    assert set(alice["filters"]).isdisjoint(bob["filters"])
    assert alice["after"] != bob["after"] != alice["before"]  # guard: mixing them up would show

    barrier = threading.Barrier(len(SESSIONS))
    seen: dict[str, list[str]] = {name: [] for name in SESSIONS}

    def session(name: str) -> None:
        want = expected[name]
        with server.client() as http:
            for n in range(1, ROUNDS + 1):
                barrier.wait(30)
                got = http.post(f"/api/samples/{SAMPLE}/prune", json={**SESSIONS[name], "neighbors": n}).json()
                ok = (got["filters"] == want["filters"] and got["after"] == want["after"]
                      and got["neighbors"] == want["neighbors"][:n])
                seen[name].append("ok" if ok else f"round {n}: {got}")

    threads = [threading.Thread(target=session, args=(name,)) for name in SESSIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name, results in seen.items():
        assert len(results) == ROUNDS and set(results) == {"ok"}, (name, [r for r in results if r != "ok"][:2])
    assert model_fingerprint(server) == before
