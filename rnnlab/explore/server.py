"""The ``rnnlab explore`` web server: Python's standard-library ``http.server`` with a fixed route table.

Why the standard library (see docs/explore.md): the page needs a handful of JSON endpoints and four static
files; ``ThreadingHTTPServer`` does that with no dependency, so ``rnnlab explore`` works wherever rnnlab
does, offline, and there is no framework whose static-file or routing rules could map a URL onto the disk.

Safety rules, all enforced here:

* binds 127.0.0.1 unless ``--host`` says otherwise;
* the URL path (before ``?``) is compared *verbatim* with the keys of :data:`STATIC` and :data:`API`; nothing
  is unquoted, normalised or joined to a folder, so ``/../x``, ``/%2e%2e/x``, ``/static/..%2fx`` ... are 404;
  the static files are read once, at start, from the package;
* request bodies: ``Content-Length`` required and at most :data:`MAX_BODY` bytes (else 411/413), JSON objects
  only; texts at most :data:`rnnlab.explore.session.MAX_TEXT_CHARS` characters;
* on a loopback address, a request whose ``Host`` header is not ``127.0.0.1:PORT``/``localhost:PORT`` gets 403
  (DNS rebinding);
* errors are JSON ``{"error": "..."}`` with 400 (bad input) or 404, never a traceback.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import session as _s

MAX_BODY = 256 * 1024
#: memory for the --text corpus' series (float16); a longer --max-chars is cut to fit, with a message
MAX_CORPUS_BYTES = 512 * 1024 * 1024
MAX_UNITS = 16
MAX_CORPUS_CHUNK = _s.MAX_TEXT_CHARS

#: URL path -> (file in rnnlab/explore/static, content type)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def _load_static():
    root = resources.files("rnnlab.explore") / "static"
    return {path: ((root / name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()}


def _int(d, key, default=None, lo=None, hi=None):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"{key} must be an integer, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{key} must be in [{lo}, {hi}], got {v}")
    return v


def _float(d, key, default=None, lo=None, hi=None):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{key} must be a finite number, got {v!r}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{key} must be in [{lo}, {hi}], got {v}")
    return v


def _r(a, nd=4):
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


class ExploreApp:
    """The API: every handler takes the decoded JSON body (or query) and returns a JSON-able dict."""

    def __init__(self, explorer, text=None, max_chars=20000):
        self.ex = explorer
        if text is not None:
            # the corpus keeps every series as float16: about one token per character at most
            per_char = 2 * sum(p["units"] * len(p["series"]) for p in explorer.stack.describe())
            fit = max(1, MAX_CORPUS_BYTES // per_char)
            if min(len(text), max_chars) > fit:
                print(f"rnnlab explore: tracing the first {fit:,} characters of --text (its states would need more "
                      f"than {MAX_CORPUS_BYTES >> 20} MiB beyond that)", file=sys.stderr, flush=True)
                max_chars = fit
        self.text = None if text is None else text[:max_chars]
        self.full_chars = None if text is None else len(text)
        self.corpus = None
        self._cache = {}
        if self.text:
            self.corpus = _s.Corpus(explorer, self.text)

    def start_corpus(self):
        if self.corpus is not None:
            threading.Thread(target=self.corpus.run, name="explore-corpus", daemon=True).start()

    # -- helpers
    def _traced(self, text):
        _s._check_text(text)
        hit = self._cache.get(text)
        if hit is None:
            with self.ex.lock:
                tokens, series, _, out = self.ex.trace(text)
                extra = self.ex.output_info(out, tokens) if out is not None else {}
            hit = (tokens, series, extra)
            self._cache = {text: hit}   # keep the latest text only
        return hit

    def _pick(self, series, body):
        layer = body.get("layer") or self.ex.stack.parts[0][0]
        name = body.get("series") or "h"
        return layer, name, self.ex.layer_series(series, layer, name)

    # -- GET
    def info(self, q):
        d = self.ex.info()
        d["corpus"] = None if self.corpus is None else {"chars": len(self.text), "file_chars": self.full_chars}
        return d

    def progress(self, q):
        if self.corpus is None:
            return {"done": 0, "total": 0, "ready": False, "error": None, "tokens": None, "none": True}
        return self.corpus.progress()

    def corpus_text(self, q):
        if self.text is None:
            raise ValueError("no --text was given")
        try:
            start = int(q.get("start", ["0"])[0])
            length = int(q.get("length", ["1000"])[0])
        except ValueError:
            raise ValueError("start and length must be integers") from None
        if not 0 <= start <= len(self.text) or not 1 <= length <= MAX_CORPUS_CHUNK:
            raise ValueError(f"start must be in [0, {len(self.text)}] and length in [1, {MAX_CORPUS_CHUNK}]")
        return {"start": start, "text": self.text[start:start + length], "chars": len(self.text)}

    # -- POST
    def trace(self, body):
        t0 = time.perf_counter()
        text = body.get("text")
        tokens, series, extra = self._traced(text)
        layer, name, v = self._pick(series, body)
        units = body.get("units", [0])
        if not isinstance(units, list) or not units or len(units) > MAX_UNITS:
            raise ValueError(f"units must be a list of 1 to {MAX_UNITS} unit numbers")
        U = v.shape[1]
        for u in units:
            if isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < U:
                raise ValueError(f"units must be integers in [0, {U - 1}] for layer {layer!r}, got {u!r}")
        res = {"tokens": tokens, "layer": layer, "series": name, "units": units,
               "values": {str(u): _r(v[:, u]) for u in units},
               "range": [round(float(v.min()), 4), round(float(v.max()), 4)]}
        if body.get("outputs", True):
            res.update(extra)
        res["server_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        return res

    def select(self, body):
        tokens, series, _ = self._traced(body.get("text"))
        layer, name, v = self._pick(series, body)
        start = _int(body, "start", lo=0, hi=len(tokens) - 1)
        end = _int(body, "end", lo=start + 1, hi=len(tokens))
        n = _int(body, "n_units", 5, lo=1, hi=MAX_UNITS)
        order, score, m_in, m_out = _s.rank_units(v, start, end)
        ranked = [{"unit": int(u), "score": round(float(score[u]), 4), "mean_in": round(float(m_in[u]), 4),
                   "mean_out": round(float(m_out[u]), 4)} for u in order[:20]]
        chosen = [int(u) for u in order[:n] if score[u] > 0] or [int(order[0])]
        thr = body.get("threshold")
        if thr is None:
            thresholds = [float((m_in[u] + m_out[u]) / 2) for u in chosen]
        else:
            thresholds = [_float(body, "threshold")] * len(chosen)
        where, ctoks, cv = "text", tokens, v
        if self.corpus is not None and self.corpus.ready and layer in self.corpus.series:
            where, ctoks, cv = "corpus", self.corpus.tokens, self.corpus.series[layer][name]
        sep = "" if self.ex.unit == "char" else " "
        matches = []
        for s, e, strength in _s.find_matches(cv, chosen, thresholds, end - start):
            matches.append({"start": s, "end": e, "strength": round(strength, 4),
                            "before": sep.join(ctoks[max(0, s - 30 if sep == "" else s - 8):s]),
                            "match": sep.join(ctoks[s:e][:200]),
                            "after": sep.join(ctoks[e:e + (30 if sep == "" else 8)])})
        return {"layer": layer, "series": name, "selection": sep.join(tokens[start:end]), "ranked": ranked,
                "chosen": chosen, "thresholds": _r(thresholds), "where": where, "matches": matches}

    def stats(self, body):
        gates = {p["label"]: p["gates"] for p in self.ex.stack.describe()}
        source = body.get("source", "corpus")
        if source == "corpus" and self.corpus is not None and self.corpus.ready:
            series, steps = self.corpus.series, len(self.corpus.tokens)
        else:
            tokens, series, _ = self._traced(body.get("text"))
            source, steps = "text", len(tokens)
        return {"source": source, "steps": steps,
                "layers": _s.gate_saturation({k: {g: np.asarray(series[k][g], dtype=np.float32) for g in gs}
                                              for k, gs in gates.items() if gs}, gates)}

    def sample(self, body):
        seed = _s._check_text(body.get("seed", ""), "seed", allow_empty=True)
        length = _int(body, "length", 200, lo=1, hi=_s.MAX_SAMPLE_LENGTH)
        temp = _float(body, "temperature", 0.5, lo=0.0, hi=5.0)
        sseed = body.get("sample_seed")
        if sseed is not None:
            sseed = _int(body, "sample_seed", lo=0, hi=2 ** 31)
        with self.ex.lock:
            return {"seed": seed, "text": self.ex.sample(seed, length, temp, sseed), "temperature": temp}

    def attention(self, body):
        return self.ex.translate(body.get("text"))

    def gradients(self, body):
        text = _s._check_text(body.get("text"))
        last_only = body.get("last_only", False)
        if not isinstance(last_only, bool):
            raise ValueError(f"last_only must be true or false, got {last_only!r}")
        with self.ex.lock:
            tokens, norms = self.ex.gradient_norms(text, body.get("label"), last_only)
        return {"tokens": tokens, "norms": norms}


GET_ROUTES = {"/api/info": "info", "/api/progress": "progress", "/api/corpus": "corpus_text"}
POST_ROUTES = {"/api/trace": "trace", "/api/select": "select", "/api/stats": "stats", "/api/sample": "sample",
               "/api/attention": "attention", "/api/gradients": "gradients"}


def make_handler(app, static):
    class Handler(BaseHTTPRequestHandler):
        server_version = "rnnlab-explore"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):   # quiet: the terminal shows only the URL line
            pass

        def _send(self, code, body, ctype="application/json; charset=utf-8"):
            if not isinstance(body, bytes):
                body = json.dumps(body, allow_nan=False).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code, msg):
            self._send(code, {"error": msg})

        def _call(self, name, arg):
            try:
                result = getattr(app, name)(arg)
            except (ValueError, TypeError, KeyError) as e:
                msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
                return self._error(400, str(msg))
            except Exception as e:  # a bug, not bad input: say so in one line, keep serving
                print(f"rnnlab explore: error in {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                return self._error(500, f"internal error in {name}: {type(e).__name__}: {e}")
            self._send(200, result)

        def _host_ok(self):
            """Refuse a request whose Host header is not this server's loopback name (DNS rebinding: a web page
            that makes its own host name resolve to 127.0.0.1 would otherwise reach this API)."""
            allowed = getattr(self.server, "allowed_hosts", None)
            if allowed is None or self.headers.get("Host", "").lower() in allowed:
                return True
            self.close_connection = True
            self._error(403, "forbidden host")
            return False

        def do_GET(self):
            if not self._host_ok():
                return
            parts = urlsplit(self.path)
            path = parts.path
            if path in static:
                body, ctype = static[path]
                return self._send(200, body, ctype)
            if path in GET_ROUTES:
                return self._call(GET_ROUTES[path], parse_qs(parts.query))
            self._error(404, "not found")

        def do_HEAD(self):
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            if not self._host_ok():
                return
            path = urlsplit(self.path).path
            length = self.headers.get("Content-Length")
            if path not in POST_ROUTES:
                self.close_connection = True
                return self._error(404, "not found")
            if length is None:
                self.close_connection = True
                return self._error(411, "Content-Length required")
            try:
                n = int(length)
            except ValueError:
                self.close_connection = True
                return self._error(400, "bad Content-Length")
            if n < 0 or n > MAX_BODY:
                self.close_connection = True
                return self._error(413, f"request body of {n} bytes; the limit is {MAX_BODY}")
            raw = self.rfile.read(n)
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                return self._error(400, f"the request body is not JSON ({e})")
            if not isinstance(body, dict):
                return self._error(400, "the request body must be a JSON object")
            self._call(POST_ROUTES[path], body)

        def do_PUT(self):
            self._error(405, "method not allowed")

        do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    return Handler


def make_server(explorer, host="127.0.0.1", port=0, text=None, max_chars=20000):
    """A ready ``ThreadingHTTPServer`` (not yet serving) and its :class:`ExploreApp`."""
    app = ExploreApp(explorer, text, max_chars)
    httpd = ThreadingHTTPServer((host, port), make_handler(app, _load_static()))
    httpd.daemon_threads = True
    bound = httpd.server_address[1]
    if host in ("127.0.0.1", "localhost", "::1"):   # loopback: only requests naming it (see Handler._host_ok)
        httpd.allowed_hosts = {f"{h}:{bound}" for h in ("127.0.0.1", "localhost", "[::1]")}
    else:                                          # --host given: the user chose to serve other machines
        httpd.allowed_hosts = None
    return httpd, app
