"""Time to first render of the web page's result view for a 3-hour job, in Chromium (issue 12).

    cd bench && ../.venv/bin/python web_render.py [--minutes 180] [--model community-1] [--loads 5]

Runs a real `diarist serve` (local mode, its own data dir), uploads the dev clips concatenated to
`--minutes` through the media API, diarizes them (several minutes for 3 hours on 2 cores), then
opens the job's result view in headless Chromium `--loads` times, each in a fresh tab already
signed in, and times from navigation to the waveform and every speaker lane on screen. The page
gets the waveform as server-computed peaks and streams the audio with range requests, so the time
should not grow with the file's length; the bytes of audio the browser fetched before the first
render are reported to show it never downloads the file. Needs /usr/bin/chromium
(`scripts/setup --browser`) and playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import concatenated_dev, machine, write_wav

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/live.py: the same live server the tests start
from tests.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, create_key, upload, wait_for


def run_job(server: LiveServer, key, wav: Path, model: str) -> tuple[str, float]:
    """Upload and diarize `wav`; its jobId and how long the job took (upload excluded)."""
    with server.client(key) as client:
        media_url = upload(client, wav, "long.wav")
        started = time.monotonic()
        created = client.post("/v1/diarize", json={"url": media_url, "model": model})
        assert created.status_code == 200, created.text
        job = wait_for(client, created.json()["jobId"], timeout=3600)
        assert job["status"] == "succeeded", job
        return job["jobId"], time.monotonic() - started


def one_load(context, server: LiveServer, key, job_id: str) -> dict:
    """Open the result view in a fresh tab: seconds to render, lanes, turns, JS heap, audio bytes."""
    page = context.new_page()
    # Bytes that really arrived for the audio URL (a media element asks `bytes=0-` and stops
    # reading once it has enough, so the answer's Content-Length says nothing).
    audio_requests: set[str] = set()
    audio_bytes: list[int] = []
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on(
        "Network.requestWillBeSent",
        lambda e: "/v1/media/download/" in e["request"]["url"] and audio_requests.add(e["requestId"]),
    )
    cdp.on("Network.dataReceived", lambda e: e["requestId"] in audio_requests and audio_bytes.append(e["dataLength"]))
    page.goto(f"{server.url}/")
    page.evaluate(f"sessionStorage.setItem('diarist.key', {key.key!r})")  # signed in, as after the form
    page.goto("about:blank")  # so that the next one loads the page afresh, not a jump within it
    started = time.perf_counter()
    page.goto(f"{server.url}/#job={job_id}")
    page.wait_for_selector(f'#result[data-rendered="{job_id}"]', timeout=120_000)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "lanes": page.locator("#lanes .lane").count(),
        "turns": page.locator("#lanes .turn").count(),
        "heap": page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0"),
        "audio": sum(audio_bytes),
    }
    page.close()
    return result


def render_times(server: LiveServer, key, job_id: str, loads: int, profile: Path) -> list[dict]:
    """One result per load, all in one fresh Chromium profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        results = [one_load(context, server, key, job_id) for _ in range(loads)]
        context.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=180)
    parser.add_argument("--model", default="community-1")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        wav = tmp_path / "long.wav"
        write_wav(wav, concatenated_dev(args.minutes))
        server = LiveServer(tmp_path / "server", env={"DIARIST_MAX_INPUT_BYTES": str(2 * 1024**3)}).start()
        try:
            key = create_key(server.data_dir, "bench", "--rate-limit", "0")
            job_id, job_seconds = run_job(server, key, wav, args.model)
            peaks = httpx.get(
                f"{server.url}/v1/jobs/{job_id}/peaks", headers={"Authorization": f"Bearer {key.key}"}, timeout=30
            )
            assert peaks.status_code == 200, peaks.text
            results = render_times(server, key, job_id, args.loads, tmp_path / "chromium")
        finally:
            server.stop()
    body = peaks.json()
    times = [r["seconds"] for r in results]
    print(f"machine: {machine()}; chromium headless; {args.minutes:g} min, {args.model}, job took {job_seconds:.0f} s")
    print(
        f"peaks: {len(body['peaks'])} values at {body['rate']:.3g}/s, {len(peaks.content)} bytes of JSON, "
        f"{peaks.num_bytes_downloaded} bytes on the wire ({peaks.headers.get('content-encoding', 'identity')})"
    )
    print(f"result view: {results[0]['lanes']} lanes, {results[0]['turns']} turns")
    print(
        f"time to first render over {len(times)} loads: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s"
    )
    print(f"JS heap after render: {max(r['heap'] for r in results) / 1024**2:.1f} MiB (largest load)")
    print(f"audio bytes fetched by then: {max(r['audio'] for r in results)} (largest load)")


if __name__ == "__main__":
    main()
