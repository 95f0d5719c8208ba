"""The web page of `diarist serve` in a real Chromium, against a live server, with no network.

One server, one browser and one finished job (the sample, precision-2 with transcription and
per-turn confidence) serve every test; the page makes only the public API calls a client makes.
Every request that leaves 127.0.0.1 is refused, so the page and /docs must load from the package.
Set DIARIST_WEB_SCREENSHOTS to a folder to save the screenshots docs/ shows (desktop and phone).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from diarist.exports import FORMATS
from diarist.jobs.tables import STATUSES
from diarist.vocabulary import DEFAULT_MODEL, DIARIZATION_MODELS

from .conftest import SAMPLE, wav_bytes
from .live import CHROMIUM, CHROMIUM_ARGS, LiveServer, create_key, submit, upload, wait_for

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000  # the job: precision-2 and Whisper on 30 s, on a shared 2-core machine
SCREENSHOTS = os.environ.get("DIARIST_WEB_SCREENSHOTS")

if not CHROMIUM.exists():
    pytest.skip(
        "chromium is not installed (/usr/bin/chromium): `scripts/setup --browser` installs it with apt",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: run scripts/setup")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    live = LiveServer(tmp_path_factory.mktemp("web-server")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def web_key(web):
    return create_key(web.data_dir, "browser", "--rate-limit", "0")


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """A fresh Chromium profile whose every request beyond this machine is refused (and recorded)."""
    with sync_api.sync_playwright() as playwright:
        profile = tmp_path_factory.mktemp("chromium-profile")
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, accept_downloads=True
        )
        context.refused = []

        def offline(route):
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                context.refused.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        yield context
        context.close()
        assert context.refused == [], f"the page reached beyond the server: {context.refused}"


@pytest.fixture
def page(context):
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A script, style or request the page's Content-Security-Policy refuses is only a console error.
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    page.close()
    assert errors == [], f"the page threw: {errors}"


def sign_in(page, web, key: str) -> None:
    page.goto(f"{web.url}/")
    page.fill("#key", key)
    page.click("#sign-in-form button")


@pytest.fixture(scope="module")
def finished(context, web, web_key) -> str:
    """The sample uploaded through the page (drop zone's file input), diarized and transcribed; its jobId."""
    page = context.new_page()
    sign_in(page, web, web_key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.check("#options input[name=transcription]")
    page.check("#options input[name=turnLevelConfidence]")
    page.set_input_files("#files", str(SAMPLE))
    row = page.wait_for_selector("#job-rows li[data-status=succeeded]", timeout=TIMEOUT_MS)
    job_id = row.get_attribute("data-job")
    page.close()
    return job_id


def api_job(web, key, job_id: str, **params) -> dict:
    with web.client(key) as client:
        answer = client.get(f"/v1/jobs/{job_id}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression from outside the page until it is true.

    Not `page.wait_for_function`: its polling evaluates a string inside the page, which the page's
    Content-Security-Policy (no eval) refuses.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        time.sleep(0.1)


def open_result(page, web, key, job_id: str) -> None:
    sign_in(page, web, key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.goto(f"{web.url}/#job={job_id}")
    page.wait_for_selector("#lanes .lane")
    wait_until(page, "document.querySelector('#player').readyState >= 1")  # audio metadata came


def test_bad_key_shows_why(page, web):
    sign_in(page, web, "dia_not-a-key")
    error = page.wait_for_selector("#error:not([hidden])")
    assert "Invalid API key" in error.inner_text()
    assert page.is_hidden("#work")
    assert page.evaluate("sessionStorage.getItem('diarist.key')") is None


def choices(page) -> dict:
    """The model choice (options, selected), the status filter's options and the export formats."""
    return page.evaluate(
        """() => ({
            models: [...document.querySelectorAll('#options select[name=model] option')].map(o => o.value),
            model: document.querySelector('#options select[name=model]').value,
            statuses: [...document.querySelectorAll('#status-filter option')].map(o => o.value),
            formats: [...document.querySelectorAll('#exports button')].map(b => b.dataset.format),
        })"""
    )


def test_choices_come_from_the_vocabulary(page, web, web_key):
    sign_in(page, web, web_key.key)
    page.wait_for_selector("#work:not([hidden])")
    assert choices(page) == {
        "models": list(DIARIZATION_MODELS),
        "model": DEFAULT_MODEL,
        "statuses": ["", *STATUSES],
        "formats": list(FORMATS),
    }
    # Another answer shows as another page: the page reads the choices from the endpoint, nowhere else.
    vocabulary = httpx.get(f"{web.url}/web/vocabulary").json()
    changed = {**vocabulary, "models": ["community-1", "other-1"], "defaultModel": "other-1", "exportFormats": ["srt"]}
    page.route("**/web/vocabulary", lambda route: route.fulfill(json=changed))
    page.reload()
    page.wait_for_selector("#work:not([hidden])")
    assert choices(page) == {
        "models": ["community-1", "other-1"],
        "model": "other-1",
        "statuses": ["", *STATUSES],
        "formats": ["srt"],
    }


def test_lanes_match_the_api_output(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    output = api_job(web, web_key, finished)["output"]
    expected: dict[str, list[list[float]]] = {}
    for turn in output["diarization"]:
        expected.setdefault(turn["speaker"], []).append([turn["start"], turn["end"]])
    assert len(expected) == 2  # the sample has two speakers
    drawn = page.eval_on_selector_all(
        "#lanes .lane",
        """lanes => Object.fromEntries(lanes.map(lane => [lane.dataset.speaker,
               [...lane.querySelectorAll('.turn')].map(t => [Number(t.dataset.start), Number(t.dataset.end)])]))""",
    )
    assert drawn == {speaker: sorted(turns) for speaker, turns in expected.items()}
    # The player has the whole file's length from its metadata, streamed, not decoded.
    duration = page.evaluate("document.querySelector('#player').duration")
    assert duration == pytest.approx(30, abs=0.5)
    # Per-turn confidence was asked for: transcript lines show their turn's score for their speaker.
    scores = page.locator("#transcript .confidence").all_inner_texts()
    assert len(scores) >= len(output["turnLevelTranscription"]) // 2
    assert all(re.fullmatch(r"\d{1,3}%", score) for score in scores), scores
    if SCREENSHOTS:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(Path(SCREENSHOTS) / "web-result.png"), full_page=True)


def test_transcript_line_and_keys_move_playback(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    lines = page.locator("#transcript li")
    assert lines.count() >= 3
    third = lines.nth(2)
    start = float(third.get_attribute("data-start"))
    assert start > 1
    third.click()
    wait_until(page, f"Math.abs(document.querySelector('#player').currentTime - {start}) < 0.5")
    assert "current" in third.get_attribute("class")
    page.locator("body").press(" ")  # pause
    assert page.evaluate("document.querySelector('#player').paused")
    page.locator("body").press("ArrowRight")  # the next turn, playing
    fourth = float(lines.nth(3).get_attribute("data-start"))
    wait_until(
        page,
        f"""Math.abs(document.querySelector('#player').currentTime - {fourth}) < 0.5
            && document.querySelectorAll('#transcript li')[3].classList.contains('current')""",
    )


def test_rename_survives_reload_and_reaches_the_export(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    name = page.locator('#speakers li[data-speaker="SPEAKER_00"] input')
    with page.expect_response(lambda r: r.url.endswith("/speakers") and r.request.method == "PUT") as put:
        name.fill("Alice")
        name.press("Enter")
        name.blur()
    assert put.value.status == 200
    page.reload()  # the key lives in sessionStorage and the job in the address: both survive
    page.wait_for_selector("#lanes .lane")
    assert page.inner_text('#lanes .lane[data-speaker="SPEAKER_00"] .lane-name') == "Alice"
    assert page.input_value('#speakers li[data-speaker="SPEAKER_00"] input') == "Alice"
    assert "Alice" in page.locator("#transcript .who").all_inner_texts()
    with page.expect_download() as download:
        page.click('#exports button[data-format="srt"]')
    assert download.value.suggested_filename == f"{finished}.srt"
    srt = Path(download.value.path()).read_text()
    assert re.search(r"^1\n\d\d:\d\d:\d\d,\d\d\d --> ", srt, re.M)
    assert "Alice" in srt
    # The API's output keeps its labels unless a client asks for names.
    speakers = {t["speaker"] for t in api_job(web, web_key, finished)["output"]["diarization"]}
    assert "SPEAKER_00" in speakers


def test_a_name_with_markup_stays_text(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    markup = '<img src=x onerror="document.title=1">Bo'
    name = page.locator('#speakers li[data-speaker="SPEAKER_01"] input')
    with page.expect_response(lambda r: r.url.endswith("/speakers") and r.request.method == "PUT"):
        name.fill(markup)
        name.press("Enter")
    page.reload()
    page.wait_for_selector("#lanes .lane")
    assert page.inner_text('#lanes .lane[data-speaker="SPEAKER_01"] .lane-name') == markup
    assert page.locator("#result img").count() == 0 and page.title() != "1"
    headers = page.request.get(f"{web.url}/").headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_the_address_opens_job_ids_only(page, web, web_key):
    """Any link can set #job=: a path there (another key's pre-signed download of a forged job) is not
    fetched with the signed-in key, nor shown as a result."""
    forged = {
        "jobId": "00000000-0000-0000-0000-000000000000",
        "status": "succeeded",
        "kind": "diarize",
        "url": "https://example.com/a.wav",
        "output": {"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 1}]},
        "duration": 1,
        "rate": 50,
        "peaks": [0] * 50,
    }
    with web.client(create_key(web.data_dir, "other", "--rate-limit", "0")) as other:
        upload(other, json.dumps(forged).encode(), "forged.json")
        link = other.post("/v1/media/output", json={"url": "media://forged.json"}).json()["url"]
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(urlsplit(request.url).path))
    sign_in(page, web, web_key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.goto(f"{web.url}/#job=../media/download/{link.rsplit('/', 1)[1]}%3F")
    error = page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert "not a job id" in error.inner_text()
    assert page.is_hidden("#result")
    assert not any(path.startswith("/v1/media/download/") for path in fetched), fetched


def test_non_audio_upload_shows_why_it_failed(page, web, web_key):
    sign_in(page, web, web_key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.select_option("#options select[name=model]", "community-1")
    page.set_input_files("#files", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a recording\n"})
    reason = page.wait_for_selector("#job-rows li[data-status=failed] .reason", timeout=60_000)
    assert "not audio" in reason.inner_text()
    # The server names the input by the page's media URL; the user knows it by the file's name.
    assert "media://" not in reason.inner_text() and "from notes.txt:" in reason.inner_text()


def test_a_job_run_again_says_which_attempt_it_is(page, web):
    key = create_key(web.data_dir, "attempts", "--rate-limit", "0")
    sign_in(page, web, key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.set_input_files("#files", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a recording\n"})
    job_id = page.wait_for_selector("#job-rows li[data-status=failed]", timeout=60_000).get_attribute("data-job")
    facts = f'#job-rows li[data-job="{job_id}"] .job-facts'
    assert "attempt" not in page.inner_text(facts)  # a first run says nothing of it
    # As the reaper counts a run whose worker died: the job's row says it ran twice.
    with sqlite3.connect(web.data_dir / "diarist.db") as database:
        database.execute("UPDATE jobs SET attempts = 2 WHERE id = ?", (job_id,))
    page.reload()
    page.wait_for_selector(facts)
    wait_until(page, f"document.querySelector('{facts}')?.textContent.includes('attempt 2')")


WAVE_SCROLL = "document.querySelector('#waveform > div').shadowRoot.querySelector('[part=scroll]')"
WAVE_WIDTH = "document.querySelector('#waveform > div').shadowRoot.querySelector('[part=wrapper]').clientWidth"


def test_zoom_widens_and_scrolls_the_waveform_and_the_lanes_together(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    wait_until(page, f"document.querySelector('#result').dataset.rendered === '{finished}'")
    first = page.locator("#lanes .turn").first
    box, wave = first.bounding_box(), page.evaluate(WAVE_WIDTH)
    page.click("#zoom-in")
    page.locator("body").press("+")
    assert page.inner_text("#zoom-level") == "4\u00d7" and page.is_enabled("#zoom-out")
    wait_until(page, f"{WAVE_WIDTH} > {3.9 * wave}")
    zoomed = first.bounding_box()
    assert zoomed["width"] == pytest.approx(4 * box["width"], rel=0.05)
    # Scrolling the waveform scrolls every lane by as many pixels.
    page.evaluate(f"{WAVE_SCROLL}.scrollLeft = 300")
    wait_until(page, f"{WAVE_SCROLL}.scrollLeft === 300")
    wait_until(
        page, f"Math.abs(document.querySelector('#lanes .turn').getBoundingClientRect().x - {zoomed['x'] - 300}) < 2"
    )
    # A click on a turn still plays from its start.
    turn = page.locator("#lanes .turn").nth(3)
    turn.scroll_into_view_if_needed()
    start = float(turn.get_attribute("data-start"))
    turn.click()
    wait_until(page, f"Math.abs(document.querySelector('#player').currentTime - {start}) < 0.5")
    page.locator("body").press("-")
    page.click("#zoom-out")
    assert page.inner_text("#zoom-level") == "1\u00d7" and page.is_disabled("#zoom-out")
    wait_until(page, f"Math.abs({WAVE_WIDTH} - {wave}) < 2")
    assert first.bounding_box()["width"] == pytest.approx(box["width"], rel=0.05)


def test_the_job_list_shows_more_jobs_on_demand(page, web):
    key = create_key(web.data_dir, "many-jobs", "--rate-limit", "0")  # a key of its own: only these jobs
    with web.client(key) as api:
        media = upload(api, b"not a recording\n", "notes.txt")
        ids = [api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"] for _ in range(23)]
    sign_in(page, web, key.key)
    page.wait_for_selector("#job-rows li[data-job]")
    rows = page.locator("#job-rows li[data-job]")
    assert rows.count() == 20 and page.locator("#more-jobs").is_visible()
    page.click("#more-jobs")
    wait_until(page, "document.querySelectorAll('#job-rows li[data-job]').length === 23")
    assert page.locator("#more-jobs").is_hidden()
    assert [row.get_attribute("data-job") for row in rows.all()] == ids[::-1]  # newest first, each once
    page.select_option("#status-filter", "failed")  # a new filter starts again from one page
    wait_until(page, "document.querySelector('#more-jobs').hidden === false", timeout=60)
    assert rows.count() == 20


def test_docs_work_offline_and_list_the_routes(page, web):
    page.goto(f"{web.url}/docs")
    page.wait_for_selector(".opblock")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for route in ("/v1/diarize", "/v1/jobs/{jobId}", "/v1/media/input"):
        assert route in "".join(paths).replace("\u200b", "")
    page.click(".btn.authorize")
    assert "api-key" in page.inner_text(".modal-ux")  # the bearer scheme the routes declare
    assert httpx.get(f"{web.url}/redoc").status_code == 404  # it needed a CDN; /docs replaces it


def test_page_files_ship_in_the_wheel(tmp_path):
    """The page, its vendored files and their licences are package data: an installed server has them."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root, copy = Path(__file__).parents[1], tmp_path / "source"
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    shutil.copytree(root / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, copy / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*command, str(copy)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("diarist-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = "diarist/web/"
    scripts = [f"static/{path.name}" for path in (root / "src/diarist/web/static").glob("*.js")]
    assert "static/app.js" in scripts
    for path in (
        *scripts,
        "index.html",
        "static/app.css",
        "static/vendor/README.md",
        "static/vendor/wavesurfer/wavesurfer.esm.js",
        "static/vendor/wavesurfer/plugins/timeline.esm.js",
        "static/vendor/wavesurfer/LICENSE",
        "static/vendor/swagger-ui/swagger-ui-bundle.js",
        "static/vendor/swagger-ui/swagger-ui.css",
        "static/vendor/swagger-ui/LICENSE",
        "static/vendor/swagger-ui/NOTICE",
    ):
        assert web + path in names, path


def test_the_job_list_marks_the_open_job_and_says_what_each_asked_for(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    row = page.locator(f'#job-rows li[data-job="{finished}"]')
    wait_until(page, f"document.querySelector('#job-rows li[data-job=\"{finished}\"]')?.classList.contains('open')")
    assert row.get_attribute("aria-current") == "true"
    assert page.locator("#job-rows li.open").count() == 1
    facts = row.locator(".job-facts").inner_text()
    assert facts.startswith(DEFAULT_MODEL) and "transcription" in facts and "turnLevelConfidence" in facts
    assert re.search(r"took \d+ (s|min)", facts), facts
    # The creation time stays on one line, beside the name.
    created = row.locator("time").bounding_box()
    assert created["height"] < 1.6 * float(
        page.evaluate("parseFloat(getComputedStyle(document.querySelector('#job-rows time')).lineHeight) || 16")
    )
    # The result replaces the new-job forms; "New" brings them back and unmarks the job.
    assert page.is_hidden("#upload") and page.is_visible("#result")
    page.click("#new-job")
    page.wait_for_selector("#upload:not([hidden])")
    assert page.is_hidden("#result") and page.locator("#job-rows li.open").count() == 0


def test_sdk_uploads_show_a_short_name_and_cancel_asks_first(page, web):
    key = create_key(web.data_dir, "sdk-names", "--rate-limit", "0")  # a key of its own: only these jobs
    with web.client(key) as api:
        media = upload(api, SAMPLE, "0123456789abcdef0123456789abcdef")  # the SDK's name for an upload
        job_id = submit(api, "/v1/diarize", url=media, transcription=True)
    sign_in(page, web, key.key)
    row = page.locator(f'#job-rows li[data-job="{job_id}"]')
    page.wait_for_selector(f'#job-rows li[data-job="{job_id}"] .job-name')
    assert row.locator(".job-name").inner_text() == "upload 01234567"
    # While it runs: a progress bar with the job's progress.
    page.wait_for_selector(f'#job-rows li[data-job="{job_id}"][data-status=running] progress', timeout=120_000)
    asked: list[str] = []

    def answer(dialog, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    row.locator("button", has_text="Cancel").click()
    assert asked == ["Cancel the job of upload 01234567?"]
    page.wait_for_timeout(500)
    assert api_job(web, key, job_id)["status"] == "running"  # declined: the job goes on
    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    row.locator("button", has_text="Cancel").click()
    page.wait_for_selector(f'#job-rows li[data-job="{job_id}"][data-status=canceled]')
    assert len(asked) == 2 and api_job(web, key, job_id)["status"] == "canceled"


def test_created_jobs_collapse_into_one_line(page, web):
    key = create_key(web.data_dir, "many-uploads", "--rate-limit", "0")
    sign_in(page, web, key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.select_option("#options select[name=model]", "community-1")
    notes = [{"name": f"notes-{i}.txt", "mimeType": "text/plain", "buffer": b"not a recording\n"} for i in range(3)]
    page.set_input_files("#files", notes)
    wait_until(page, "document.querySelector('#upload-summary').textContent === '3 jobs created: see the job list.'")
    assert page.locator("#uploads li").count() == 0


def test_uploads_say_when_they_wait_for_the_rate_limit(page, web):
    key = create_key(web.data_dir, "rate-limited", "--rate-limit", "3")  # sign-in and the job list use some
    sign_in(page, web, key.key)
    page.wait_for_selector("#work:not([hidden])")
    notes = [{"name": f"notes-{i}.txt", "mimeType": "text/plain", "buffer": b"not a recording\n"} for i in range(4)]
    page.set_input_files("#files", notes)
    wait_until(page, "document.querySelector('#uploads').textContent.includes(\"waiting for the key's rate limit\")")


def test_a_url_can_be_diarized_from_the_page(page, web):
    key = create_key(web.data_dir, "url-job", "--rate-limit", "0")
    sign_in(page, web, key.key)
    page.wait_for_selector("#work:not([hidden])")
    page.select_option("#options select[name=model]", "community-1")
    page.fill("#url", "https://example.invalid/meeting.wav")
    with page.expect_response(lambda r: r.url.endswith("/v1/diarize") and r.request.method == "POST") as created:
        page.click("#url-form button")
    assert created.value.status == 200
    job = api_job(web, key, created.value.json()["jobId"], details="true")
    assert job["url"] == "https://example.invalid/meeting.wav" and job["model"] == "community-1"
    page.wait_for_selector(f'#job-rows li[data-job="{job["jobId"]}"]')
    assert page.input_value("#url") == ""


def test_sign_in_says_how_to_get_a_key(page, web):
    page.goto(f"{web.url}/")
    assert "diarist keys create" in page.inner_text("#sign-in")


def test_lane_colours_stay_apart_for_many_speakers(page, web):
    """14 speakers: every two lane colours at least 35 apart in RGB (the old palette had two 23 apart);
    30 speakers: none the same."""
    page.goto(f"{web.url}/")
    colours = page.evaluate(
        """async () => {
            const { color } = await import('/static/speakers.js');
            const speakers = Array.from({ length: 30 }, (_, i) => `SPEAKER_${String(i).padStart(2, '0')}`);
            const swatch = document.body.appendChild(document.createElement('i'));
            return speakers.map((speaker) => {
                swatch.style.color = color({ speakers }, speaker);
                return getComputedStyle(swatch).color.match(/\\d+/g).map(Number);
            });
        }"""
    )
    assert len({tuple(c) for c in colours}) == 30, colours
    closest = min(math.dist(a, b) for a, b in itertools.combinations(colours[:14], 2))
    assert closest >= 35, colours[:14]


def test_identify_results_show_each_speakers_match_and_confidence(page, web, web_key, sample_audio):
    with web.client(web_key) as api:
        # One voice: 10-14 s of the sample is one speaker's turn.
        enrolled = upload(api, wav_bytes(sample_audio[10 * 16000 : 14 * 16000]), "enroll.wav")
        voiceprint = wait_for(api, submit(api, "/v1/voiceprint", url=enrolled), timeout=300)
        assert voiceprint["status"] == "succeeded", voiceprint
        media = upload(api, SAMPLE, "meeting.wav")
        voiceprints = [{"label": "Diane", "voiceprint": voiceprint["output"]["voiceprint"]}]
        job_id = submit(api, "/v1/identify", url=media, model="community-1", voiceprints=voiceprints)
        job = wait_for(api, job_id, timeout=300)
    assert job["status"] == "succeeded", job
    open_result(page, web, web_key, job_id)
    expected = {}
    for found in job["output"]["voiceprints"]:
        scores = {label: math.floor(score + 0.5) for label, score in found["confidence"].items()}  # JS rounding
        best = max(scores, key=scores.get)
        if found["match"]:
            expected[found["speaker"]] = f"matches {found['match']} ({scores[found['match']]}% confidence)"
        else:
            expected[found["speaker"]] = f"no match (closest: {best}, {scores[best]}%)"
    assert any(text.startswith("matches Diane") for text in expected.values()), expected
    shown = page.eval_on_selector_all(
        "#speakers li",
        "items => Object.fromEntries(items.map(i => [i.dataset.speaker, i.querySelector('.match')?.textContent]))",
    )
    assert shown == expected


def test_time_axis_labels_stay_readable_at_every_zoom(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    wait_until(page, f"document.querySelector('#result').dataset.rendered === '{finished}'")
    labels_in_view = """() => {
        const root = document.querySelector('#waveform > div').shadowRoot;
        const view = root.querySelector('[part=scroll]').getBoundingClientRect();
        return [...root.querySelectorAll('[part~=timeline-notch]')]
            .map((n) => ({ text: n.textContent, x: n.getBoundingClientRect().x,
                           size: parseFloat(getComputedStyle(n).fontSize),
                           opacity: Number(getComputedStyle(n).opacity) }))
            .filter((n) => n.text && n.x >= view.left && n.x < view.right);
    }"""
    for zoom in (1, 2, 4, 8):
        assert page.inner_text("#zoom-level") == f"{zoom}\u00d7"
        page.wait_for_timeout(300)  # the axis is drawn on wavesurfer's next frames
        labels = page.evaluate(labels_in_view)
        assert len(labels) >= 4, (zoom, labels)
        assert all(label["size"] >= 12 and label["opacity"] == 1 for label in labels), (zoom, labels)
        gaps = [b["x"] - a["x"] for a, b in itertools.pairwise(labels)]
        assert min(gaps) >= 40, (zoom, gaps)  # room for each label
        page.click("#zoom-in")


def test_transcript_labels_its_confidence_column(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    assert page.is_visible("#confidence-head") and page.inner_text("#confidence-head") == "Confidence"


def touch_screen(cdp) -> None:
    """Make the page's screen a touch screen, as a phone's is (its CSS sees `hover: none`)."""
    cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    cdp.send("Emulation.setEmitTouchEventsForMouse", {"enabled": True, "configuration": "mobile"})


def test_phone_shows_whole_lane_labels_and_no_keyboard_hint_on_touch(page, web, web_key, finished):
    open_result(page, web, web_key, finished)
    assert page.is_visible("#keys-hint")  # a mouse and a keyboard: the hint helps
    page.set_viewport_size({"width": 390, "height": 844})
    cdp = page.context.new_cdp_session(page)
    touch_screen(cdp)
    page.reload()
    page.wait_for_selector("#lanes .lane")
    cut = page.eval_on_selector_all(".lane-name", "names => names.filter(n => n.scrollWidth > n.clientWidth).length")
    assert cut == 0
    # File names on one line each, whole in their title, never broken mid-word.
    page.wait_for_selector("#job-rows .job-name")  # the list comes after the result, from its own request
    names = page.eval_on_selector_all(
        "#job-rows .job-name",
        "ns => ns.map(n => [n.title, n.getBoundingClientRect().height / parseFloat(getComputedStyle(n).fontSize)])",
    )
    assert names and all(title and ems < 2 for title, ems in names), names  # a line is about 1.2 em high
    assert page.is_hidden("#keys-hint")
    if SCREENSHOTS:
        wait_until(page, f"document.querySelector('#result').dataset.rendered === '{finished}'")
        # A full-page screenshot resets the touch emulation: a viewport as tall as the page instead.
        page.set_viewport_size({"width": 390, "height": page.evaluate("document.documentElement.scrollHeight")})
        touch_screen(cdp)
        page.wait_for_timeout(500)  # wavesurfer redraws for the new size on its next frames
        page.screenshot(path=str(Path(SCREENSHOTS) / "web-phone.png"))
