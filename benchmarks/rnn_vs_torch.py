"""Training-step and inference throughput of rnnlab vs PyTorch, measured in the same process.

Model (the Keras imdb_lstm example): Embedding(20000, 128) + LSTM(128) + Dense(1, sigmoid),
batch 32, length 80, binary cross-entropy, Adam (dense updates on both sides), float32.

    python benchmarks/rnn_vs_torch.py [--threads 1] [--repeats 15]

Both libraries get the same thread count (OPENBLAS/OMP variables are set before NumPy loads;
torch.set_num_threads). Runs alternate between the two libraries and medians are reported,
because this machine has noisy periods. Prints sequences/s and the ratio rnnlab / PyTorch
(> 1 means rnnlab is faster).
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=80)
    p.add_argument("--vocab", type=int, default=20000)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--units", type=int, default=128)
    args = p.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import time

    import numpy as np
    import torch

    import rnnlab
    from rnnlab.layers import LSTM, Dense, Embedding

    torch.set_num_threads(args.threads)
    B, T, V, E, H = args.batch, args.length, args.vocab, args.embed, args.units
    gen = np.random.default_rng(0)
    x = gen.integers(1, V, size=(B, T))
    y = gen.integers(0, 2, size=(B, 1)).astype("float32")

    rnnlab.set_random_seed(0)
    model = rnnlab.Sequential([Embedding(V, E, input_length=T), LSTM(H), Dense(1, activation="sigmoid")])
    model.compile(rnnlab.optimizers.Adam(1e-3), "binary_crossentropy")

    class TorchModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.lstm = torch.nn.LSTM(E, H, batch_first=True)
            self.out = torch.nn.Linear(H, 1)

        def forward(self, ids):
            _, (h, _) = self.lstm(self.emb(ids))
            return torch.sigmoid(self.out(h[-1]))

    tm = TorchModel()
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    bce = torch.nn.BCELoss()

    def rn_train():
        model.train_on_batch(x, y)

    def rn_infer():
        model.predict(x, batch_size=B)

    def th_train():
        topt.zero_grad(set_to_none=False)
        loss = bce(tm(tx), ty)
        loss.backward()
        topt.step()

    def th_infer():
        with torch.no_grad():
            tm(tx)

    def timeit(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    results = {}
    for name, rn, th in [("training step", rn_train, th_train), ("inference", rn_infer, th_infer)]:
        for _ in range(3):
            rn(), th()
        a, b = [], []
        for _ in range(args.repeats):
            a.append(timeit(rn))
            b.append(timeit(th))
        ra, rb = float(np.median(a)), float(np.median(b))
        results[name] = (ra, rb)

    print(f"Embedding({V},{E}) + LSTM({H}) + Dense(1), batch {B}, length {T}, Adam, float32, "
          f"{args.threads} thread(s), medians of {args.repeats}")
    print(f"{'':<15}{'rnnlab ms':>11}{'torch ms':>11}{'rnnlab seq/s':>14}{'torch seq/s':>13}{'ratio':>8}")
    for name, (ra, rb) in results.items():
        print(f"{name:<15}{ra * 1e3:>11.2f}{rb * 1e3:>11.2f}{B / ra:>14.0f}{B / rb:>13.0f}{rb / ra:>8.2f}")
    print("ratio = rnnlab throughput / PyTorch throughput (> 1: rnnlab faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
