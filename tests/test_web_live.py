"""The page's live view in a real Chromium: its microphone a WAV of two people taking turns, then the
same WAV played as a file at real time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.io.wavfile

from .live import CHROMIUM, CHROMIUM_ARGS, LiveServer, create_key
from .test_web import sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: run scripts/setup")


def test_the_live_view_draws_lanes_from_the_microphone_and_from_a_file(tmp_path, sample_audio):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (/usr/bin/chromium): `scripts/setup --browser` installs it")
    microphone = tmp_path / "microphone.wav"  # Chromium's fake capture plays it in a loop
    excerpt = sample_audio[int(6.5 * 16000) : int(20.5 * 16000)]
    scipy.io.wavfile.write(microphone, 16000, (excerpt * 32767).astype(np.int16))
    server = LiveServer(tmp_path / "server").start()  # a job worker, for the kept recording's diarization
    key = create_key(server.data_dir, "live-page")
    fake_microphone = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",  # the file plays from a file chooser Playwright fills
    ]
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + fake_microphone
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            sign_in(page, server, key.key)
            page.wait_for_selector("#work:not([hidden])")
            page.click("#live-start")
            wait_until(page, "document.querySelectorAll('#live-lanes .live-lane').length >= 2", timeout=90)
            widths = page.evaluate("[...document.querySelectorAll('#live-lanes .turn')].map(b => b.offsetWidth)")
            assert len(widths) >= 2 and max(widths) > 0
            page.click("#live-stop")
            wait_until(page, "document.querySelector('#live-status').textContent === 'Done.'", timeout=60)
            assert not page.is_disabled("#live-start")
            # A file played at real time: its lanes grow, and its end ends the stream.
            page.set_input_files("#live-file", str(microphone))
            wait_until(page, "document.querySelector('#live-status').textContent.startsWith('Streaming')")
            started = time.monotonic()
            wait_until(page, "document.querySelectorAll('#live-lanes .live-lane').length >= 2", timeout=90)
            wait_until(page, "document.querySelector('#live-status').textContent === 'Done.'", timeout=90)
            assert time.monotonic() - started > len(excerpt) / 16000 - 2  # played at its own pace
            ends = page.evaluate("[...document.querySelectorAll('#live-lanes .turn')].map(b => b.offsetLeft)")
            assert max(ends) / 12 <= len(excerpt) / 16000 + 1  # 12 px per second: no turn past the file's end
            # Kept: when the stream ends, the recording is diarized offline and its result opens.
            page.check("#live-keep")
            page.set_input_files("#live-file", str(microphone))
            wait_until(page, "document.querySelector('#live-status').textContent.startsWith('Streaming')")
            wait_until(page, "document.querySelector('#live-status').textContent.includes('is open')", 180)
            wait_until(page, "document.querySelectorAll('#lanes .lane').length === 2")  # the result draws after
            assert page.is_visible("#result")
            context.close()
            assert errors == [], f"the page threw: {errors}"
    finally:
        server.stop()
