"""The web console in headless Chromium against a live server on loopback: a key entered once,
the namespaces, a recall and its hits, a memory, a retry, a forget; stored markup stays text;
a key for one namespace never sees another; a phone-width screen and the keyboard alone.

A screenshot of each view lands in tests/artefacts/console/ (see tests/browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .browser import chromium, page_errors, screenshot, wait_for
from .conftest import mark_failed
from .http_server import ServerThread, api_client

KEY_ADA = "console-ada-key-0123456789"
KEY_BOB = "console-bob-key-0123456789"
ADMIN = "console-admin-key-01234567"
KEYS = {KEY_ADA: ["ada"], KEY_BOB: ["bob"], ADMIN: ["*"]}
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
ADA = [
    {"namespace": "ada", "content": "Ada is allergic to peanuts.", "metadata": {"kind": "health"}},
    {"namespace": "ada", "content": "Ada's sister Maya lives in Oslo.", "key": "family"},
    {"namespace": "ada", "content": "Ada prefers green tea to coffee in the morning."},
    {"namespace": "ada", "content": "Ada runs five kilometres before work."},
    {"namespace": "ada", "content": "Peanut butter makes Ada ill.", "metadata": {"kind": "health"}},
]
BOB_SECRET = "Bob's locker code is 4471."


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def api_keys() -> dict[str, list[str]]:
    return KEYS


@pytest.fixture
def seeded(server: ServerThread) -> dict[str, str]:
    """Ada's memories, a hostile one, Bob's secret; their ids by content."""
    memories = [*ADA, {"namespace": "ada", "content": HOSTILE, "metadata": {"note": HOSTILE}}]
    memories.append({"namespace": "bob", "content": BOB_SECRET})
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
        answer = admin.post("/v1/memories", json={"memories": memories})
    assert answer.status_code == 200, answer.text
    return {m["content"]: r["id"] for m, r in zip(memories, answer.json()["memories"], strict=True)}


def _by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return wait_for(driver, lambda d: d.find_element(By.ID, element_id), f"#{element_id}")


def _all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _text(element: Any) -> str:
    return str(element.get_property("textContent"))


def _connect(driver: Any, server: ServerThread, key: str) -> None:
    driver.get(f"{server.url}/console")
    field = _by_id(driver, "key")
    field.send_keys(key)
    field.submit()
    wait_for(driver, lambda d: _all(d, "#namespaces tbody tr"), "the namespaces table")


def _recall(driver: Any, query: str) -> list[Any]:
    driver.get(driver.current_url.split("#")[0] + "#/recall")
    field = _by_id(driver, "query")
    field.send_keys(query)
    field.submit()
    return wait_for(driver, lambda d: _all(d, "#hits li.hit"), "the hits")


async def test_every_view_with_a_key(
    browser: Any, server: ServerThread, seeded: dict[str, str], migrated_dsn: str
) -> None:
    failing = seeded["Ada runs five kilometres before work."]
    await mark_failed(migrated_dsn, failing, "model refused the input: context length exceeded")
    _connect(browser, server, KEY_ADA)
    rows = _all(browser, "#namespaces tbody tr")
    cells = [_text(cell) for cell in rows[0].find_elements("css selector", "th, td")]
    assert cells[:5] == ["ada", "6", "5", "0", "1"]
    assert cells[5].endswith("UTC")
    assert _all(browser, "#chart-namespaces .bar-row")
    assert len(_all(browser, "#chart-writes rect.created")) == 30
    screenshot(browser, "namespaces")
    _all(browser, ".switch button[value=hour]")[0].click()
    wait_for(browser, lambda d: len(_all(d, "#chart-writes rect.created")) == 48, "hourly writes")

    hits = _recall(browser, "What food must Ada avoid?")
    first = _text(hits[0].find_element("css selector", ".content"))
    assert "peanut" in first.lower()
    bars = [_text(b) for b in hits[0].find_elements("css selector", ".bar-label")]
    assert bars[0] == "fused"
    assert "vector" in bars
    fill = hits[0].find_element("css selector", ".fill.fused")
    width = browser.execute_script("return arguments[0].style.width", fill)
    assert width == "100%"  # the best hit's fused score is the scale
    screenshot(browser, "recall")

    hits[0].find_element("css selector", "a.open").click()
    content = _by_id(browser, "memory-content")
    assert _text(content) in {ADA[0]["content"], ADA[4]["content"]}
    assert '"kind": "health"' in _text(_by_id(browser, "memory-metadata"))
    actions = wait_for(browser, lambda d: _all(d, "#memory-audit tbody tr"), "the audit entries")
    cells = [[_text(td) for td in row.find_elements("css selector", "td")] for row in actions]
    assert [row[1] for row in cells] == ["create"]
    assert cells[0][2].startswith("key:")  # the admin key's fingerprint, never the key
    screenshot(browser, "memory")

    family = seeded[ADA[1]["content"]]
    changed = {"namespace": "ada", "content": "Ada's sister Maya moved to Bergen.", "key": "family"}
    with api_client(server, KEY_ADA, header="X-API-Key") as api:
        assert api.post("/v1/memories", json={"memories": [changed]}).status_code == 200
    browser.get(f"{server.url}/console/#/memory/{family}")
    shown = wait_for(browser, lambda d: _all(d, "#memory-versions li"), "the versions")
    assert [_text(v.find_element("css selector", "pre")) for v in shown] == [
        ADA[1]["content"],
        changed["content"],
    ]
    spans = [_text(v.find_element("css selector", ".span")) for v in shown]
    assert spans[0].startswith("version 1:")
    assert spans[1].startswith("version 2:")
    assert spans[1].endswith("now")
    screenshot(browser, "history")

    browser.get(f"{server.url}/console/#/failed")
    row = wait_for(browser, lambda d: _all(d, "#failed li"), "the failed list")[0]
    assert "context length exceeded" in _text(row.find_element("css selector", ".reason"))
    screenshot(browser, "failed")
    row.find_element("css selector", "button.retry").click()
    wait_for(
        browser,
        lambda d: "failed" not in _text(row.find_element("css selector", ".status")),
        "the retried status",
    )
    with api_client(server, KEY_ADA, header="X-API-Key") as api:
        assert api.get(f"/v1/memories/{failing}").json()["status"] in ("pending", "embedded")

    doomed = seeded["Ada prefers green tea to coffee in the morning."]
    browser.get(f"{server.url}/console/#/memory/{doomed}")
    _by_id(browser, "forget").click()
    wait_for(browser, lambda d: _by_id(d, "confirm").get_property("open"), "the confirmation")
    screenshot(browser, "forget")
    _by_id(browser, "confirm-yes").click()
    wait_for(browser, lambda d: _text(_by_id(d, "status")) == "Memory forgotten.", "the forget")
    with api_client(server, KEY_ADA, header="X-API-Key") as api:
        assert api.get(f"/v1/memories/{doomed}").status_code == 404
    assert page_errors(browser) == []


def test_stored_markup_is_shown_as_written_and_never_runs(
    browser: Any, server: ServerThread, seeded: dict[str, str]
) -> None:
    _connect(browser, server, KEY_ADA)
    hits = _recall(browser, "script img onerror pwned")
    shown = [_text(hit.find_element("css selector", ".content")) for hit in hits]
    assert HOSTILE in shown
    browser.get(f"{server.url}/console/#/memory/{seeded[HOSTILE]}")
    assert _text(_by_id(browser, "memory-content")) == HOSTILE
    assert HOSTILE.replace('"', '\\"') in _text(_by_id(browser, "memory-metadata"))
    assert browser.execute_script("return window.__pwned === undefined")
    assert (
        browser.execute_script("return document.querySelectorAll('main img, main script').length")
        == 0
    )
    screenshot(browser, "hostile")
    assert page_errors(browser) == []
    # The page's policy refuses HTML from a string, so a slip to innerHTML would throw.
    refused = browser.execute_script(
        "try { document.body.innerHTML = '<b>x</b>'; return false } catch (e) { return e.name }"
    )
    assert refused == "TypeError"


def test_a_key_for_one_namespace_never_sees_another(
    browser: Any, server: ServerThread, seeded: dict[str, str]
) -> None:
    browser.get(f"{server.url}/console/")
    field = _by_id(browser, "key")
    field.send_keys("not-a-key-at-all-0000")
    field.submit()
    wait_for(browser, lambda d: _text(_by_id(d, "status")) == "unknown API key", "the refusal")

    _connect(browser, server, KEY_ADA)
    assert [
        _text(r.find_element("css selector", "th")) for r in _all(browser, "#namespaces tbody tr")
    ] == ["ada"]
    _recall(browser, "locker code")
    boxes = [box.get_property("value") for box in _all(browser, "input[name=namespaces]")]
    assert boxes == ["ada"]
    browser.get(f"{server.url}/console/#/memory/{seeded[BOB_SECRET]}")
    wait_for(browser, lambda d: _all(d, "main p.error"), "the error")
    assert f"no memory {seeded[BOB_SECRET]}" in _text(_all(browser, "main p.error")[0])
    assert BOB_SECRET not in browser.page_source
    assert browser.execute_script("return sessionStorage.getItem('pgrecall.key')") == KEY_ADA
    assert browser.execute_script("return localStorage.length") == 0


def test_a_phone_width_screen_and_the_keyboard_alone(
    browser: Any, server: ServerThread, seeded: dict[str, str]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(390, 844)
    try:
        browser.get(f"{server.url}/console/")
        _by_id(browser, "key")  # focused on arrival
        keys = ActionChains(browser)
        keys.send_keys(KEY_ADA, Keys.ENTER).perform()
        wait_for(browser, lambda d: _all(d, "#namespaces tbody tr"), "the namespaces table")
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        screenshot(browser, "phone-namespaces")

        def tab_to(description: str, script: str) -> None:
            for _ in range(40):
                if browser.execute_script(f"const e = document.activeElement; return {script}"):
                    return
                ActionChains(browser).send_keys(Keys.TAB).perform()
            pytest.fail(f"Tab never reached {description}")

        tab_to("the Recall link", "e.getAttribute('href') === '#/recall'")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        wait_for(browser, lambda d: _all(d, "#query"), "the recall form")
        tab_to("the query", "e.id === 'query'")
        ActionChains(browser).send_keys("peanuts", Keys.ENTER).perform()
        wait_for(browser, lambda d: _all(d, "#hits li.hit"), "the hits")
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        screenshot(browser, "phone-recall")
        tab_to("the first hit's link", "e.classList.contains('open')")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        _by_id(browser, "memory-content")
        tab_to("the forget button", "e.id === 'forget'")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        wait_for(browser, lambda d: _by_id(d, "confirm").get_property("open"), "the confirmation")
        assert browser.execute_script("return document.activeElement.value") == "cancel"
        ActionChains(browser).send_keys(Keys.ESCAPE).perform()
        wait_for(browser, lambda d: not _by_id(d, "confirm").get_property("open"), "the close")
        assert _all(browser, "#memory-content")  # Escape kept the memory
    finally:
        browser.set_window_size(1280, 900)
