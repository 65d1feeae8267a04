"""The browser page: live prediction from the browser's microphone (``live_predictions.py
--serve``).

A small ASGI application (Starlette, served by uvicorn) that judges on the machine where the
model runs what a browser sends it; nothing leaves that machine:

* ``GET /``: one page (``ser/web/``: plain HTML, CSS and JavaScript, no CDN, works offline) with
  a record button, a level meter, the current emotion with its calibrated confidence
  ("uncertain" below ``min_confidence``), the session's timeline drawn as it grows (one band
  per emotion, as :func:`ser.timeline.plot_timeline` draws it), a file picker, and the model's
  name, its protocol figures and what confidence means;
* ``GET /api/info``: that model description, the limits and the number of live sessions;
* ``POST /api/predict``: an audio file as the raw body (its name in ``?name=``) or as the
  multipart field ``file``; the answer is the ``--json`` row of a file (``{file, emotion,
  confidence, probabilities}``), or ``{file, error}`` with a 4xx status. The same loader,
  checks and limits as the command line (:meth:`ser.predict.Predictor.predict_file`: size and
  duration from the header before decoding); the body itself is bounded
  (``max_upload_bytes``);
* ``WS /ws/live``: live mode. The page sends ``{"type": "start", "rate": R}``, then blocks of
  mono float32 little-endian samples at R Hz, then ``{"type": "stop"}``. The server runs the
  utterance detection and judgement of ``--stream`` (:func:`ser.timeline.timeline` on the
  blocks, through :class:`ser.stream.LevelGate`, ``adapt=True``) and sends each judged
  utterance as ``{"event": "utterance", "row": <the --stream --json row>, "regions": [...],
  "duration": s}``, then ``{"event": "end", ...}`` once the last one is judged. Each session
  has its own speaker adaptation (a copy of the enrolled or the population's), a bounded
  queue of audio (the browser waits when the judge is behind) and a thread that ends when its
  socket closes.

Binds to 127.0.0.1 by default; another host only when asked, with a warning (the voice then
crosses the network). :func:`serve` runs it until Ctrl-C; :func:`create_app` makes the
application (for tests and other servers).
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from ser import output
from ser import timeline as tl
from ser.audio import DEFAULT_MAX_SECONDS, MAX_RATE, MIN_RATE
from ser.console import err, info, plural
from ser.errors import SerError
from ser.paths import DEFAULT_MODEL
from ser.predict import MIN_SPEECH_SECONDS, Predictor
from ser.scan import expand_inputs, report_left_out
from ser.stream import DEFAULT_GATE_DB, LevelGate

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_BYTES = 32 * 2 ** 20   # a POST body: ~6 min of 48 kHz 16-bit mono WAV
DEFAULT_MAX_SESSIONS = 8                  # live sessions (tabs) at once
MAX_MESSAGE_BYTES = 256 * 2 ** 10         # one WebSocket message: a block of samples
MAX_QUEUED_BLOCKS = 32                    # per session: at most 8 MiB of audio waiting
MAX_CONNECTIONS = 64                      # requests and sockets at once; more get 503
WEB_DIR = Path(__file__).with_name("web")
SOURCE = "microphone"                     # the live rows' source, as --stream --json has it


class ServeError(SerError):
    """A request the server refuses; ``status`` is its HTTP status (a 4xx)."""
    status = 400


class UploadTooLarge(ServeError):
    """A request body over the upload limit."""
    status = 413


class SessionClosed(SerError):
    """A live session's socket closed before its audio ended (raised in its judge thread)."""


