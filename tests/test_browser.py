"""The chat window in a real browser: headless Chromium (Debian's package, driven by the python
`playwright` package) loads the app, sends a message and sees the streamed reply.

Skips only when Chromium or playwright is not installed (CI's .ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest
from test_engine import ScriptedModel, make_tokenizer, tool_script

from llmstack.chat.resolve import EnginePool
from llmstack.engine import Engine

CHROMIUM = os.environ.get("LLMSTACK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from llmstack.chat.app import ChatDefaults, launch

    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    script, _, _ = tool_script(tok, "Let me compute. ", "12*7", " So it is 84.", "84")
    pool = EnginePool({"sft": Engine(ScriptedModel(script, tok, delay_s=0.01), tok)})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(pool, "sft", ChatDefaults(temperature=0.0, top_k=0, max_new_tokens=100), port=port, block=False)
    yield app.local_url
    app.close()


def test_browser_sends_a_message_and_sees_the_reply(app_url):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            box = page.locator("textarea").first
            box.wait_for(timeout=20_000)
            box.fill("What is 12*7?")
            box.press("Enter")
            user = page.locator('[data-testid="user"]')
            bot = page.locator('[data-testid="bot"]')
            playwright_api.expect(user.first).to_contain_text("What is 12*7?", timeout=20_000)
            playwright_api.expect(bot.last).to_contain_text("So it is 84.", timeout=20_000)
            shown = bot.last.inner_text()
            assert "Let me compute." in shown and "12*7" in shown  # the tool call is shown with its output
        finally:
            browser.close()
