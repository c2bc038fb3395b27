"""Isolation: two API sessions pruning different filters of the same sample at the same moment each see only
their own pruning, and the shared model computes exactly what it did before.

Every round sends a different `neighbors` count, so no answer can come from the result cache: each one is a
fresh computation on the shared model. tests/backend/api/test_concurrency.py does the same with 8 threads and
a mixed workload in-process (and hashes the served model's weights); this is the two-user case end to end.

Answers are compared with a tolerance, not bitwise: `neighbors=n` changes how many rows go through the model
at once, and the same sample in a batch of 2 or of 31 can differ by ~1e-10 in its probabilities on some CPUs.
The tolerance (1e-6) is checked to be far below the difference between alice's and bob's answers, so an
answer that mixed in the other user's pruning would still fail.
"""

from __future__ import annotations

import threading

from .conftest import model_fingerprint

SAMPLE = 3
ROUNDS = 30
TOLERANCE = 1e-6
SESSIONS = {"alice": {"top_k": 6, "mode": "salient"}, "bob": {"top_k": 6, "mode": "least"}}


def test_two_sessions_pruning_concurrently_see_only_their_own_pruning(server):
    before = model_fingerprint(server)
    with server.client() as http:
        expected = {name: http.post(f"/api/samples/{SAMPLE}/prune", json={**body, "neighbors": ROUNDS}).json()
                    for name, body in SESSIONS.items()}
    alice, bob = expected["alice"], expected["bob"]
    assert set(alice["filters"]).isdisjoint(bob["filters"])
    # guard: mixing them up would show, by far more than the tolerance
    assert max_difference(alice["after"], bob["after"]) > 1000 * TOLERANCE
    assert max_difference(alice["after"], alice["before"]) > 1000 * TOLERANCE

    barrier = threading.Barrier(len(SESSIONS))
    seen: dict[str, list[str]] = {name: [] for name in SESSIONS}

    def session(name: str) -> None:
        want = expected[name]
        with server.client() as http:
            for n in range(1, ROUNDS + 1):
                barrier.wait(30)
                got = http.post(f"/api/samples/{SAMPLE}/prune", json={**SESSIONS[name], "neighbors": n}).json()
                ok = (got["filters"] == want["filters"]
                      and max_difference(got["after"], want["after"]) <= TOLERANCE
                      and max_difference(got["neighbors"], want["neighbors"][:n]) <= TOLERANCE)
                seen[name].append("ok" if ok else f"round {n}: {got}")

    threads = [threading.Thread(target=session, args=(name,)) for name in SESSIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name, results in seen.items():
        assert len(results) == ROUNDS and set(results) == {"ok"}, (name, [r for r in results if r != "ok"][:2])
    assert model_fingerprint(server) == before


def max_difference(a, b) -> float:
    """Largest absolute difference between the floats of two JSON answers of the same shape; infinite where
    anything else (keys, lengths, ids, predicted classes) differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((max_difference(x, y) for x, y in zip(a, b)), default=0.0)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        return abs(a - b)
    return 0.0 if a == b else float("inf")