# --------------------------------------------------------------------------------------------
# Where it listens
# --------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def network_warning(host: str) -> str | None:
    """The warning for a host other than this machine's loopback, or None."""
    if is_loopback(host):
        return None
    return (f"listening on {host}, not only on this machine: the voice sent to the page then "
            f"crosses the network unencrypted, and anyone who reaches the port can use it "
            f"(default: {DEFAULT_HOST}; from another machine an SSH tunnel keeps it local: "
            f"ssh -L 8000:127.0.0.1:8000 HOST)")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ServeError in one line
    when it cannot be had (address in use, unknown host, no permission)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"port must be a number from 0 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot listen on {host}: {e.strerror or e}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        reason = (e.strerror or str(e)).lower()
        raise ServeError(f"cannot listen on {_url(host, port)}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    name = host.strip("[]")
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


# --------------------------------------------------------------------------------------------
# The judge: one model, one judgement at a time
# --------------------------------------------------------------------------------------------
class _Serialized:
    """A predictor whose judgements take the server's lock (the model is shared)."""

    def __init__(self, predictor, lock: threading.Lock):
        self.predictor, self.lock = predictor, lock

    def predict_signal(self, y, sr, *, name: str = "signal", adapt: bool = False):
        with self.lock:
            return self.predictor.predict_signal(y, sr, name=name, adapt=adapt)


class Judge:
    """The loaded model and what every request shares: the lock, the live options."""

    def __init__(self, predictor: Predictor, *, gate_db: float | None, segment_options: dict):
        self.predictor = predictor
        self.gate_db = gate_db
        self.segment_options = dict(segment_options)
        self.lock = threading.Lock()

    def predict_upload(self, path: Path, name: str) -> dict:
        """The ``--json`` row of an uploaded file saved at ``path`` (shown as ``name``)."""
        with self.lock:
            pred = self.predictor.predict_file(path)
        return {"file": name, **pred.as_dict()}

    def session_predictor(self) -> _Serialized:
        """A live session's judge: the model shared, the speaker adaptation its own (a copy
        of the enrolled speaker's, or of the population's), the level floor of --stream."""
        own = copy.copy(self.predictor)
        base = self.predictor.adaptation
        own.adaptation = copy.deepcopy(base, {id(base.meta): base.meta})
        return _Serialized(LevelGate(own, self.gate_db), self.lock)


def enrol_speaker(predictor: Predictor, paths) -> int:
    """``--enrol``: adapt ``predictor`` to the speaker's recordings (files or folders), for the
    page and the command line alike; what was skipped is named on stderr, then one line says
    how many were used (returned). ModelError (a model without speaker adaptation) or
    ServeError (no usable recording), one line."""
    enrol = expand_inputs([str(p) for p in paths])
    report_left_out(enrol, " (enrolment)")
    used, errors = predictor.enrol(enrol.files)
    errors = [m for _, m in enrol.problems] + errors
    for msg in errors:
        err(f"enrolment skipped: {output.drop_library_name(msg)}")
    if not used:
        raise ServeError("no usable enrolment recording; nothing to adapt to")
    skipped = [f"{len(errors)} failed"] if errors else []
    if enrol.left_out:
        skipped.append(f"{plural(len(enrol.left_out), 'file')} left out of the folders")
    info(f"adapted to the speaker from {used} enrolment recording(s)"
         + (f" ({', '.join(skipped)}, named above)" if skipped else ""))
    return used


# --------------------------------------------------------------------------------------------
# What the page shows about the model
# --------------------------------------------------------------------------------------------
def model_info(predictor: Predictor, name: str) -> dict:
    """The model's name, kind, protocol figures and what its confidence means (from its
    sidecar), for ``GET /api/info``."""
    meta = predictor.meta
    metrics = meta.get("metrics") or {}
    figures = []
    sp = metrics.get("speaker") or {}
    if "uar" in sp:
        spread = f" ± {sp['uar_std']:.2f}" if "uar_std" in sp else ""
        figures.append(f"new speakers (RAVDESS actors held out, 5 folds): UAR "
                       f"{sp['uar']:.2f}{spread}")
    cross = [(k.split(" ", 1)[1].replace("->", " → ").replace("ravdess", "RAVDESS")
              .replace("tess", "TESS"), v.get("uar_restricted"))
             for k, v in metrics.items() if k.startswith("corpus ")]
    if any(v is not None for _, v in cross):
        figures.append("another corpus (other speakers, microphone and words; UAR on the "
                       "7 emotions both have): "
                       + ", ".join(f"{k} {v:.2f}" for k, v in cross if v is not None))
    if figures:
        figures.append("chance is 0.125 (eight emotions); your voice and room are a new "
                       "speaker in a new setting: expect these, not the training accuracy")
    return {"model": name, "kind": meta.get("model"), "feature": predictor.feature,
            "adaptation": predictor.adaptation.name, "backend": predictor.backend,
            "labels": list(predictor.labels),
            "colours": {k: tl.COLOURS.get(k, "#444444") for k in predictor.labels},
            "min_confidence": predictor.min_confidence, "figures": figures,
            "confidence_note": confidence_note(predictor.min_confidence, sp,
                                               predictor.temperature)}


def confidence_note(min_confidence: float, speaker_metrics: dict, temperature: float) -> str:
    """One line on what the confidence means, with the sidecar's selective accuracy."""
    calibrated = ("calibrated on speakers the model never heard" if temperature != 1.0 else
                  "not calibrated (no temperature in the sidecar)")
    line = f"Confidence is the model's probability for the emotion it names, {calibrated}"
    selective = speaker_metrics.get("selective") or {}
    if selective:
        want = min_confidence if min_confidence > 0 else 0.5
        key = min(selective, key=lambda k: abs(float(k) - want))
        s = selective[key]
        line += (f": on new speakers, answers at {float(key):g} or more were right "
                 f"{100 * s['accuracy']:.0f} % of the time ({100 * s['coverage']:.0f} % of "
                 f"the answers reach it)")
    if min_confidence > 0:
        return line + f". Below {min_confidence:g} the page says “uncertain”."
    return line + ". The page always names an emotion (min-confidence 0)."


# --------------------------------------------------------------------------------------------
# POST /api/predict
# --------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def upload_name(name: str | None) -> str:
    """The name an upload is shown under: its base name, printable, at most 120 characters
    (``upload`` when it has none)."""
    base = os.path.basename(str(name or "").replace("\\", "/")).strip()
    base = "".join(c for c in base if c.isprintable())[:120]
    return base or "upload"


def _saved_name(name: str) -> str:
    """A safe file name with the upload's extension (libsndfile reads by content; an MP3
    is better told by its name)."""
    suffix = Path(name).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
    return "upload" + suffix


def _limited_receive(receive, limit: int):
    """``receive`` that raises UploadTooLarge once the body passes ``limit`` bytes."""
    seen = 0

    async def bounded():
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise UploadTooLarge(f"the request body is larger than the upload limit "
                                     f"({_size(limit)})")
        return message
    return bounded


def _size(n: int) -> str:
    return f"{n // 2 ** 20} MiB" if n and n % 2 ** 20 == 0 else f"{n} bytes"


async def _save_body(request, limit: int, folder: Path) -> tuple[Path, str]:
    """The request's audio saved in ``folder`` (raw body or multipart field ``file``) and
    the name it is shown under."""
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.requests import Request
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"the request body ({_size(int(declared))}) is larger than the "
                             f"upload limit ({_size(limit)})")
    body = Request(request.scope, _limited_receive(request.receive, limit))
    name = request.query_params.get("name")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with body.form(max_files=1, max_fields=4) as form:
            field = form.get("file")
            if not isinstance(field, UploadFile):
                raise ServeError("a multipart body needs its audio in a field named 'file'")
            name = upload_name(name or field.filename)
            path = folder / _saved_name(name)
            with open(path, "wb") as fh:
                await run_in_threadpool(shutil.copyfileobj, field.file, fh)
        return path, name
    name = upload_name(name)
    path = folder / _saved_name(name)
    with open(path, "wb") as fh:
        async for chunk in body.stream():
            fh.write(chunk)
    return path, name


