"""The browser page and its server (ser/serve.py, issue 31): a real uvicorn on 127.0.0.1, real
RAVDESS and TESS files, real Chromium (Debian's, headless, driven by Selenium) recording a real
utterance through its fake microphone.

What is checked, against the library itself (``Predictor.predict_file`` and the ``--stream``
judgement, ``ser.timeline.timeline``, on the same audio):
* ``POST /api/predict``: the ``--json`` row of each format the loader reads; garbage, an empty
  body, a body over the upload limit (declared and streamed), a file over the duration limit:
  one-line JSON errors with a 4xx status, the server still serving; two clients at once;
* ``/ws/live``: two sessions of the speaker-adapted model at once, each judged exactly as a
  session alone; a closed socket frees its session; bad messages and too many sessions refused;
* ``serve()``: 127.0.0.1 by default (the socket's address in /proc/net/tcp), a warning for
  another host, one line for a port in use;
* the page: a chosen file shows what ``predict_file`` says; recording a RAVDESS utterance shows
  its emotion; a file of three utterances and pauses gives three timeline entries with the
  emotions ``--timeline`` finds; screenshots under the test's temporary folder.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA, needs_data

from ser import SerError, output
from ser import timeline as tl
from ser.audio import SAMPLE_RATE, AudioError
from ser.paths import ADAPTIVE_MODEL, DEFAULT_MODEL
from ser.predict import Predictor
from ser.serve import (
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    ServeError,
    bind_socket,
    create_app,
    is_loopback,
    network_warning,
    serve,
)
from ser.stream import DEFAULT_GATE_DB, LevelGate

pytestmark = needs_data

SPEECH = SHARED_DATA / "ravdess_speech"
ORIGINALS = SHARED_DATA / "originals"
ANGRY = SPEECH / "Actor_01" / "03-01-05-02-01-01-01.flac"
SAD = SPEECH / "Actor_02" / "03-01-04-02-01-01-02.flac"
HAPPY = SPEECH / "Actor_03" / "03-01-03-02-01-01-03.flac"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed "
           "(tools/install_system_deps.sh installs them)")
WAIT = 90.0          # the longest any single thing below may take before the test gives up


# --------------------------------------------------------------------------------------------
# Helpers: a real server in a thread, an HTTP client, audio made from the corpora
# --------------------------------------------------------------------------------------------
class Running:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a thread, until ``stop``."""

    def __init__(self, app):
        import uvicorn
        self.app = app
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", ws_max_size=MAX_MESSAGE_BYTES, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, "the server to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()
        assert not self.thread.is_alive(), "the server did not stop"


def wait_for(condition, what: str, timeout: float = WAIT):
    """Poll ``condition`` until it returns something true (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def request(port: int, method: str, path: str, body=b"", headers=None):
    """(status, parsed JSON) of one request; ``body`` bytes or an iterable (chunked)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers or {},
                     encode_chunked=not isinstance(body, (bytes, bytearray)))
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def post_file(port: int, path: Path, name: str | None = None):
    return request(port, "POST", f"/api/predict?name={quote(name or path.name)}",
                   path.read_bytes())


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def info(port: int) -> dict:
    status, body = request(port, "GET", "/api/info")
    assert status == 200
    return body


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("ser-serve-*")}


def one_line_error(row: dict, name: str) -> str:
    """The error of a ``{file, error}`` row: one line, the file named once, never the server's
    temporary path."""
    assert set(row) == {"file", "error"} and row["file"] == name, row
    line = row["error"]
    assert "\n" not in line and line.startswith(f"{name}: "), line
    assert line.count(name) == 1 and "ser-serve-" not in line, line
    return line


