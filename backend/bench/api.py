"""HTTP route latency of the backend, one request at a time against a warm server.

Give a running server (--url) or an artifacts dir (--artifacts: starts `pss serve` in a subprocess on a free
loopback port and stops it afterwards). Each route gets --warmup untimed requests, then --requests timed
ones; p50/p95 are reported. Computed results are cached by the server, so the timed requests of
input-saliency and prune use parameters this run has never sent (fresh samples, a run-unique boost,
fresh seeds): they measure the computation, and a separate row shows a cache hit.

examples:
  pss bench api --artifacts artifacts/demo
  pss bench api --url http://127.0.0.1:8000 --requests 50 --json bench.json
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base URL of a running backend, e.g. http://127.0.0.1:8000")
    target.add_argument("--artifacts", help="artifacts dir: start `pss serve` on it for the benchmark")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="for --artifacts (default cpu)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per route (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per route first (default 3)")
    parser.add_argument("--upload-size", type=int, default=224, help="side of the uploaded test image (default 224)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from backend.errors import PSSError

    logging.getLogger("httpx").setLevel(logging.WARNING)

    if args.requests < 1 or args.warmup < 0 or args.upload_size < 8:
        raise PSSError("--requests must be >= 1, --warmup >= 0 and --upload-size >= 8")
    server = None
    url = args.url
    if args.artifacts:
        from backend.demo import stop

        server, url = _start_server(args.artifacts, args.device)
    try:
        results, info = _bench(url.rstrip("/"), args)
    finally:
        if server is not None:
            stop(server)
    _print(results, info, args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"info": info, "routes": results}, handle, indent=2)
    return 0


def _start_server(artifacts: str, device: str):
    """`pss serve` on a free local port, the way `pss demo` starts it; returns once it is ready."""
    import tempfile
    from pathlib import Path

    from backend.demo import free_port, start_backend, wait_until_ready

    url = f"http://127.0.0.1:{(port := free_port('127.0.0.1'))}"
    log_path = Path(tempfile.mkdtemp(prefix="pss-bench-api-")) / "serve.log"
    process = start_backend(Path(artifacts), "127.0.0.1", port, device, log_path)
    try:
        wait_until_ready(process, url, log_path)
    except BaseException:
        process.kill()
        raise
    return process, url


def _upload_image(size: int, seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _bench(url: str, args) -> tuple[dict, dict]:
    import random
    import time

    import httpx
    import numpy as np

    from backend.errors import PSSError

    rng = random.Random(args.seed)
    total = args.warmup + args.requests
    with httpx.Client(base_url=url, timeout=600) as http:
        try:
            info = http.get("/api/info").raise_for_status().json()
        except httpx.HTTPError as exc:
            raise PSSError(f"no backend answering at {url}: {exc}") from exc
        n, layers = info["num_samples"], info["num_layers"]
        ids = [rng.randrange(n) for _ in range(total)]
        fresh = rng.sample(range(n), min(n, total))
        boost = 100.0 + rng.random()  # unique to this run: its maps are not in the server's cache yet
        seed_base = rng.randrange(1 << 30)
        lo, hi = layers // 3, max(layers // 3 + 1, 2 * layers // 3)
        image = _upload_image(args.upload_size, args.seed)
        uploads: list[int] = []

        def upload(_):
            response = http.post("/api/uploads", files={"file": ("bench.png", image, "image/png")})
            if response.status_code == 200:
                uploads.append(response.json()["id"])
            return response

        def upload_saliency(j):
            return http.get(f"/api/uploads/{uploads[j]}/input-saliency.png", params={"top_k": 10, "boost": 100})

        routes = {
            "sample detail": lambda j: http.get(f"/api/samples/{ids[j]}"),
            "filters (top 20)": lambda j: http.get(f"/api/samples/{ids[j]}/filters", params={"top": 20}),
            "neighbors k=10, full profile": lambda j: http.get(f"/api/samples/{ids[j]}/neighbors", params={"k": 10}),
            f"neighbors k=10, layers {lo}:{hi}": lambda j: http.get(
                f"/api/samples/{ids[j]}/neighbors", params={"k": 10, "layers": f"{lo}:{hi}"}
            ),
            "input-saliency PNG (computed)": lambda j: http.get(
                f"/api/samples/{fresh[j % len(fresh)]}/input-saliency.png", params={"top_k": 10, "boost": boost}
            ),
            "input-saliency PNG (cache hit)": lambda j: http.get(
                f"/api/samples/{fresh[0]}/input-saliency.png", params={"top_k": 10, "boost": boost}
            ),
            "prune top-10 random, sample + 10 neighbours": lambda j: http.post(
                f"/api/samples/{ids[j]}/prune", json={"top_k": 10, "mode": "random", "seed": seed_base + j}
            ),
            f"upload {args.upload_size}x{args.upload_size} PNG": upload,
            "upload input-saliency PNG (computed)": upload_saliency,
        }
        results = {}
        for name, call in routes.items():
            timings = []
            for j in range(total):
                if call is upload_saliency:
                    if j == 0:
                        uploads.clear()
                    upload(None)  # untimed: every timed map is for a fresh upload
                start = time.perf_counter()
                response = call(j)
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise PSSError(f"{name}: HTTP {response.status_code}: {response.text[:200]}")
                if j >= args.warmup:
                    timings.append(elapsed * 1000)
            ms = np.asarray(timings)
            results[name] = {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                             "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean())}
    return results, info


def _print(results: dict, info: dict, args) -> None:
    print(f"model {info['model']} on {info['device']}, dataset {info['dataset']} ({info['num_samples']} samples, "
          f"{info['num_filters']} filters, {info['num_layers']} layers); {args.requests} timed requests per route "
          f"after {args.warmup} warm-up, one at a time")
    width = max(len(name) for name in results)
    print(f"{'route':{width}s}  {'p50 ms':>8s}  {'p95 ms':>8s}  {'mean ms':>8s}")
    for name, r in results.items():
        print(f"{name:{width}s}  {r['p50_ms']:8.1f}  {r['p95_ms']:8.1f}  {r['mean_ms']:8.1f}")
