#!/usr/bin/env python3
"""How long after a person stops speaking the page's live mode answers (issue 31: within 1 s).

Starts ``live_predictions.py --serve`` on a free port (the recommended model, the command line
a user runs), opens the live WebSocket as the page does, and streams real RAVDESS utterances
in real time (blocks of 2048 samples at 22050 Hz, paced by the clock), each followed by 3 s
of silence at -70 dBFS. For each utterance it measures the time from the moment the block with
its last speech sample was sent (where the speech detector, without padding, says the speech
ends: the clip's own trailing silence counts as pause) to the moment its judgement arrived.

    python benchmarks/bench_serve.py [--utterances 6]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser import vad  # noqa: E402
from ser.audio import SAMPLE_RATE, load_audio  # noqa: E402

DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
BLOCK = 2048


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=6)
    args = ap.parse_args(argv)
    clips = sorted((DATA / "ravdess_speech" / "Actor_03").glob("*.flac"))[:args.utterances]
    if not clips:
        print(f"no RAVDESS audio under {DATA}", file=sys.stderr)
        return 2
    from websockets.sync.client import connect
    rng = np.random.default_rng(0)
    proc = subprocess.Popen([sys.executable, str(ROOT / "live_predictions.py"), "--serve",
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        delays = []
        with connect(f"ws://127.0.0.1:{port}/ws/live", proxy=None) as ws:
            ws.send(json.dumps({"type": "start", "rate": SAMPLE_RATE}))
            json.loads(ws.recv())
            for clip in clips:
                y = load_audio(clip)
                last = vad.speech_regions(y, SAMPLE_RATE, pad=0.0)[-1][1]
                speech_end = int(last * SAMPLE_RATE)
                pause = (10 ** (-70 / 20) * rng.standard_normal(3 * SAMPLE_RATE)
                         ).astype(np.float32)
                audio = np.concatenate([y, pause])
                start = time.monotonic()
                speech_end_at = None
                answer_at = None
                for i in range(0, audio.size, BLOCK):
                    due = start + i / SAMPLE_RATE       # real time: no faster than speech
                    time.sleep(max(0.0, due - time.monotonic()))
                    ws.send(audio[i:i + BLOCK].astype("<f4").tobytes())
                    if speech_end_at is None and i + BLOCK >= speech_end:
                        speech_end_at = time.monotonic()
                    try:
                        msg = json.loads(ws.recv(timeout=0))
                    except TimeoutError:
                        continue
                    if msg.get("event") == "utterance" and answer_at is None:
                        answer_at = time.monotonic()
                while answer_at is None:
                    msg = json.loads(ws.recv(timeout=10))
                    if msg.get("event") == "utterance":
                        answer_at = time.monotonic()
                delays.append(answer_at - speech_end_at)
                print(f"{clip.name}: speech ends at {last:.2f} s of {y.size / SAMPLE_RATE:.2f} s;"
                      f" answered {answer_at - speech_end_at:.2f} s after", flush=True)
            ws.send(json.dumps({"type": "stop"}))
    finally:
        proc.terminate()
        proc.wait()
    print(f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s over "
          f"{len(delays)} utterances (goal: within 1 s; by design the detector waits for "
          f"--min-silence + --merge-gap = 0.8 s of pause)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