@pytest.fixture(scope="module")
def reference():
    """The library's own judge, apart from the server's."""
    return Predictor(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def server():
    running = Running(create_app(DEFAULT_MODEL))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    """Real recordings in every format the loader reads, and two made of real utterances: three
    with pauses, and one over the 600 s duration limit."""
    d = tmp_path_factory.mktemp("audio")
    y, sr = sf.read(HAPPY, dtype="float32")
    files = {"flac": HAPPY,
             "wav 48 kHz stereo": ORIGINALS / "ravdess_speech/Actor_01/03-01-02-01-01-02-01.wav",
             "aiff named .wav": ORIGINALS / "tess/YAF_angry/YAF_germ_angry.wav",
             "wav 96 kHz": ORIGINALS / "tess/OAF_Fear/OAF_food_fear.wav"}
    for fmt, ext in (("OGG", "ogg"), ("MP3", "mp3")):
        files[ext] = d / f"happy.{ext}"
        sf.write(files[ext], y, sr, format=fmt)
    parts = []
    for clip in (ANGRY, SAD, HAPPY):
        c, csr = sf.read(clip, dtype="float32")
        assert csr == SAMPLE_RATE
        parts += [c, np.zeros(csr, np.float32)]
    three = np.concatenate(parts)
    files["three"] = d / "three_utterances.flac"
    sf.write(files["three"], three, SAMPLE_RATE)
    files["long"] = d / "eleven_minutes.flac"
    sf.write(files["long"], np.tile(three, int(610 * SAMPLE_RATE / three.size) + 1),
             SAMPLE_RATE)
    return files


# --------------------------------------------------------------------------------------------
# POST /api/predict
# --------------------------------------------------------------------------------------------
def test_predict_answers_the_json_row_for_every_format(server, reference, audio):
    before = leftovers()
    for fmt, path in audio.items():
        if fmt in ("three", "long"):
            continue
        status, row = post_file(server.port, path, name=f"clip {fmt}.{path.suffix[1:]}")
        want = {"file": f"clip {fmt}.{path.suffix[1:]}", **reference.predict_file(path).as_dict()}
        assert (status, row) == (200, want), fmt
    # the multipart field `file` (curl -F file=@clip.flac): the same row, named by the upload
    body, ctype = multipart("file", "Actor_01 angry.flac", ANGRY.read_bytes())
    status, row = request(server.port, "POST", "/api/predict", body,
                          {"Content-Type": ctype})
    assert (status, row) == (200, {"file": "Actor_01 angry.flac",
                                   **reference.predict_file(ANGRY).as_dict()})
    assert leftovers() == before            # every upload deleted once judged


def test_bad_uploads_get_one_json_line_and_the_server_goes_on(server, reference, audio):
    status, row = request(server.port, "POST", "/api/predict?name=notes.wav",
                          b"RIFF this is not audio at all " * 40)
    assert status == 400 and "not readable audio" in one_line_error(row, "notes.wav")
    status, row = request(server.port, "POST", "/api/predict?name=nothing.flac", b"")
    assert status == 400 and "empty file" in one_line_error(row, "nothing.flac")
    # cut in the middle, as a failed download: refused like the command line refuses it
    cut = audio["wav 48 kHz stereo"].read_bytes()
    status, row = request(server.port, "POST", "/api/predict?name=cut.wav", cut[:len(cut) // 2])
    assert status == 400 and "truncated" in one_line_error(row, "cut.wav")
    # multipart without the field the API names
    body, ctype = multipart("audio", "clip.flac", ANGRY.read_bytes())
    status, row = request(server.port, "POST", "/api/predict", body, {"Content-Type": ctype})
    assert status == 400 and "field named 'file'" in one_line_error(row, "upload")
    status, row = request(server.port, "POST", "/api/predict", body,
                          {"Content-Type": "multipart/form-data"})      # no boundary
    assert status == 400 and "malformed multipart body" in one_line_error(row, "upload")
    # wrong method and path: JSON too
    assert request(server.port, "GET", "/api/predict")[0] == 405
    status, row = request(server.port, "GET", "/api/nothing")
    assert status == 404 and "Not Found" in row["error"]
    # still serving
    status, row = post_file(server.port, ANGRY)
    assert status == 200 and row["emotion"] == reference.predict_file(ANGRY).emotion


def test_a_file_over_the_duration_limit_is_refused_as_the_command_line_refuses_it(
        server, reference, audio):
    path = audio["long"]
    with pytest.raises(AudioError) as refused:
        reference.predict_file(path)
    status, row = post_file(server.port, path, name="talk.flac")
    assert status == 400
    line = one_line_error(row, "talk.flac")
    assert line == output.error_line("talk.flac", str(refused.value).replace(str(path),
                                                                             "talk.flac"))
    assert "600 s limit" in line


def test_upload_size_is_bounded(server, reference):
    limit = DEFAULT_MAX_UPLOAD_BYTES
    # a declared length over the limit: refused from the header, the body never read
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    conn.putrequest("POST", "/api/predict?name=huge.wav")
    conn.putheader("Content-Length", str(limit + 1))
    conn.endheaders()
    conn.send(b"RIFF" + b"\0" * 4096)
    r = conn.getresponse()
    row = json.loads(r.read())
    conn.close()
    assert r.status == 413 and one_line_error(row, "huge.wav") == (
        f"huge.wav: the request body ({limit + 1} bytes) is larger than the upload limit "
        f"(32 MiB)")
    # a streamed (chunked) body: counted as it comes, refused once past the limit
    small = Running(create_app(reference, max_upload_bytes=256 * 1024))
    try:
        chunks = (b"\0" * 65536 for _ in range(8))
        status, row = request(small.port, "POST", "/api/predict?name=stream.raw", chunks)
        assert status == 413 and "upload limit (262144 bytes)" in one_line_error(row,
                                                                                "stream.raw")
        status, row = post_file(small.port, ANGRY)           # 120 KB: under it
        assert status == 200 and row == {"file": ANGRY.name,
                                         **reference.predict_file(ANGRY).as_dict()}
    finally:
        small.stop()


def test_two_clients_at_once_get_their_own_answers(server, reference):
    want = {p: reference.predict_file(p).as_dict() for p in (ANGRY, SAD)}
    assert want[ANGRY]["emotion"] != want[SAD]["emotion"]
    got: dict = {ANGRY: [], SAD: []}

    def client(path):
        for _ in range(3):
            got[path].append(post_file(server.port, path))
    threads = [threading.Thread(target=client, args=(p,)) for p in (ANGRY, SAD)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    for path in (ANGRY, SAD):
        assert got[path] == [(200, {"file": path.name, **want[path]})] * 3


# --------------------------------------------------------------------------------------------
# /ws/live
# --------------------------------------------------------------------------------------------
@pytest.fixture
def ws_connect():
    """Open a WebSocket to a server's live mode: ``ws_connect(port, **options)``; every one
    is closed at the end of the test."""
    from websockets.sync.client import connect
    with contextlib.ExitStack() as stack:
        yield lambda port, **kw: stack.enter_context(connect(
            f"ws://127.0.0.1:{port}/ws/live", proxy=None, open_timeout=WAIT, **kw))


def blocks_of(path: Path, size: int = 2048) -> list[np.ndarray]:
    y, sr = sf.read(path, dtype="float32")
    assert sr == SAMPLE_RATE
    return [y[i:i + size] for i in range(0, y.size, size)]


def received(ws) -> list[dict]:
    """Every message until the server closes the socket."""
    from websockets.exceptions import ConnectionClosed
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=WAIT)))
    except ConnectionClosed:
        return out


def stream_judgement(blocks: list[np.ndarray], predictor: Predictor | None = None
                     ) -> list[dict]:
    """What --stream says about these blocks (a fresh adaptive model unless given), through
    the same level floor and detector."""
    judge = LevelGate(predictor or Predictor(ADAPTIVE_MODEL), DEFAULT_GATE_DB)
    run = tl.timeline(iter(blocks), judge, input_sr=SAMPLE_RATE, name="microphone",
                      adapt=True)
    return [{"source": "microphone", **seg.as_dict()} for seg in run]


def test_live_sessions_at_once_do_not_mix(audio, ws_connect):
    """Two tabs of the speaker-adapted model: each session adapts to its own speaker only, so
    each is judged exactly as a --stream session of its audio alone."""
    running = Running(create_app(ADAPTIVE_MODEL))
    try:
        streams = {"three": blocks_of(audio["three"]), "sad": blocks_of(SAD)}
        sockets = {k: ws_connect(running.port) for k in streams}
        for ws in sockets.values():
            ws.send(json.dumps({"type": "start", "rate": SAMPLE_RATE}))
            assert json.loads(ws.recv(timeout=WAIT)) == {"event": "ready",
                                                         "rate": SAMPLE_RATE}
        assert info(running.port)["live_sessions"] == 2
        for i in range(max(len(b) for b in streams.values())):     # interleaved
            for k, ws in sockets.items():
                if i < len(streams[k]):
                    ws.send(streams[k][i].astype("<f4").tobytes())
        for ws in sockets.values():
            ws.send(json.dumps({"type": "stop"}))
        got = {k: received(ws) for k, ws in sockets.items()}
        for k, messages in got.items():
            rows = [m["row"] for m in messages if m["event"] == "utterance"]
            assert rows == stream_judgement(streams[k]), k
            end = messages[-1]
            assert end["event"] == "end" and end["utterances"] == len(rows)
            assert sockets[k].close_code == 1000
        assert len([m for m in got["three"] if m["event"] == "utterance"]) == 3
        wait_for(lambda: info(running.port)["live_sessions"] == 0, "the sessions to end")
    finally:
        running.stop()


def test_enrolment_works_as_on_the_command_line(tmp_path, ws_connect):
    """--enrol: uploads and live sessions start from the enrolled speaker's statistics."""
    voice = sorted((SPEECH / "Actor_02").glob("03-01-0[1-8]-01-01-*.flac"))
    assert len(voice) >= 6 and SAD not in voice
    enrolled = Predictor(ADAPTIVE_MODEL)
    assert enrolled.enrol(voice) == (len(voice), [])
    running = Running(create_app(ADAPTIVE_MODEL, enrol=voice))
    try:
        assert info(running.port)["limits"]["enrolled"] is True
        status, row = post_file(running.port, SAD)
        assert (status, row) == (200, {"file": SAD.name, **enrolled.predict_file(SAD).as_dict()})
        assert row != {"file": SAD.name, **Predictor(ADAPTIVE_MODEL).predict_file(SAD).as_dict()}
        ws = ws_connect(running.port)
        ws.send(json.dumps({"type": "start", "rate": SAMPLE_RATE}))
        ws.recv(timeout=WAIT)
        blocks = blocks_of(SAD)
        for b in blocks:
            ws.send(b.astype("<f4").tobytes())
        ws.send(json.dumps({"type": "stop"}))
        rows = [m["row"] for m in received(ws) if m["event"] == "utterance"]
        assert len(rows) == 1 and rows == stream_judgement(blocks, enrolled)
    finally:
        running.stop()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServeError, match="no usable enrolment recording"):
        create_app(ADAPTIVE_MODEL, enrol=[tmp_path / "empty"])
    with pytest.raises(SerError, match="not trained for speaker adaptation"):
        create_app(DEFAULT_MODEL, enrol=voice[:1])


