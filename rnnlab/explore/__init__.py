"""``rnnlab explore MODEL [--text FILE] [--port N]``: look inside a trained recurrent network in the browser.

A local web page (standard-library server, no dependency, no network) with six views: the text coloured by
any unit's state or gate with a line chart, select-and-match (LSTMVis), gate saturation statistics
(Karpathy et al. 2015), next-token predictions and sampling (language models), the attention map (seq2seq)
and per-step gradient norms. See docs/explore.md, :mod:`rnnlab.explore.session` (the analyses, with the
equations), :mod:`rnnlab.explore.trace` (the gate-keeping forward pass) and :mod:`rnnlab.explore.server`.
"""
from __future__ import annotations

import sys

from .session import Explorer, open_model  # noqa: F401
from .trace import trace_rnn  # noqa: F401

DEFAULT_PORT = 8765
MAX_TEXT_FILE_CHARS = 200_000


def add_explore_arguments(parser):
    parser.add_argument("model", help="model.npz written by 'rnnlab train charlm|wordlm|classify|tag|seq2seq' or "
                                      "model.save (a folder holding model.npz works too)")
    parser.add_argument("--text", default=None, metavar="FILE",
                        help="a text to explore: its first --max-chars characters are traced in the background "
                             "(select-and-match searches it; the statistics use it)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--max-chars", type=int, default=20000,
                        help=f"characters of --text to trace (default 20000, at most {MAX_TEXT_FILE_CHARS})")
    parser.add_argument("--encoding", default="utf-8", help="encoding of --text")


def explore(args) -> int:
    from ..datasets.text_corpus import read_text
    from .server import make_server

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if not 1 <= args.max_chars <= MAX_TEXT_FILE_CHARS:
        raise ValueError(f"--max-chars must be in [1, {MAX_TEXT_FILE_CHARS}], got {args.max_chars}")
    explorer = open_model(args.model)
    text = None
    if args.text is not None:
        text = read_text(args.text, args.encoding)
        if not text.strip():
            raise ValueError(f"{args.text}: the text is empty")
    try:
        httpd, app = make_server(explorer, args.host, args.port, text, args.max_chars)
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    host, port = httpd.server_address[:2]
    print(f"rnnlab explore: {explorer.kind} model {args.model} at http://{host}:{port}/  (Ctrl-C to stop)",
          flush=True)
    app.start_corpus()
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("rnnlab explore: stopped", file=sys.stderr)
    finally:
        httpd.server_close()
    return 0
