"""The search page: API over a real uvicorn on 127.0.0.1, safe file serving, and a headless-browser run."""
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from videomamba.apps.search import Index, WindowSpec

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, motion_dir, text_embedder):
    from videomamba.apps.search.server import create_app

    ix = Index.open(tmp_path / "ix", text_embedder, window=WindowSpec(2, 1))
    ix.add([motion_dir], text_embedder, progress=False)
    port = _free_port()
    config = uvicorn.Config(create_app(ix, text_embedder), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and t.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ix
    srv.should_exit = True
    t.join(10)
    ix.close()


def _get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_api_search_thumb_media(server, motion_dir):
    base, ix = server
    status, _, body = _get(f"{base}/api/search?q=moving%20left&k=2")
    hits = json.loads(body)["hits"]
    assert status == 200 and {(h["name"], h["start"]) for h in hits} == {("a.mp4", 0.0), ("b.mp4", 4.0)}
    status, headers, jpg = _get(base + hits[0]["thumb"])
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpg[:2] == b"\xff\xd8"
    status, _, data = _get(base + hits[0]["media"])
    assert status == 200 and data == open(hits[0]["path"], "rb").read()
    req = urllib.request.Request(base + hits[0]["media"], headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req, timeout=30) as r:      # the browser seeks with range requests
        assert r.status == 206 and r.read() == data[10:20]
    assert _get(f"{base}/api/search?q=" + "x" * 501)[0] == 422
    assert _get(f"{base}/api/search?q=left&k=1000")[0] == 422
    status, _, page = _get(base + "/")
    assert status == 200 and b'id="q"' in page


def test_paths_outside_the_roots_are_never_served(server, tmp_path, motion_dir):
    base, ix = server
    outside = tmp_path / "secret.mp4"
    shutil.copy(motion_dir / "a.mp4", outside)
    os.symlink(outside, motion_dir / "link.mp4")                  # a link inside a root, pointing out
    with ix._tx() as c:
        c.execute("INSERT INTO files (path, root, hash, size, mtime_ns) SELECT ?, ?, hash, size, mtime_ns "
                  "FROM files LIMIT 1", (str(motion_dir / "link.mp4"), str(motion_dir)))
        link_id = c.execute("SELECT id FROM files WHERE path = ?", (str(motion_dir / "link.mp4"),)).fetchone()[0]
    assert _get(f"{base}/media/{link_id}")[0] == 404
    assert _get(f"{base}/media/999")[0] == 404
    for probe in ("/media/..%2F..%2Fetc%2Fpasswd", "/media/%2Fetc%2Fpasswd", "/static/../server.py",
                  "/static/..%2F..%2F..%2Fpyproject.toml"):
        status, _, body = _get(base + probe)
        assert status in (404, 422), probe
        assert b"root:" not in body and b"def create_app" not in body


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_browser_types_a_query_and_plays_the_first_result(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    base, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(base + "/")
            page.fill("#q", "where does the car turn left?")
            page.press("#q", "Enter")
            first = page.locator("#results .result").first
            first.wait_for()
            assert page.locator("#results .result").count() >= 2
            assert first.get_attribute("data-start") == "0" and first.get_attribute("data-path").endswith("a.mp4") \
                or first.get_attribute("data-start") == "4" and first.get_attribute("data-path").endswith("b.mp4")
            # the thumbnail is a decoded frame
            page.wait_for_function("() => document.querySelector('#results .result img').naturalWidth > 0")
            start = float(first.get_attribute("data-start"))
            first.click()
            page.wait_for_function("() => !document.getElementById('player-box').hidden")
            src = page.eval_on_selector("#player", "v => v.getAttribute('src')")
            assert src.startswith("/media/")
            # the video plays from the hit's start (when this chromium decodes h264; it must at least load)
            page.wait_for_function("() => { const v = document.getElementById('player'); "
                                   "return v.readyState >= 1 || v.error !== null; }")
            err = page.eval_on_selector("#player", "v => v.error && v.error.code")
            if err is None:
                page.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {start}) < 1.0"
                                       f" || document.getElementById('player').currentTime > {start}")
                assert page.eval_on_selector("#player", "v => v.currentTime") >= start - 0.01
            else:
                assert err == 4, f"media error {err}"     # MEDIA_ERR_SRC_NOT_SUPPORTED: codec missing in this build
        finally:
            browser.close()


def test_serve_command_binds_localhost_and_answers(tmp_path, motion_dir, classifier_dir):
    import subprocess
    import sys

    from videomamba.cli import build_parser, main

    assert build_parser().parse_args(["serve", "ix"]).host == "127.0.0.1"
    ix = tmp_path / "ix"
    assert main(["index", str(motion_dir), "-k", str(classifier_dir), "-o", str(ix), "--no-progress"]) == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "videomamba", "serve", str(ix), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                status, _, body = _get(f"http://127.0.0.1:{port}/api/info", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline, "serve did not come up"
                time.sleep(0.2)
        info = json.loads(body)
        assert status == 200 and info == {**info, "files": 2, "model_kind": "classifier", "text": False}
        status, _, body = _get(f"http://127.0.0.1:{port}/api/search?q=left")
        assert status == 400 and "--like" in json.loads(body)["error"]
    finally:
        proc.terminate()
        proc.wait(30)
