"""The fleet page in a real headless Chromium, against a real rendezvous (uvicorn on
loopback) and real workers (holepunch_worker, in-process, with a dev STUN server).

Every wait is on the DOM (Playwright's expect), never a sleep; "within 2 s" is the
timeout of the wait that starts once the worker is registered or stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import RendezvousConfig

from tests.support.punch_workers import (
    LyingStunServer,
    RunningWorker,
    running_worker,
    running_workers,
    stun_servers,
)
from tests.support.rendezvous import RunningRendezvous, running_rendezvous

ADMIN_TOKEN = "admin-token-for-the-browser-test"
RENDEZVOUS_TOKEN = "worker-token-for-the-browser-test"
VIEWPORT = {"width": 1400, "height": 950}
LIVE_MS = 2_000  # the bound for a change to show


try:
    from playwright.async_api import Error as PlaywrightError
except ImportError:  # conftest skips every test here, saying why
    PlaywrightError = Exception


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


@contextlib.asynccontextmanager
async def fleet_page(browser: Any, url: str, **context: Any) -> AsyncIterator[Any]:
    """The page, loaded and live (its event stream said hello); JavaScript errors fail."""
    session = await browser.new_context(viewport=VIEWPORT, **context)
    page = await session.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(url + "/ui")
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        yield page
        assert not errors, errors
    finally:
        await session.close()


def row(page: Any, worker_id: str) -> Any:
    return page.locator(f"#fleet-table tbody tr[data-worker-id='{worker_id}']")


async def registered(worker: RunningWorker) -> None:
    await worker.log.wait_for_event("endpoint_ack", status="success")


async def test_lists_workers_and_shows_joins_and_leaves_within_2_s(
    browser: Any, screenshots: Path
) -> None:
    async with (
        running_rendezvous() as server,
        running_workers(server.http_url, ("alpha", {"WORKER_TAGS": "gpu"}), ("beta", {})) as (
            alpha,
            beta,
        ),
        stun_servers() as stun,
    ):
        await registered(alpha)
        await registered(beta)
        async with fleet_page(browser, server.http_url) as page:
            for worker in (alpha, beta):
                await expect(row(page, worker.worker_id)).to_be_visible()
            alpha_row = row(page, "alpha")
            await expect(alpha_row.locator(".badge")).to_have_attribute(
                "data-mapping", "endpoint_independent"
            )
            await expect(alpha_row).to_contain_text("gpu")
            await expect(alpha_row).to_contain_text(f"{alpha.udp_address[0]}:")
            fingerprint = (await alpha.status())["key_fingerprint"]
            await expect(alpha_row).to_contain_text(fingerprint)

            async with running_worker("gamma", server.http_url, stun, {}) as gamma:
                await registered(gamma)
                await expect(row(page, "gamma")).to_be_visible(timeout=LIVE_MS)
                await expect(page.locator("#live-log")).to_contain_text("gamma joined")
                await page.screenshot(path=screenshots / "three-workers.png")
            await expect(row(page, "gamma")).to_have_count(0, timeout=LIVE_MS)
            await expect(page.locator("#live-log")).to_contain_text("gamma left")

            # Search and filters narrow the table on the server.
            await page.fill("#search", "alp")
            await expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
            await expect(row(page, "alpha")).to_be_visible()
            await page.fill("#search", "")
            await page.select_option("#tag-filter", "gpu")
            await expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
            await page.select_option("#tag-filter", "")
            await page.select_option("#mapping-filter", "endpoint_dependent")
            await expect(page.locator("#fleet-table tbody tr")).to_have_count(0)
            await expect(page.locator("#page-info")).to_have_text("no worker matches")


async def test_an_introduction_draws_a_direct_path_and_a_relayed_pair_is_drawn_relayed(
    browser: Any, screenshots: Path
) -> None:
    """Four workers: A and B reach each other directly; C and D registered endpoints where
    nothing listens (a lying STUN server), so their punch fails and they relay."""
    async with (
        running_rendezvous() as server,
        LyingStunServer.running(shift=1000) as lying,
        running_workers(
            server.http_url,
            ("worker-a", {"WORKER_TAGS": "team-a"}),
            ("worker-b", {"WORKER_TAGS": "team-a"}),
            ("worker-c", {"STUN_SERVERS": lying, "WORKER_TAGS": "team-b"}),
            ("worker-d", {"STUN_SERVERS": lying, "WORKER_TAGS": "team-b"}),
        ) as workers,
    ):
        for worker in workers:
            await registered(worker)
        async with fleet_page(browser, server.http_url) as page:
            # The operator introduces A and B through the page's form (POST /admin/introduce).
            await page.fill("#intro-a", "worker-a")
            await page.fill("#intro-b", "worker-b")
            await page.click("#introduce button[type=submit]")
            await expect(page.locator("#action-status")).to_contain_text("Introduced worker-a")
            direct = page.locator("#paths-svg .path[data-a='worker-a'][data-b='worker-b']")
            await expect(direct).to_have_attribute("data-state", "direct", timeout=5_000)
            await expect(direct.locator("line")).to_have_count(1)
            await expect(direct.locator("text")).to_contain_text("ms")  # its RTT

            async with httpx.AsyncClient(base_url=server.http_url) as client:
                answer = await client.post(
                    "/admin/introduce", json={"initiator": "worker-c", "responder": "worker-d"}
                )
                assert answer.status_code == 200, answer.text
            relayed = page.locator("#paths-svg .path[data-a='worker-c'][data-b='worker-d']")
            await expect(relayed).to_have_attribute("data-state", "punching", timeout=LIVE_MS)
            await expect(relayed).to_have_attribute("data-state", "relayed", timeout=5_000)
            # Drawn through the relay: a polyline bending at the picture's relay node.
            await expect(relayed.locator("polyline")).to_have_count(1)
            await expect(page.locator("#paths-svg .relay-node")).to_have_count(1)
            await expect(page.locator("#results")).to_contain_text("relayed via relay")

            await page.click("#paths-svg .node[data-worker-id='worker-c']")
            await expect(page.locator("#relay-share")).to_have_text("100 %")
            await expect(page.locator("#detail-sessions")).to_contain_text("worker-d: relayed")
            await page.screenshot(path=screenshots / "paths.png")


def token_rendezvous() -> contextlib.AbstractAsyncContextManager[RunningRendezvous]:
    config = RendezvousConfig(
        host="127.0.0.1",
        port=0,
        debug_endpoints=True,
        auth_mode=AuthMode.TOKEN,
        rendezvous_token=RENDEZVOUS_TOKEN,
        admin_token=ADMIN_TOKEN,
    )
    return running_rendezvous(config)


async def test_the_admin_credential_is_required_when_auth_is_on(
    browser: Any, screenshots: Path
) -> None:
    worker_env = {"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": RENDEZVOUS_TOKEN}
    async with (
        token_rendezvous() as server,
        running_workers(server.http_url, ("keyed", worker_env)) as [keyed],
    ):
        await registered(keyed)
        # No credential, or a wrong one: every part of the page is refused with a Basic
        # challenge, and the browser shows no page (headless, it cannot prompt: it shows
        # the 401 or gives up with ERR_INVALID_AUTH_CREDENTIALS).
        for credentials in (None, {"username": "operator", "password": "not-the-admin-token"}):
            context = await browser.new_context(http_credentials=credentials)
            try:
                for path in ("/ui", "/ui/static/app.js", "/ui/api/workers", "/ui/api/live"):
                    answer = await context.request.get(server.http_url + path)
                    assert answer.status == 401, path
                    assert answer.headers["www-authenticate"].startswith("Basic"), path
                page = await context.new_page()
                try:
                    response = await page.goto(server.http_url + "/ui")
                    assert response is not None and response.status == 401
                except PlaywrightError as error:
                    assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error)
                await expect(page.locator("#fleet-table")).to_have_count(0)
            finally:
                await context.close()

        # The operator's login: the page, its stream and its actions work.
        login = {"username": "operator", "password": ADMIN_TOKEN}
        async with fleet_page(browser, server.http_url, http_credentials=login) as page:
            await expect(row(page, "keyed")).to_be_visible()
            await row(page, "keyed").click()
            await page.click("#release-binding")
            await expect(page.locator("#confirm")).to_be_visible()
            await page.click("#confirm-ok")
            await expect(page.locator("#action-status")).to_contain_text("Released keyed")
            assert (await keyed.status())["key_fingerprint"] in (
                await page.locator("#action-status").inner_text()
            )
            await page.screenshot(path=screenshots / "released.png")
