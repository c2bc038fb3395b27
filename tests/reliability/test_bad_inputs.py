"""Bad inputs against `pss serve` in its own process: a corpus of hostile and awkward uploads.

Pass criteria, per file: the expected answer (a clear 4xx, or 200 for images that are merely awkward and get
converted), never a 5xx, within 1 s; the next good upload succeeds. Over the whole corpus, three times: the
server's peak memory (VmHWM) stays within 200 MiB of its resident size before (so no bomb was decoded in
full) and its resident size grows by less than 10%. tests/backend/api/test_uploads.py checks what
the converted images are converted to; this file checks time, memory and recovery.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from tests.backend.api import images

from .conftest import proc_status

MB = 1024 * 1024
LIMIT_S = 1.0
PEAK_HEADROOM = 200 * MB


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_huge_exif(size: int = 8 * MB) -> bytes:
    """A valid small PNG carrying an ``size``-byte eXIf chunk (a big-endian TIFF header, then filler)."""
    plain = images.encode(images.pattern(), "PNG")
    end_of_ihdr = 8 + 25
    exif = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\xff" * (size - 10)
    return plain[:end_of_ihdr] + png_chunk(b"eXIf", exif) + plain[end_of_ihdr:]


def jpeg_with_max_exif() -> bytes:
    """A JPEG whose EXIF segment is as large as the format allows (~64 KiB)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    return images.encode(images.pattern(), "JPEG", exif=exif.tobytes())


def gif_frames(n: int) -> bytes:
    frames = [Image.new("P", (16, 16), i % 256) for i in range(n)]
    return images.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)


def apng_frames(n: int) -> bytes:
    frames = [images.pattern(16, 16, seed=i) for i in range(n)]
    return images.encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=10, loop=0)


def chunked_multipart(payload: bytes, chunk: int = 256 * 1024):
    """A multipart body sent with Transfer-Encoding: chunked (no Content-Length for the server to check)."""
    boundary = "pss-battery"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head
        for start in range(0, len(payload), chunk):
            yield payload[start : start + chunk]
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"content": body(), "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


def as_file(data: bytes, content_type: str = "application/octet-stream", name: str = "upload.png") -> dict:
    return {"files": {"file": (name, data, content_type)}}


# name -> (request kwargs factory, accepted statuses)
CORPUS = {
    "non-image": (lambda: as_file(b"%PDF-1.4 not an image at all\n" * 100), {415}),
    "zero-bytes": (lambda: as_file(b""), {422}),
    "truncated-png": (lambda: as_file(images.encode(images.pattern(64, 64), "PNG")[:300]), {422}),
    "truncated-jpeg": (lambda: as_file(images.encode(images.pattern(64, 64), "JPEG")[:400]), {422}),
    "png-bomb-20000x20000": (lambda: as_file(images.png_with_size(20000, 20000)), {413}),
    "gif-1000-frames": (lambda: as_file(gif_frames(1000), name="anim.gif"), {415}),
    "apng-1000-frames": (lambda: as_file(apng_frames(1000)), {200}),  # the first frame is used
    "cmyk-jpeg": (lambda: as_file(images.cmyk()[0]), {200}),
    "16-bit-png": (lambda: as_file(images.sixteen_bit()[0]), {200}),
    "jpeg-64k-exif": (lambda: as_file(jpeg_with_max_exif()), {200}),
    "png-8mb-exif": (lambda: as_file(png_with_huge_exif()), {200, 422}),
    "part-says-text-plain": (lambda: as_file(images.encode(images.pattern(), "PNG"), "text/plain", "notes.txt"), {200}),
    "body-is-raw-png": (lambda: {"content": images.encode(images.pattern(), "PNG"),
                                 "headers": {"content-type": "image/png"}}, {422}),
    "body-is-json": (lambda: {"json": {"file": "iVBORw0KGgo="}}, {422}),
    "over-10mb-content-length": (lambda: as_file(b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * MB)), {413}),
    "over-10mb-chunked": (lambda: chunked_multipart(b"\x89PNG\r\n\x1a\n" + b"\0" * (12 * MB)), {413}),
}
GOOD = images.encode(images.pattern(seed=3), "JPEG")


def good_upload_works(http) -> bool:
    response = http.post("/api/uploads", files={"file": ("ok.jpg", GOOD, "image/jpeg")})
    return response.status_code == 200 and len(response.json()["probs"]) == 10


def run_corpus(http) -> dict[str, tuple[int, float, bool]]:
    """name -> (status, seconds, did the next good upload succeed)."""
    results = {}
    for name, (make, _) in CORPUS.items():
        kwargs = make()
        started = time.perf_counter()
        response = http.post("/api/uploads", **kwargs)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            body = response.json()
            assert isinstance(body["detail"], str) and "Traceback" not in response.text, (name, response.text)
        results[name] = (response.status_code, elapsed, good_upload_works(http))
    return results


def test_every_bad_input_is_answered_fast_and_clearly_and_the_server_recovers(server):
    with server.client() as http:
        assert good_upload_works(http)  # warm: the first upload pays for lazy imports
        rss_before = server.rss()
        passes = [run_corpus(http) for _ in range(3)]
    rss_after = server.rss()
    peak = proc_status(server.process.pid, "VmHWM")
    print(f"\nRSS before {rss_before / MB:.0f} MiB, after 3 passes {rss_after / MB:.0f} MiB, peak {peak / MB:.0f} MiB")
    for name in CORPUS:
        statuses = [p[name][0] for p in passes]
        print(f"  {name:26s} {statuses[0]}  max {1000 * max(p[name][1] for p in passes):6.0f} ms")

    problems = []
    for i, results in enumerate(passes):
        for name, (status, elapsed, recovered) in results.items():
            if status not in CORPUS[name][1]:
                problems.append(f"pass {i}: {name} answered {status}, expected {sorted(CORPUS[name][1])}")
            if elapsed >= LIMIT_S:
                problems.append(f"pass {i}: {name} took {elapsed:.2f} s")
            if not recovered:
                problems.append(f"pass {i}: the good upload after {name} failed")
    assert not problems, problems
    assert peak < rss_before + PEAK_HEADROOM, "a bad upload was decoded in full (peak memory)"
    assert rss_after < 1.10 * rss_before, "memory grows with every pass over the corpus"
