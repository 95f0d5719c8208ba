"""What the web page's waveform overview costs: the peaks meter on 3 hours of audio (issue 12).

    python bench/peaks.py [--minutes 180] [--runs 3] [--format wav|flac]

The worker meters peaks on the blocks the pipeline decodes anyway (`audio.PeaksMeter` on
`stream_audio`), so the cost to compare is decoding alone against decoding with the meter, on
the same file. Also: the meter alone on blocks already in memory, building the
`GET /v1/jobs/{jobId}/peaks` body (JSON, and gzip as the server sends it to a browser), and its size.
The audio is the dev clips repeated (`common.concatenated_dev`), written as 16-bit WAV (or FLAC).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from common import concatenated_dev, dev_files, machine, write_wav

from diarist.audio import PeaksMeter, load_audio, stream_audio


def best_of(runs: int, work: Callable[[], object]) -> tuple[float, object]:
    """The shortest wall time of `runs` runs of `work`, and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def decode(path: Path) -> int:
    return sum(len(block) for block in stream_audio(path))


def decode_metered(path: Path) -> PeaksMeter:
    meter = PeaksMeter()
    for _block in meter.metered(stream_audio(path)):
        pass
    return meter


def meter_only(blocks: list[np.ndarray]) -> PeaksMeter:
    meter = PeaksMeter()
    for _block in meter.metered(blocks):
        pass
    return meter


def write_flac(path: Path, samples: np.ndarray) -> None:
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        for i in range(0, len(samples), 16000 * 60):
            pcm = (np.clip(samples[i : i + 16000 * 60], -1, 1) * 32767).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", choices=("wav", "flac"), default="wav")
    args = parser.parse_args()

    samples = concatenated_dev(args.minutes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"long.{args.format}"
        (write_wav if args.format == "wav" else write_flac)(path, samples)
        del samples
        size = path.stat().st_size
        # Interleaved, so that a change in the machine's load falls on both alike.
        plain, metered = float("inf"), float("inf")
        for _ in range(args.runs):
            took, count = best_of(1, lambda: decode(path))
            plain = min(plain, took)
            took, meter = best_of(1, lambda: decode_metered(path))
            metered = min(metered, took)
        blocks = list(stream_audio(path))
    alone, _ = best_of(args.runs, lambda: meter_only(blocks))
    peaks = meter.peaks()
    assert count == round(peaks.duration * 16000)
    build, body = best_of(args.runs, lambda: json.dumps(peaks.to_dict(), separators=(",", ":")).encode())
    zipping, zipped = best_of(args.runs, lambda: gzip.compress(body, compresslevel=5))
    # The repeated clips repeat within gzip's 32 kB window: gzip of one pass over the clips, scaled
    # to the whole length, is the figure for a real recording that never repeats itself.
    cycle = int(sum(len(b) for b in (load_audio(f) for f in dev_files())) / 16000 * peaks.rate)
    once = json.dumps(list(peaks.values[:cycle]), separators=(",", ":")).encode()
    unique = len(gzip.compress(once, compresslevel=5)) * len(peaks.values) / cycle
    hours = args.minutes / 60
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.2f} at the end")
    print(f"audio: {hours:g} h of dev clips repeated, 16 kHz mono {args.format}, {size / 1e6:.0f} MB")
    print(f"decode only:          {plain:7.2f} s")
    print(f"decode + peaks meter: {metered:7.2f} s  (+{metered - plain:.2f} s, {100 * (metered / plain - 1):+.1f} %)")
    print(f"peaks meter alone:    {alone:7.2f} s  (on the decoded blocks in memory)")
    print(f"peaks: {len(peaks.values)} values at {peaks.rate:.3f} per second; stored {len(peaks.values)} bytes")
    print(f"JSON body: {len(body)} bytes raw, {len(zipped)} bytes gzip (level 5)")
    print(f"  gzip without the clips' repetition: about {unique:.0f} bytes ({cycle} distinct values, scaled)")
    print(f"building the body: {1000 * build:.1f} ms JSON + {1000 * zipping:.1f} ms gzip")


if __name__ == "__main__":
    main()
