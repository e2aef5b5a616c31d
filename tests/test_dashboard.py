"""The live dashboard (/dashboard on the HTTP port): its files and state over HTTP, the
restricted-API settings and --allow-dashboard=false, and the page in a real headless browser
(Debian's chromium through chromium-driver and selenium): it shows the bundled models, its
charts change under load, its load/unload buttons work in explicit mode, and a screenshot is
saved (build/test-artifacts/dashboard.png, path printed).

Without chromium, chromedriver or selenium the browser test FAILS (``make test`` installs
them: ``make browser-deps``); it is never skipped."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from serving import ServerProcess

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"
ARTIFACTS = ROOT / "build" / "test-artifacts"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess(
        REPO,
        args=("--model-control-mode=explicit", "--load-model=simple",
              "--load-model=mlp_classifier"),
    ) as srv:  # fmt: skip
        yield srv


def test_files_and_state_over_http(server: ServerProcess) -> None:
    base = f"http://{server.http_url}"
    for path in ("/dashboard", "/dashboard/", "/dashboard/index.html"):
        status, ctype, body = get(base + path)
        assert status == 200 and ctype.startswith("text/html") and b"dashboard.js" in body
    assert get(base + "/dashboard/dashboard.js")[1].startswith("text/javascript")
    assert get(base + "/dashboard/dashboard.css")[1].startswith("text/css")
    for path in ("/dashboard/nope.js", "/dashboard/../server.py", "/dashboard/%2e%2e/x.py"):
        assert get(base + path)[0] == 404, path
    status, ctype, body = get(base + "/dashboard/api/state")
    assert status == 200 and ctype.startswith("application/json")
    state = json.loads(body)
    assert state["server"]["control_mode"] == "explicit"
    assert len(state["latency_bounds_us"]) == 81
    rows = {m["name"]: m for m in state["models"]}
    assert rows["simple"]["state"] == "READY" and rows["simple"]["instances"] >= 1
    assert rows["mlp_classifier"]["max_batch_size"] == 64
    assert rows["classify"]["state"] == ""  # in the repository, not loaded
    assert len(rows["simple"]["request_histogram"]) == 82
    assert set(rows["simple"]["percentiles_ms"]) == {
        "request", "queue", "compute_input", "compute_infer", "compute_output"}  # fmt: skip


def test_restricted_and_disabled(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "simple", repo / "simple")
    with ServerProcess(repo, args=("--http-restricted-api=statistics:admin-key=secret",)) as srv:
        url = f"http://{srv.http_url}/dashboard/api/state"
        status, _, body = get(url)
        assert status == 403 and b"expecting header 'admin-key'" in body
        assert get(url, {"admin-key": "secret"})[0] == 200
        assert get(f"http://{srv.http_url}/dashboard")[0] == 200  # the page itself is static
    with ServerProcess(repo, args=("--allow-dashboard=false",)) as srv:
        assert get(f"http://{srv.http_url}/dashboard")[0] == 404
        assert get(f"http://{srv.http_url}/dashboard/api/state")[0] == 404
        assert get(f"http://{srv.http_url}/v2/health/ready")[0] == 200


def _browser() -> Any:
    """Headless chromium through chromedriver; raises (the test fails) when either is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise AssertionError(
            "the dashboard browser test needs Debian's chromium and chromium-driver: "
            "run `make browser-deps` (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1300"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _wait(what: str, fn: Any, timeout: float = 30) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_dashboard_in_a_browser(server: ServerProcess) -> None:
    driver = _browser()
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        client = httpclient.InferenceServerClient(server.http_url, concurrency=4)
        x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
        inp = httpclient.InferInput("INPUT", [1, 64], "FP32")
        inp.set_data_from_numpy(x)
        while not stop.is_set():
            client.infer("mlp_classifier", [inp])
            sent[0] += 1
        client.close()

    try:
        driver.get(f"http://{server.http_url}/dashboard")

        # The table is rebuilt at every poll: read it (and click) in one script call each.
        def cells(name: str) -> list[str] | None:
            return driver.execute_script(
                "const r = document.querySelector(`#models tr[data-model='${arguments[0]}/1'],"
                " #models tr[data-model='${arguments[0]}/-']`);"
                "return r ? [...r.cells].map((c) => c.textContent) : null;",
                name,
            )

        def click(name: str, action: str) -> bool:
            return driver.execute_script(
                "const b = document.querySelector(`#models tr[data-model='${arguments[0]}/1'] "
                "button[data-action='${arguments[1]}']`); if (b) b.click(); return !!b;",
                name,
                action,
            )

        for name in ("simple", "mlp_classifier", "classify", "token_sum"):
            _wait(f"the row of {name}", lambda: cells(name))
        assert "READY" in cells("mlp_classifier")[2]
        canvas = "document.querySelector('.card[data-model=\"mlp_classifier/1\"] canvas.%s')"
        idle_chart = _wait("the throughput chart", lambda: driver.execute_script(
            f"const c = {canvas % 'throughput'}; return c && c.toDataURL();"))  # fmt: skip
        idle_batches = driver.execute_script(f"return {canvas % 'batches'}.toDataURL();")

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()

        def throughput() -> float:
            try:
                return float(cells("mlp_classifier")[5].replace(",", ""))
            except ValueError:
                return 0.0

        _wait("throughput under load", lambda: throughput() > 0, timeout=60)
        time.sleep(6)  # several polls with traffic: lines drawn, batches counted
        busy_chart = driver.execute_script(f"return {canvas % 'throughput'}.toDataURL();")
        busy_batches = driver.execute_script(f"return {canvas % 'batches'}.toDataURL();")
        assert busy_chart != idle_chart, "the throughput chart did not change under load"
        assert busy_batches != idle_batches, "the batch-size chart did not change under load"
        p99 = cells("mlp_classifier")[8]
        assert p99 not in ("", "–") and float(p99) > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        assert driver.save_screenshot(str(shot))
        print(f"\ndashboard screenshot: {shot} ({sent[0]} requests sent)")
        stop.set()
        for t in threads:
            t.join(30)

        # Explicit mode: unload and load again with the page's buttons.
        assert click("simple", "unload")
        _wait("simple unloaded", lambda: "READY" not in cells("simple")[2])
        _wait("the load button", lambda: click("simple", "load"))
        _wait("simple loaded again", lambda: "READY" in cells("simple")[2])
    finally:
        stop.set()
        driver.quit()


def test_buttons_respect_the_restricted_repository_api(tmp_path: Path) -> None:
    """With --http-restricted-api model-repository:..., the page's unload button gets the 403,
    asks for the header's value, and works once it is given."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "simple", repo / "simple")
    args = ("--model-control-mode=explicit", "--load-model=simple",
            "--http-restricted-api=model-repository:admin-key=secret")  # fmt: skip
    with ServerProcess(repo, args=args) as srv:
        driver = _browser()
        try:
            driver.get(f"http://{srv.http_url}/dashboard")

            def state() -> str | None:
                return driver.execute_script(
                    "const r = document.querySelector(\"#models tr[data-model='simple/1']\");"
                    "return r ? r.cells[2].textContent : null;"
                )

            def click_unload() -> bool:
                return driver.execute_script(
                    "const b = document.querySelector(\"#models tr[data-model='simple/1'] "
                    "button[data-action='unload']\"); if (b) b.click(); return !!b;"
                )

            _wait("simple READY", lambda: "READY" in (state() or ""))
            assert click_unload()
            _wait("the header form", lambda: driver.execute_script(
                "return !document.getElementById('access').hidden && "
                "document.getElementById('access-key').textContent;") == "admin-key")  # fmt: skip
            assert "expecting header 'admin-key'" in driver.execute_script(
                "return document.getElementById('status').textContent;"
            )
            time.sleep(1.5)
            assert "READY" in state()  # refused: still loaded
            driver.execute_script(
                "document.getElementById('access-value').value = 'secret';"
                "document.getElementById('access-form').requestSubmit();"
            )
            _wait("the unload button again", click_unload)
            _wait("simple unloaded", lambda: "READY" not in (state() or "READY"))
        finally:
            driver.quit()
