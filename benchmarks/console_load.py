"""How long the web console takes to show its first view, against the API calls it makes.

    python -m benchmarks.console_load [--namespaces 50] [--per-namespace 200] [--loads 10]

A store of ``--namespaces`` x ``--per-namespace`` memories (synthetic, vectors precomputed) on a
private embedded PostgreSQL, served by the real app on 127.0.0.1 with one ``*`` key. Headless
Chromium (the system's chromium and chromedriver) opens /console/ with the key already in the
tab's session storage and waits for the namespaces table: the first load with an empty browser
cache, then ``--loads`` reloads. The baseline is the same two API calls the view makes
(``GET /v1/namespaces`` and ``GET /v1/writes``) from Python with httpx. Times are wall clock
from the navigation to the table found (WebDriver's own round trips included: an upper bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn

from benchmarks.common import (
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    remember_all,
)
from pgrecall import MemoryStore, load_settings
from pgrecall.http.app import create_app

KEY = "console-benchmark-key-0123456789"
WAIT_SECONDS = 30.0


@contextlib.asynccontextmanager
async def serving(store: MemoryStore) -> AsyncIterator[str]:
    """The app over ``store`` on 127.0.0.1 in this event loop; yields its base URL."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    settings = load_settings(api_keys={KEY: ["*"]}, embedder="local", auto_migrate=False)
    config = uvicorn.Config(create_app(settings, store=store), log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise SystemExit("the HTTP server did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_SECONDS)
        listening.close()


def chromium() -> Any:
    """Headless Chromium through the system's chromedriver (Selenium Manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise SystemExit("needs chromium and chromedriver (Debian: chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(WAIT_SECONDS)
    return session


def load_seconds(session: Any, url: str, navigate: Callable[[], None]) -> float:
    """Seconds from ``navigate()`` to the namespaces table of ``url`` being on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.perf_counter()
    navigate()
    WebDriverWait(session, WAIT_SECONDS, poll_frequency=0.005).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#namespaces tbody tr"),
        message=f"no namespaces table at {url}",
    )
    return time.perf_counter() - started


def browser_loads(url: str, loads: int) -> tuple[float, list[float]]:
    """The first load (empty cache) and ``loads`` reloads, in seconds."""
    session = chromium()
    try:
        session.get(f"{url}/healthz")  # the origin, to put the key in its session storage
        session.execute_script("sessionStorage.setItem('pgrecall.key', arguments[0])", KEY)
        page = f"{url}/console/"
        first = load_seconds(session, page, lambda: session.get(page))
        again = [load_seconds(session, page, session.refresh) for _ in range(loads)]
    finally:
        session.quit()
    return first, again


async def api_seconds(url: str, loads: int) -> list[float]:
    """The view's two API calls, together as the console makes them, ``loads`` times."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT_SECONDS) as client:
        samples = []
        for _ in range(loads + 1):
            started = time.perf_counter()
            answers = await asyncio.gather(
                client.get("/v1/namespaces"), client.get("/v1/writes?bucket=day&buckets=30")
            )
            for answer in answers:
                answer.raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples[1:]  # the first opened the connection


async def main(arguments: argparse.Namespace) -> None:
    print(machine())
    # Uniform vectors: this view reads counts, never vectors (and no model run is needed).
    sizes = [(f"agent-{i:03d}", arguments.per_namespace) for i in range(arguments.namespaces)]
    data = corpus(sizes, uniform=True)
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    async with embedded_server() as server:
        dsn = await fresh_database(server, "console_load")
        store = await MemoryStore.open(
            load_settings(auto_migrate=False, worker=False), dsn=dsn, embedder=embedder
        )
        try:
            await remember_all(store, data)
            async with serving(store) as url:
                api = await api_seconds(url, arguments.loads)
                first, again = await asyncio.to_thread(browser_loads, url, arguments.loads)
        finally:
            await store.close()
    api_median = statistics.median(api)
    print(f"{len(data.texts):,} memories in {arguments.namespaces} namespaces")
    print(f"{'what':<44}{'ms':>8}{'x API':>8}")
    rows = [
        ("API calls of the view (httpx), median", api_median),
        ("console, first load (empty cache)", first),
        (f"console, reload, median of {len(again)}", statistics.median(again)),
        ("console, reload, slowest", max(again)),
    ]
    for name, seconds in rows:
        print(f"{name:<44}{seconds * 1000:>8.1f}{seconds / api_median:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--per-namespace", type=int, default=200)
    parser.add_argument("--loads", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
