"""The main demo (``make demo`` / ``python -m rnnlab.demo``): dates in any format -> ISO, with attention.

Generated data (no download): dates between 1950 and 2049 written in 24 human formats ("3rd of March,
2021", "WED, 3 MAR 2021", "03.03.21", "3/3/21", ...) are converted character by character into
``YYYY-MM-DD`` by a Seq2Seq model (character embeddings, LSTM encoder and decoder, Luong dot attention;
every forward and backward pass is rnnlab's own NumPy code).

The demo trains within a time budget (default 150 s of training, so the whole run stays under 3 minutes
on 2 CPU cores), stops early once a validation set is converted perfectly, then prints some held-out
conversions and ``held-out exact-match accuracy: XX.XX%`` on 5,000 held-out dates (none of whose source
strings was seen in training), saves the model and writes an attention heat map PNG of one example.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def limit_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count at run time (the env vars only work before NumPy loads).

    On the shared 2-core machine two BLAS threads competing with other processes made small GEMMs
    20-40x slower (measured 630-1270 ms/step instead of 27 ms/step); one thread is steady and loses
    little, since the per-step matrices are small. Returns False when the library is not found."""
    import ctypes
    import glob

    import numpy as np

    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(int(n))
                return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlab.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=30000, help="training pairs")
    parser.add_argument("--test", type=int, default=5000, help="held-out pairs")
    parser.add_argument("--epochs", type=int, default=12, help="maximum epochs")
    parser.add_argument("--budget", type=float, default=150.0, help="training time budget in seconds")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--attention", default="dot", choices=["dot", "general", "concat", "none"])
    parser.add_argument("--out", default=os.path.join("runs", "demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (1 is steadiest on a shared machine)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()

    import rnnlab
    from rnnlab.datasets.seq2seq_data import Vocabulary, date_pairs, date_splits
    from rnnlab.models.seq2seq import Seq2Seq
    from rnnlab.optimizers import Adam

    limit_blas_threads(args.threads)
    rnnlab.set_random_seed(args.seed)
    train, test = date_splits(args.train, args.test, seed=args.seed)
    val = date_pairs(1000, seed=args.seed + 7, exclude={s for s, _ in train} | {s for s, _ in test})
    src_vocab = Vocabulary.build([s for s, _ in train], level="char")
    tgt_vocab = Vocabulary.build([t for _, t in train], level="char")
    max_src = max(len(s) for s, _ in train)
    model = Seq2Seq(src_vocab, tgt_vocab, embedding_dim=args.embedding_dim, units=args.units, cell="lstm",
                    attention=args.attention, max_source_len=max_src + 8, max_target_len=10)
    print("rnnlab demo: date normalisation with a sequence-to-sequence model and attention")
    print(f"  {len(train)} training pairs, {len(val)} validation, {len(test)} held-out (disjoint sources); "
          f"{len(src_vocab)} source / {len(tgt_vocab)} target symbols")
    print(f"  model: char embedding {args.embedding_dim} -> LSTM({args.units}) encoder -> LSTM({args.units}) decoder "
          f"with {args.attention} attention; {model.count_params():,} parameters")
    print(f"  examples: " + "; ".join(f"{s!r} -> {t}" for s, t in train[:3]))
    print(f"  training for at most {args.epochs} epochs or {args.budget:.0f} s\n", flush=True)

    opt = Adam(args.lr, clipnorm=5.0)

    def on_epoch_end(epoch, logs):
        # halve the learning rate once the model is nearly there, stop when validation is perfect
        if logs.get("val_exact_match", 0) > 0.97:
            opt.learning_rate = max(opt.learning_rate * 0.5, 5e-4)
        return logs.get("val_exact_match", 0) >= 1.0

    t0 = time.perf_counter()
    model.fit(train, epochs=args.epochs, batch_size=args.batch_size, optimizer=opt, validation_pairs=val,
              time_budget=args.budget, verbose=1, seed=args.seed, on_epoch_end=on_epoch_end)
    train_secs = time.perf_counter() - t0

    t1 = time.perf_counter()
    ev = model.evaluate(test)
    eval_secs = time.perf_counter() - t1
    preds = ev["predictions"]
    print(f"\nHeld-out conversions (greedy decoding):")
    for i in range(8):
        s, t = test[i]
        mark = "ok" if preds[i] == t else f"WRONG, expected {t}"
        print(f"  {s!r:>34} -> {preds[i]}   {mark}")
    wrong = [(s, p, t) for (s, t), p in zip(test, preds) if p != t]
    for s, p, t in wrong[:5]:
        print(f"  error: {s!r} -> {p} (expected {t})")
    print(f"\nheld-out exact-match accuracy: {ev['exact_match_accuracy'] * 100:.2f}% "
          f"({len(test) - len(wrong)}/{len(test)}; token accuracy {ev['token_accuracy'] * 100:.2f}%)")
    print(f"training {train_secs:.1f} s, evaluation {eval_secs:.1f} s")

    os.makedirs(args.out, exist_ok=True)
    path = model.save(os.path.join(args.out, "dates_seq2seq.npz"))
    same = [p for p, _ in Seq2Seq.load(path).translate([s for s, _ in test[:200]], warn=False)] == preds[:200]
    print(f"model saved to {path} (reloaded model gives identical outputs: {same})")

    example = "saturday 17 march 1984"
    (out, att), = model.translate([example])
    png = os.path.join(args.out, "attention_dates.png")
    try:
        if args.attention == "none":
            raise ImportError("the model has no attention (--attention none)")
        from rnnlab.plotting import attention_heatmap

        attention_heatmap(att, list(example), (list(out) + ["<end>"])[: att.shape[0]], png,
                          title=f"{example!r} -> {out}")
        print(f"attention heat map of {example!r} -> {out} written to {png}")
    except ImportError as e:
        print(f"no heat map: {e}")
    print(f"total time {time.perf_counter() - t_start:.1f} s")
    if not same:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