def live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ser-live-session" and t.is_alive()]


def test_a_closed_socket_frees_its_session_and_limits_hold(reference, ws_connect):
    running = Running(create_app(reference, max_sessions=2))
    try:
        speech = blocks_of(ANGRY)
        # a tab closed while speaking: a clean close, and a connection that just drops
        for drop in (False, True):
            ws = ws_connect(running.port)
            ws.send(json.dumps({"type": "start", "rate": SAMPLE_RATE}))
            ws.recv(timeout=WAIT)
            for b in speech[:len(speech) // 2]:
                ws.send(b.astype("<f4").tobytes())
            assert info(running.port)["live_sessions"] == 1 and live_threads()
            if drop:
                ws.socket.close()
            else:
                ws.close()
            wait_for(lambda: info(running.port)["live_sessions"] == 0, "the session to end")
            wait_for(lambda: not live_threads(), "the session's thread to end")
        # more tabs than allowed: the extra one is told why and closed
        open_ones = [ws_connect(running.port) for _ in range(2)]
        for ws in open_ones:
            ws.send(json.dumps({"type": "start", "rate": 48000}))
            ws.recv(timeout=WAIT)
        extra = ws_connect(running.port)
        assert "2 live sessions are open" in received(extra)[0]["error"]
        assert extra.close_code == 1013
        for ws in open_ones:
            ws.close()
        wait_for(lambda: info(running.port)["live_sessions"] == 0, "the sessions to end")
        # bad messages: one line each, the socket closed, the server goes on
        for first, then, words, code in (
                ({"type": "start", "rate": 1}, None, "sample rate", 1008),
                ("hello", None, "starts with", 1008),
                ({"type": "start", "rate": 16000}, b"\0\0\0", "float32", 1003),
                ({"type": "start", "rate": 16000}, np.full(64, np.nan, "<f4").tobytes(),
                 "NaN", 1003)):
            ws = ws_connect(running.port)
            ws.send(first if isinstance(first, str) else json.dumps(first))
            if then is not None:
                assert json.loads(ws.recv(timeout=WAIT)) == {"event": "ready", "rate": 16000}
                ws.send(then)
            messages = received(ws)
            assert words in messages[-1]["error"] and ws.close_code == code, messages
        # a message over the size bound: closed by the server (1009), memory untouched
        ws = ws_connect(running.port, max_size=None)
        ws.send(json.dumps({"type": "start", "rate": 16000}))
        ws.recv(timeout=WAIT)
        ws.send(b"\0" * (MAX_MESSAGE_BYTES + 4))
        received(ws)
        assert ws.close_code == 1009
        wait_for(lambda: info(running.port)["live_sessions"] == 0, "the sessions to end")
        assert post_file(running.port, ANGRY)[0] == 200
    finally:
        running.stop()


def test_live_socket_from_another_origin_or_host_is_refused(server, ws_connect):
    ws = ws_connect(server.port, origin="http://evil.example")
    assert "another origin" in received(ws)[0]["error"] and ws.close_code == 1008
    status, row = request(server.port, "GET", "/api/info", headers={"Host": "evil.example"})
    assert status == 400 and "not this machine" in row["error"]


# --------------------------------------------------------------------------------------------
# serve(): where it listens
# --------------------------------------------------------------------------------------------
def listening_addresses(port: int) -> set[str]:
    """The local addresses of the listening TCP sockets on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:      # 0A: LISTEN
                found.add(address)
    return found


@contextlib.contextmanager
def serving_process(cmd: list[str], cwd):
    """``cmd`` (a server on port 0) started in ``cwd``: yields its port, read from the line
    that announces the recommended model's address; then Ctrl-C must stop it with exit 0."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        line = wait_for(lambda: proc.stderr.readline(), f"{cmd[-3:]} to announce its address")
        assert line.startswith("serving emotion_mlp_stats_whisper.h5 at http://127.0.0.1:"), line
        yield int(line.split("http://127.0.0.1:")[1].split("/")[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_listens_on_loopback_by_default_and_stops_on_ctrl_c():
    code = "from ser.serve import serve; raise SystemExit(serve(port=0))"
    with serving_process([sys.executable, "-c", code], tempfile.gettempdir()) as port:
        assert info(port)["model"] == "emotion_mlp_stats_whisper.h5"
        assert listening_addresses(port) == {"0100007F"}          # 127.0.0.1 only


def test_live_predictions_serve_is_the_command_line_of_the_page(tmp_path):
    """``live_predictions.py --serve``: the same page and answers as the script's ``--json``
    for the same file; --host/--port only with --serve; exit 0 on Ctrl-C."""
    script = Path(__file__).resolve().parents[1] / "live_predictions.py"
    direct = subprocess.run([sys.executable, str(script), "--json", str(ANGRY)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr
    want = json.loads(direct.stdout)
    with serving_process([sys.executable, str(script), "--serve", "--port", "0"],
                         tmp_path) as port:
        status, got = post_file(port, ANGRY)
        assert status == 200 and got == {**want, "file": ANGRY.name}    # the name it was sent
    for args, text in ((["--port", "9000", str(ANGRY)], "--port is for --serve"),
                       (["--serve", "--output-dir", "out"], "--output-dir is for FILEs"),
                       (["--serve", "--port", "70000"], "--port must lie in 0-65535"),
                       (["--serve", str(ANGRY)], "choose one of FILE / --serve")):
        r = subprocess.run([sys.executable, str(script), *args], capture_output=True,
                           text=True, cwd=tmp_path)
        assert r.returncode == 2 and text in r.stderr, (args, r.stderr)
    assert not (tmp_path / "out").exists()


def test_another_host_gets_a_warning_and_a_bad_address_one_line(server, capsys):
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host) and network_warning(host) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        assert "crosses the network" in network_warning(host)
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the warning first, then one line,
    # before the model is loaded; nothing is sent anywhere
    with pytest.raises(ServeError, match=r"^cannot listen on http://192.0.2.1:\d+/: cannot "
                                         r"assign requested address$"):
        serve(host="192.0.2.1", port=server.port)
    assert capsys.readouterr().err.startswith("warning: listening on 192.0.2.1, not only on "
                                              "this machine: the voice")
    with pytest.raises(ServeError, match="address already in use"):
        serve(port=server.port)


# --------------------------------------------------------------------------------------------
# The page, in Chromium
# --------------------------------------------------------------------------------------------
def fake_microphone(src: Path, dest: Path) -> Path:
    """``src`` as the 48 kHz 16-bit WAV Chromium's fake microphone plays (once)."""
    import soxr
    y, sr = sf.read(src, dtype="float32")
    sf.write(dest, soxr.resample(y, sr, 48000), 48000, subtype="PCM_16")
    return dest


@pytest.fixture
def browser():
    """Open headless Chromium with a WAV as its microphone: ``browser(wav)``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opened = []

    def open_browser(wav: Path | None = None):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1280,1150",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
            opts.add_argument(arg)
        if wav is not None:
            opts.add_argument(f"--use-file-for-fake-audio-capture={wav}%noloop")
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        opened.append(driver)
        return driver
    yield open_browser
    for driver in opened:
        driver.quit()


def element(driver, css: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css)


def shown(driver, css: str):
    """The element ``css`` selects, or None while there is none (for :func:`wait_for`)."""
    from selenium.webdriver.common.by import By
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def utterances(driver) -> list[str]:
    from selenium.webdriver.common.by import By
    return [li.get_attribute("data-emotion")
            for li in driver.find_elements(By.CSS_SELECTOR, "#utterances li")]


def open_page(driver, server) -> None:
    driver.get(server.url + "/")
    wait_for(lambda: element(driver, "#record").is_enabled(), "the Record button")
    assert element(driver, "#model-name").text == "emotion_mlp_stats_whisper.h5"
    side = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    uar = side["metrics"]["speaker"]["uar"]         # the shipped model's own figure, shown
    assert f"UAR {uar:.2f}" in element(driver, "#figures").text
    assert "Confidence is the model's probability" in element(driver, "#confidence-note").text


def record_until(driver, n: int, screenshot: Path) -> None:
    """Press Record; after ``n`` utterances and the microphone's silence, Stop; wait for the
    session's end; save a screenshot."""
    element(driver, "#record").click()
    wait_for(lambda: len(utterances(driver)) >= n, f"{n} utterance(s) on the page")
    time.sleep(1.5)           # silence after the file: nothing more may come
    element(driver, "#record").click()
    wait_for(lambda: element(driver, "#status").text.startswith("stopped"), "the session end")
    driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")


@needs_chromium
def test_page_shows_what_predict_file_says_for_a_chosen_file(server, reference, browser,
                                                             tmp_path, audio):
    driver = browser()
    open_page(driver, server)
    for path in (SAD, audio["mp3"]):
        element(driver, "#file-input").send_keys(str(path))
        want = reference.predict_file(path)
        result = wait_for(lambda: shown(driver, "#file-result[data-emotion]:not("
                                                "[data-emotion=''])"), "the file's answer")
        assert result.get_attribute("data-emotion") == want.emotion
        assert float(result.get_attribute("data-confidence")) == round(want.confidence, 6)
        assert result.text.startswith(f"{path.name}: {want.emotion} {want.confidence:.2f}")
        driver.execute_script("document.getElementById('file-result').dataset.emotion = ''")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"not audio at all " * 100)
    element(driver, "#file-input").send_keys(str(garbage))
    error = wait_for(lambda: shown(driver, "#file-result.error"), "the error line").text
    assert error.startswith("notes.wav: not readable audio") and "\n" not in error


@needs_chromium
def test_page_says_uncertain_below_min_confidence(browser):
    cautious = Predictor(DEFAULT_MODEL, min_confidence=0.99)
    want = cautious.predict_file(SAD)
    assert want.emotion == "uncertain" and want.most_likely == "sad"
    running = Running(create_app(DEFAULT_MODEL, min_confidence=0.99))
    try:
        assert post_file(running.port, SAD) == (200, {"file": SAD.name, **want.as_dict()})
        assert "Below 0.99 the page says “uncertain”" in info(running.port)["confidence_note"]
        driver = browser()
        driver.get(running.url + "/")
        wait_for(lambda: element(driver, "#record").is_enabled(), "the Record button")
        element(driver, "#file-input").send_keys(str(SAD))
        result = wait_for(lambda: shown(driver, "#file-result[data-emotion='uncertain']"),
                          "the file's answer")
        assert result.text.startswith(f"{SAD.name}: uncertain: sad {want.confidence:.2f}")
    finally:
        running.stop()


@needs_chromium
def test_page_records_an_utterance_and_shows_its_emotion(server, reference, browser,
                                                         tmp_path):
    driver = browser(fake_microphone(ANGRY, tmp_path / "angry.wav"))
    open_page(driver, server)
    record_until(driver, 1, tmp_path / "page_one_utterance.png")
    want = reference.predict_file(ANGRY)
    assert utterances(driver) == [want.emotion]
    assert element(driver, "#current").get_attribute("data-emotion") == want.emotion
    assert element(driver, "#emotion").text == want.emotion
    assert element(driver, "#status").text.startswith("stopped: 1 utterance in")
    # offline: everything the page loaded came from this server
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(server.url + "/") for u in loaded), loaded
    wait_for(lambda: info(server.port)["live_sessions"] == 0, "the session to end")


@needs_chromium
def test_live_mode_shows_one_timeline_entry_per_utterance(server, reference, browser,
                                                          tmp_path, audio):
    driver = browser(fake_microphone(audio["three"], tmp_path / "three.wav"))
    open_page(driver, server)
    record_until(driver, 3, tmp_path / "page_three_utterances.png")
    cli = [seg.emotion for seg in tl.timeline(audio["three"], reference)]   # --timeline
    assert len(cli) == 3 and utterances(driver) == cli
    assert element(driver, "#status").text.startswith("stopped: 3 utterances in")
    assert element(driver, "#current").get_attribute("data-emotion") == cli[-1]
    wait_for(lambda: info(server.port)["live_sessions"] == 0, "the session to end")