def _error_response(name: str, message: str, status: int, folder: Path | None = None):
    """``{file, error}`` with the file named once, never the server's temporary path."""
    from starlette.responses import JSONResponse
    message = str(message).splitlines()[0] if str(message) else "error"
    if folder is not None:
        message = re.sub(re.escape(str(folder)) + r"/upload(\.[a-z0-9]+)?", name, message)
    return JSONResponse({"file": name, "error": output.error_line(name, message)},
                        status_code=status)


def _predict_endpoint(judge: Judge, limit: int):
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    async def predict(request):
        folder = Path(tempfile.mkdtemp(prefix="ser-serve-"))
        name = upload_name(request.query_params.get("name"))
        try:
            path, name = await _save_body(request, limit, folder)
            row = await run_in_threadpool(judge.predict_upload, path, name)
            return JSONResponse(row)
        except ServeError as e:
            return _error_response(name, str(e), e.status, folder)
        except SerError as e:          # the loader's and the model's: the same line as the CLI
            return _error_response(name, str(e), 400, folder)
        except HTTPException as e:     # a malformed multipart body
            return _error_response(name, f"malformed multipart body ({e.detail})",
                                   e.status_code, folder)
        except Exception as e:         # a bug: one line, and the server goes on
            err(f"POST /api/predict: {type(e).__name__}: {e}")
            return _error_response(name, f"internal error ({type(e).__name__})", 500, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return predict


# --------------------------------------------------------------------------------------------
# WS /ws/live
# --------------------------------------------------------------------------------------------
_END, _ABORT = object(), object()


class LiveSession:
    """One tab's live session: its audio queue, its judge thread and its outgoing messages.

    ``put`` (from the event loop) queues a block, waiting while the queue is full;
    :meth:`finish` ends the audio (what was heard is still judged); :meth:`abort` drops it
    (the socket closed). The thread runs :func:`ser.timeline.timeline` on the blocks and hands
    each message to ``send`` (called in the thread; it must be thread-safe), then ``None``.
    """

    def __init__(self, judge, rate: int, send: Callable[[dict | None], None],
                 segment_options: dict, on_exit: Callable[[], None]):
        self.judge, self.rate, self.send = judge, rate, send
        self.options, self.on_exit = segment_options, on_exit
        self.queue: queue.Queue = queue.Queue(maxsize=MAX_QUEUED_BLOCKS)
        self.thread = threading.Thread(target=self._run, name="ser-live-session", daemon=True)

    def start(self) -> None:
        self.thread.start()

    async def put(self, block: np.ndarray) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put_nowait(block)
                return
            except queue.Full:
                await asyncio.sleep(0.02)

    async def finish(self) -> None:
        await self.put(_END)  # type: ignore[arg-type]

    def abort(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        try:
            self.queue.put_nowait(_ABORT)
        except queue.Full:       # the thread took nothing meanwhile: it still sees _ABORT
            pass

    def _blocks(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise SessionClosed("the live session's socket closed")
            yield item

    def _run(self) -> None:
        try:
            run = tl.timeline(self._blocks(), self.judge, input_sr=self.rate, name=SOURCE,
                              adapt=True, **self.options)
            sent = count = 0
            for seg in run:
                count += 1
                self.send({"event": "utterance", "row": {"source": SOURCE, **seg.as_dict()},
                           "regions": _rounded(run.regions[sent:]),
                           "duration": round(run.duration, 3)})
                sent = len(run.regions)
            self.send({"event": "end", "utterances": count, "duration": round(run.duration, 3),
                       "regions": _rounded(run.regions[sent:])})
        except SessionClosed:
            pass
        except (SerError, ValueError) as e:
            self.send({"event": "error", "error": str(e).splitlines()[0]})
        except Exception as e:  # a bug: one line to the page and to the log
            err(f"live session: {type(e).__name__}: {e}")
            self.send({"event": "error", "error": f"internal error ({type(e).__name__})"})
        finally:
            self.send(None)
            self.on_exit()


def _rounded(regions) -> list[list[float]]:
    return [[round(a, 3), round(b, 3)] for a, b in regions]


def parse_start(text: str) -> int:
    """The sample rate of a ``{"type": "start", "rate": R}`` message; ServeError otherwise."""
    try:
        msg = json.loads(text)
    except ValueError:
        msg = None
    if not isinstance(msg, dict) or msg.get("type") != "start":
        raise ServeError('a live session starts with {"type": "start", "rate": <Hz>}')
    rate = msg.get("rate")
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise ServeError(f"the sample rate must be a whole number of Hz from {MIN_RATE} to "
                         f"{MAX_RATE}, got {rate!r}")
    return rate


def parse_block(data: bytes) -> np.ndarray:
    """A block of mono float32 little-endian samples; ServeError for anything else."""
    if len(data) % 4:
        raise ServeError(f"a block of samples is float32 (4 bytes each); got {len(data)} bytes")
    y = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise ServeError("a block holds NaN or infinite samples")
    return y


def origin_allowed(headers) -> bool:
    """A WebSocket from this server's own page (or from no page: a script): its Origin's
    host and port are the Host it connected to."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _live_endpoint(judge: Judge, sessions: dict, max_sessions: int):
    from starlette.websockets import WebSocketDisconnect

    async def live(ws):
        await ws.accept()
        if not origin_allowed(ws.headers):
            return await _refuse(ws, 1008, "a page from another origin cannot use this server")
        if len(sessions) >= max_sessions:
            return await _refuse(ws, 1013, f"{max_sessions} live sessions are open; close one")
        try:
            first = await ws.receive()
            if first.get("type") == "websocket.disconnect":
                return
            rate = parse_start(first.get("text") or "")
        except ServeError as e:
            return await _refuse(ws, 1008, str(e))
        if len(sessions) >= max_sessions:      # again: others may have started meanwhile
            return await _refuse(ws, 1013, f"{max_sessions} live sessions are open; close one")
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        key = object()

        def send(msg):
            try:
                loop.call_soon_threadsafe(outbox.put_nowait, msg)
            except RuntimeError:       # the loop has closed: the server is gone
                pass

        def on_exit():
            try:
                loop.call_soon_threadsafe(sessions.pop, key, None)
            except RuntimeError:       # the loop has closed: the server is gone
                sessions.pop(key, None)
        session = LiveSession(judge.session_predictor(), rate, send, judge.segment_options,
                              on_exit)
        sessions[key] = session
        outbox.put_nowait({"event": "ready", "rate": rate})
        session.start()
        sender = asyncio.ensure_future(_send_all(ws, outbox))
        try:
            await _receive_audio(ws, session, sender)
        except WebSocketDisconnect:
            session.abort()
        finally:
            if session.thread.is_alive() and not sender.done():
                session.abort()
            await sender
    return live


async def _receive_audio(ws, session: LiveSession, sender) -> None:
    """Queue the blocks until ``stop`` (then wait for the last judgement, send it and close)
    or until the socket closes (then the session is dropped)."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            session.abort()
            return
        if sender.done():              # the judge has stopped (its error was sent)
            await ws.close(1011)
            return
        try:
            if msg.get("bytes") is not None:
                if msg["bytes"]:
                    await session.put(parse_block(msg["bytes"]))
                continue
            if json.loads(msg.get("text") or "null") == {"type": "stop"}:
                await session.finish()
                await sender
                await ws.close(1000)
                return
            raise ServeError('expected blocks of samples or {"type": "stop"}')
        except (ServeError, ValueError) as e:
            session.abort()
            await sender
            await _refuse(ws, 1003, str(e).splitlines()[0])
            return


async def _send_all(ws, outbox: asyncio.Queue) -> None:
    """Send the session's messages until its ``None``; a closed socket drops the rest."""
    while True:
        msg = await outbox.get()
        if msg is None:
            return
        try:
            await ws.send_json(msg)
        except Exception:              # the page has gone; keep draining until None
            continue


async def _refuse(ws, code: int, reason: str) -> None:
    try:
        await ws.send_json({"event": "error", "error": reason})
        await ws.close(code, reason[:120])
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------
class _LocalHostsOnly:
    """ASGI middleware: when the server listens on loopback only, a request must name a
    loopback host (a page on another site cannot reach it through a DNS name it controls)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name or "localhost"):
                from starlette.responses import JSONResponse
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                return await JSONResponse({"error": f"host {host!r} is not this machine"},
                                          status_code=400)(scope, receive, send)
        await self.app(scope, receive, send)


def _load_predictor(model, options: dict) -> tuple[Predictor, str]:
    if isinstance(model, Predictor):
        return model, model.model_path.name
    if callable(model) and not isinstance(model, (str, os.PathLike)):
        predictor = model()
        return predictor, predictor.model_path.name
    return Predictor(model, **options), Path(model).name


def create_app(model: str | os.PathLike | Predictor | Callable[[], Predictor] = DEFAULT_MODEL,
               *, min_confidence: float = 0.0, enrol=None, backend: str = "auto",
               calibrated: bool = True, min_seconds: float = MIN_SPEECH_SECONDS,
               max_seconds: float | None = DEFAULT_MAX_SECONDS,
               gate_db: float | None = DEFAULT_GATE_DB, segment_options: dict | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_sessions: int = DEFAULT_MAX_SESSIONS, local_only: bool = True):
    """The ASGI application (Starlette) serving the page, the upload API and live mode.

    Parameters
    ----------
    model : path, Predictor or callable returning a Predictor
        The model (H5 with its sidecar) to load, or a loaded one. ``min_confidence``,
        ``backend``, ``calibrated``, ``min_seconds`` and ``max_seconds`` are the
        :class:`~ser.predict.Predictor`'s, used when ``model`` is a path.
    enrol : list of paths, optional
        ``--enrol``: recordings (or folders) of the speaker, for a speaker-adapted model;
        every live session and upload starts from that speaker's statistics.
    gate_db : float or None
        ``--gate-db``: the level floor of live utterances (None: none).
    segment_options : dict, optional
        :func:`ser.timeline.timeline`'s detector and segment options for live mode
        (``threshold``, ``min_silence``, ``merge_gap``, ``max_len``, ``min_len``:
        :func:`ser.cli.predict.segment_options` of the command line).
    max_upload_bytes : int
        The largest POST body; a larger one is refused (413) before it is read further.
    max_sessions : int
        Live sessions at once; one more is refused (close code 1013).
    local_only : bool
        Accept only requests that name a loopback host (True when listening on loopback).

    Raises
    ------
    ModelError, ServeError
        The model cannot be used; no enrolment recording is usable (one line).
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    if max_upload_bytes < 1 or max_sessions < 1:
        raise ServeError("max_upload_bytes and max_sessions must be at least 1")
    predictor, name = _load_predictor(model, {
        "min_confidence": min_confidence, "backend": backend, "calibrated": calibrated,
        "min_seconds": min_seconds, "max_seconds": max_seconds})
    if enrol:
        enrol_speaker(predictor, enrol)
    judge = Judge(predictor, gate_db=gate_db, segment_options=segment_options or {})
    described = model_info(predictor, name)
    sessions: dict = {}
    limits = {"max_upload_bytes": max_upload_bytes, "max_sessions": max_sessions,
              "max_seconds": predictor.max_seconds,
              "enrolled": bool(enrol)}
    headers = {"Cache-Control": "no-store", "Content-Security-Policy":
               "default-src 'self'; img-src 'self' data:; object-src 'none'; "
               "base-uri 'none'; frame-ancestors 'none'"}

    async def index(request):
        return FileResponse(WEB_DIR / "index.html", headers=headers)

    async def api_info(request):
        return JSONResponse({**described, "limits": limits, "live_sessions": len(sessions)})

    async def http_error(request, exc):
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"},
                            status_code=exc.status_code)

    routes = [Route("/", index), Route("/api/info", api_info),
              Route("/api/predict", _predict_endpoint(judge, max_upload_bytes),
                    methods=["POST"]),
              WebSocketRoute("/ws/live", _live_endpoint(judge, sessions, max_sessions)),
              Mount("/static", StaticFiles(directory=WEB_DIR), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    middleware=[Middleware(_LocalHostsOnly)] if local_only else [])
    app.state.judge, app.state.sessions = judge, sessions
    return app


def serve(*, model_path: str | os.PathLike = DEFAULT_MODEL, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, min_confidence: float = 0.0, enrol=None,
          predictor: Predictor | None = None, **app_options) -> int:
    """Serve the page on ``host:port`` until Ctrl-C (or SIGTERM); returns 0.

    ``model_path``, ``min_confidence``, ``enrol`` and ``app_options`` (``backend``,
    ``calibrated``, ``min_seconds``, ``max_seconds``, ``gate_db``, ``segment_options``,
    ``max_upload_bytes``, ``max_sessions``) are :func:`create_app`'s; ``predictor``: an
    already loaded (and enrolled) model instead of ``model_path``. The socket is bound before
    the model is loaded, so that a port in use is one line at once (ServeError); a host other
    than the loopback gets a warning on stderr first. Once the model is loaded, one line on
    stderr gives the address (``port=0``: a free port, named there).
    """
    import uvicorn
    warning = network_warning(host)
    if warning:
        info(f"warning: {warning}")
    sock = bind_socket(host, port)
    try:
        app = create_app(predictor if predictor is not None else model_path,
                         min_confidence=min_confidence, enrol=enrol,
                         local_only=is_loopback(host), **app_options)
        config = uvicorn.Config(app, log_level="warning", ws_max_size=MAX_MESSAGE_BYTES,
                                lifespan="off", timeout_graceful_shutdown=5,
                                limit_concurrency=MAX_CONNECTIONS)
        # the socket already listens: a browser that connects now waits for uvicorn's start
        info(f"serving {app.state.judge.predictor.model_path.name} at "
             f"{_url(host, sock.getsockname()[1])} (Ctrl-C stops)")
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:      # uvicorn re-raises the Ctrl-C it shut down on
            pass
        info("stopped")
    finally:
        sock.close()
    return 0


__all__ = ["create_app", "serve", "ServeError", "UploadTooLarge", "network_warning",
           "is_loopback", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_MAX_UPLOAD_BYTES"]
