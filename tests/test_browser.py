"""The chat window in a real browser: headless Chromium (Debian's package, driven by the python
`playwright` package) loads the app, sends a message and sees the streamed reply: text as typed
(no Markdown eats `6*7 and 8*9` or turns `#### 33` into a heading) and the tool call as a block.

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
    script, _, _ = tool_script(tok, "6*7 and 8*9 <b>stay</b>: ", "45-12", " so #### 33", "33")
    pool = EnginePool({"sft": Engine(ScriptedModel(script, tok, delay_s=0.01), tok)})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(pool, "sft", ChatDefaults(temperature=0.0, top_k=0, max_new_tokens=100), port=port, block=False)
    yield app.local_url
    app.close()


def test_browser_sends_a_message_and_sees_the_reply(app_url, tmp_path):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            box = page.locator("textarea").first
            box.wait_for(timeout=20_000)
            box.fill("What is 6*7 and 8*9? a_b_c")
            box.press("Enter")
            user = page.locator('[data-testid="user"]')
            bot = page.locator('[data-testid="bot"]')
            playwright_api.expect(user.first).to_contain_text("What is 6*7 and 8*9? a_b_c", timeout=20_000)
            playwright_api.expect(bot.last).to_contain_text("so #### 33", timeout=20_000)
            shown = bot.last.inner_text()
            assert "6*7 and 8*9 <b>stay</b>:" in shown and "\\" not in shown  # as written, no escapes
            assert bot.last.locator("h1, h2, h3, h4, em, strong, b").count() == 0  # no Markdown ate text
            block = bot.last.locator("pre")  # the tool call: a block of its own
            playwright_api.expect(block).to_have_count(1)
            assert block.inner_text().strip() == "python: 45-12 → 33"
            page.screenshot(path=str(tmp_path / "chat.png"))
        finally:
            browser.close()
