"""``rnnlab plot DIR``: a run's training curves as PNG.

Reads ``DIR/history.json`` (written by ``rnnlab train classify|charlm|wordlm|tag|forecast``: a list of
per-epoch records such as ``{"epoch": 1, "loss": ..., "accuracy": ..., "val_loss": ..., "val_accuracy": ...}``)
and draws one panel per metric -- loss, accuracy, perplexity, bits per character, whichever the run has --
with the training curve and the validation curve (``val_`` prefix) against the epoch. A partial last epoch
(``--max-minutes`` ran out) is drawn with a hollow marker. The learning rate, when it changed, is noted in
the loss panel's title.

::

    rnnlab plot runs/imdb            # -> runs/imdb/curves.png
    rnnlab plot runs/imdb --out a.png

Errors: a missing folder or ``history.json``, invalid JSON, or a history without any epoch give a clear
message (``ValueError`` / ``FileNotFoundError``).
"""
from __future__ import annotations

import json
import os

#: the metrics drawn, in panel order (training key; the validation key is "val_" + it)
METRICS = ("loss", "accuracy", "perplexity", "bits_per_char")
LABELS = {"loss": "loss (cross-entropy, nats)", "accuracy": "accuracy", "perplexity": "perplexity",
          "bits_per_char": "bits per character"}


def read_history(run_dir):
    """The list of epoch records of ``run_dir/history.json`` (checked)."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"No such run folder: {run_dir}")
    path = os.path.join(run_dir, "history.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} has no history.json (is it the --out folder of an 'rnnlab train' run?)")
    try:
        with open(path, "r", encoding="utf-8") as f:
            hist = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(hist, list) or not all(isinstance(h, dict) and "epoch" in h for h in hist):
        raise ValueError(f"{path}: expected a list of epoch records with an 'epoch' key")
    if not hist:
        raise ValueError(f"{path}: no epoch recorded yet (nothing to plot)")
    return hist


def plot_history(hist, path, title=None):
    """Draw the panels for ``hist`` to ``path`` (PNG); returns the list of metrics drawn."""
    from ..plotting import _pyplot, save_figure

    names = [m for m in METRICS if any(isinstance(h.get(m), (int, float)) or isinstance(h.get("val_" + m), (int, float))
                                       for h in hist)]
    if not names:
        raise ValueError(f"the history has none of the metrics {list(METRICS)} (keys: {sorted(hist[0])})")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for key, label, style in ((name, "train", "-o"), ("val_" + name, "valid", "-s")):
            pts = [(h["epoch"], h[key], bool(h.get("partial"))) for h in hist if isinstance(h.get(key), (int, float))]
            if not pts:
                continue
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, markersize=4)
            part = [p for p in pts if p[2]]
            if part:
                ax.plot([p[0] for p in part], [p[1] for p in part], "o", markersize=8, markerfacecolor="none",
                        color=line.get_color(), label=f"{label} (partial epoch)")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(LABELS[name])
        if name == "perplexity":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lrs = [h.get("learning_rate") for h in hist if h.get("learning_rate") is not None]
    if lrs and len(set(lrs)) > 1:
        axes[0][0].set_title(f"learning rate {lrs[0]:.3g} -> {lrs[-1]:.3g}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return names


def add_plot_arguments(parser):
    parser.add_argument("run_dir", help="the --out folder of a training run (holds history.json)")
    parser.add_argument("--out", default=None, help="PNG file to write (default RUN_DIR/curves.png)")


def plot(args):
    hist = read_history(args.run_dir)
    path = args.out or os.path.join(args.run_dir, "curves.png")
    names = plot_history(hist, path, title=os.path.basename(os.path.abspath(args.run_dir)))
    print(f"{path}: {', '.join(names)} for {len(hist)} epoch(s)")
    return 0
