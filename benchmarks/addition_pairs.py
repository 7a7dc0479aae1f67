"""Write 3+3-digit addition pairs generated the way the keras-io ``addition_rnn`` example generates them, as a
``source<TAB>target`` file for ``rnnlab train seq2seq --pairs FILE`` (issue 20's defaults-only measurement).

The example's recipe (keras-io ``examples/nlp/addition_rnn.py``, described here, not copied):

* each operand is a number of 1 to ``DIGITS`` digits: its length is drawn uniformly from 1..DIGITS and each
  digit uniformly from 0-9 (so a leading zero makes a shorter number, as ``int("07") == 7``);
* a pair whose operands were already seen in either order is skipped (``a+b`` and ``b+a`` count once);
* 50,000 questions in all; 10% are set apart for validation, leaving 45,000 for training.

The example pads questions to 7 characters, answers to 4 and reverses the question: those are encoding
choices of its model; the file holds the plain ``a+b`` and ``a+b`` evaluated, and ``rnnlab train seq2seq``
holds out ``--test-fraction`` (default 0.1: the same 45,000 / 5,000 split, disjoint sources).

    python benchmarks/addition_pairs.py addition.tsv [--num 50000] [--digits 3] [--seed 0]
"""
from __future__ import annotations

import argparse

from rnnlab.datasets import keras_addition_pairs


def keras_io_addition_pairs(num=50000, digits=3, seed=0):
    """``num`` distinct ``("a+b", "a+b evaluated")`` pairs drawn as the keras-io addition example draws them
    (:func:`rnnlab.datasets.keras_addition_pairs`, what ``rnnlab train seq2seq --generate addition`` draws)."""
    return keras_addition_pairs(num, digits, seed=seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the TSV file to write")
    p.add_argument("--num", type=int, default=50000)
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    pairs = keras_io_addition_pairs(args.num, args.digits, args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in pairs)
    print(f"{len(pairs)} pairs written to {args.out}")


if __name__ == "__main__":
    main()
