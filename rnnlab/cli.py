"""The ``rnnlab`` command line.

``rnnlab train TASK ...`` trains a model for one task; other commands use a trained model.
Each task lives in its own module under :mod:`rnnlab.tasks` and is imported only when used,
so ``rnnlab --help`` stays fast. A task module provides:

* ``add_train_arguments(parser)`` and ``train(args) -> dict`` for ``rnnlab train TASK``;
* for each extra command ``NAME`` it serves (``translate``, ``predict`` ...):
  ``add_NAME_arguments(parser)`` and ``NAME(args) -> int``.

Every ``train`` command ends with :func:`rnnlab.tasks.common.finish_run`, which prints one JSON
line of final metrics and writes the same to ``metrics.json`` in the output folder.

Exit status: 0 on success; 1 for a user error (an :class:`rnnlab.io.RnnlabError` about a file, a memory
estimate or a locked ``--out``, any ``ValueError``, a missing or unreadable path), printed as one line
``rnnlab: error: ...`` without a traceback; 2 for bad arguments (``--threads 0``); 3 when training stopped on
a non-finite loss (the reason on stderr; the model and metrics are still written) or diverged
(``FloatingPointError`` from ``Seq2Seq.fit`` / ``Word2Vec``). Any other exception is a bug and shows its
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: rnnlab train TASK -> module
TRAIN_TASKS = {
    "seq2seq": ("rnnlab.tasks.seq2seq", "encoder-decoder with attention on source<TAB>target pairs"),
    "classify": ("rnnlab.tasks.classify", "text classification (sentiment) from a CSV/TSV"),
    "charlm": ("rnnlab.tasks.charlm", "character-level language model / text generator"),
    "wordlm": ("rnnlab.tasks.wordlm", "word-level language model (perplexity)"),
    "word2vec": ("rnnlab.tasks.word2vec", "word2vec embeddings (CBOW / skip-gram)"),
    "fasttext": ("rnnlab.tasks.fasttext", "fastText word vectors with subword n-grams (OOV words too)"),
    "tag": ("rnnlab.tasks.tag", "sequence labelling (one tag per token)"),
    "forecast": ("rnnlab.tasks.forecast", "time-series forecasting"),
}

#: rnnlab NAME -> module providing add_NAME_arguments / NAME
COMMANDS = {
    "translate": ("rnnlab.tasks.seq2seq", "convert text with a trained seq2seq model"),
    "predict": ("rnnlab.tasks.classify", "classify texts with a trained classifier"),
    "evaluate": ("rnnlab.tasks.classify", "evaluate a trained classifier on a labelled file"),
    "generate": ("rnnlab.tasks.charlm", "generate text from a character-level model"),
    "ngram": ("rnnlab.tasks.ngram", "n-gram language model baseline"),
    "similar": ("rnnlab.tasks.word2vec", "nearest words in a vector file"),
    "tag": ("rnnlab.tasks.tag", "tag a sentence with a trained tagger"),
    "plot": ("rnnlab.tasks.plot", "plot a run's training curves to PNG"),
    "demo": ("rnnlab.demo", "the main demo (date normalisation with attention)"),
    "explore": ("rnnlab.explore", "look inside a trained recurrent model in the browser (local web page)"),
}


def _load(module_name):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None
        raise


def build_parser(argv=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnlab", description="Recurrent networks from scratch on NumPy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser("train", help="train a model for a task")
    train_sub = train.add_subparsers(dest="task", metavar="TASK")
    argv = list(sys.argv[1:] if argv is None else argv)
    # only import the module of the command actually requested (fast --help, no heavy imports)
    wanted_task = argv[1] if len(argv) > 1 and argv[0] == "train" else None
    wanted_cmd = argv[0] if argv else None
    for task, (mod_name, help_) in TRAIN_TASKS.items():
        p = train_sub.add_parser(task, help=help_)
        if task == wanted_task:
            mod = _load(mod_name)
            if mod is None:
                p.set_defaults(_missing=mod_name)
            else:
                mod.add_train_arguments(p)
                p.set_defaults(_func=mod.train, _is_train=True)
    for cmd, (mod_name, help_) in COMMANDS.items():
        p = sub.add_parser(cmd, help=help_)
        if cmd == wanted_cmd:
            mod = _load(mod_name)
            if mod is None or not hasattr(mod, cmd.replace("-", "_")):
                p.set_defaults(_missing=mod_name)
            else:
                getattr(mod, f"add_{cmd}_arguments")(p)
                p.set_defaults(_func=getattr(mod, cmd))
    return parser


def _os_error_message(e: OSError) -> str:
    """One line naming the path: ``runs/x: is a directory, expected a file`` (no traceback)."""
    if e.filename is None:
        return str(e)
    what = {IsADirectoryError: "is a directory, expected a file", PermissionError: "permission denied",
            NotADirectoryError: "a part of the path is not a directory",
            FileExistsError: "already exists and is not a folder"}.get(type(e), e.strerror or str(e))
    return f"{e.filename}: {what}"


#: modules whose KeyError is the documented "word not in the vocabulary" of a user's query
_VOCABULARY_MODULES = ("keyed_vectors.py", "fasttext.py")


def _is_vocabulary_lookup(e: KeyError) -> bool:
    """True for the documented unknown-word ``KeyError`` of :class:`rnnlab.embeddings.KeyedVectors` (and the
    fastText vectors): raised in those modules with a "not in vocabulary" message. Any other KeyError is a bug
    and keeps its traceback."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_VOCABULARY_MODULES) \
        and "not in vocabulary" in str(e)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"rnnlab: this command is not available yet ({args._missing} is not implemented)", file=sys.stderr)
        return 2
    func = getattr(args, "_func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    from . import io as rio
    from .tasks import common

    threads = getattr(args, "threads", None)
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        print(f"rnnlab: error: --threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    if getattr(args, "force", False):
        rio.allow_large_allocations(True)
    common.take_failed_run()
    try:
        result = func(args)
    except rio.RnnlabError as e:   # files, memory estimates, run locks: the message names what and where
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        if not _is_vocabulary_lookup(e):
            raise          # a bug: keep the traceback
        print(f"rnnlab: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    except OSError as e:       # a directory or an unreadable path given as a file, a full disk ...
        print(f"rnnlab: error: {_os_error_message(e)}", file=sys.stderr)
        return 1
    except FloatingPointError as e:   # Seq2Seq.fit / Word2Vec: training diverged (a non-finite loss or update)
        print(f"rnnlab: training stopped: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130
    finally:
        rio.RunLock.release_all()
        if getattr(args, "force", False):
            rio.allow_large_allocations(False)
    if getattr(args, "_is_train", False):
        return 3 if common.take_failed_run() else 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
