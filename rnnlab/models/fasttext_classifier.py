"""The fastText text classifier (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification").

A text is a bag of features: the ids of its vocabulary words and, with ``word_ngrams = n > 1``, the hashed
word n-grams (2..n consecutive tokens) in ``bucket`` extra rows, computed exactly as Facebook's fastText
(``Dictionary::addWordNgrams``): with ``h_i`` the 32-bit FNV-1a hash of token ``i`` (every token, out-of-
vocabulary ones and the end-of-text token ``</s>`` included), sign-extended from ``int32`` to ``uint64``,

    g = h_i;  for j = i+1 .. i+n-1:  g = g * 116049371 + h_j  (mod 2**64),  feature nwords + g % bucket.

With ``W`` (nwords + bucket, D) the input embeddings, ``O`` (K, D) the output weights and ``F`` the features
of a text (repeats counted), the model is a linear softmax over the averaged embedding:

    h = (1/|F|) sum_{f in F} W[f],   z = O h,   p = softmax(z),   L = -log p[y].

Gradients (hand-written; :func:`loss_and_grads`, checked by finite differences in the tests):

    dL/dz = p - e_y,   dL/dO = (p - e_y) h^T,   dL/dh = O^T (p - e_y),   dL/dW[f] = dL/dh / |F| per occurrence.

Hierarchical softmax (``loss="hs"``, fastText's ``-loss hs``): the classes are the leaves of a Huffman tree
built from their training counts (Facebook's ``Model::buildTree``: the two least frequent nodes merged first,
the second one taking code 1); its ``K - 1`` inner nodes own the rows ``O[0..K-2]``. With ``path(y)`` the inner
nodes from leaf ``y`` to the root, ``c_n`` in {0, 1} the code of the step below node ``n`` and
``s(x) = 1 / (1 + exp(-x))``,

    p(y) = prod_{n in path(y)} s(f_n)^{c_n} (1 - s(f_n))^{1 - c_n},   f_n = O[n] . h,
    L = -log p(y),   dL/df_n = s(f_n) - c_n,   dL/dO[n] = (s(f_n) - c_n) h,   dL/dh = sum_n (s(f_n) - c_n) O[n]

(:func:`hs_loss_and_grads`). A text costs ``O(D log K)`` instead of ``O(D K)``; the probabilities of all
leaves sum to 1, so ``predict_proba`` returns them all (fastText's ``predict`` picks the best leaf).

Training is fastText's: plain SGD one text at a time, in order (as one fastText thread reads its file), the
learning rate decaying linearly ``lr_t = lr (1 - t / (epochs * n_tokens))`` over the tokens seen,
``W ~ U(-1/D, 1/D)``, ``O = 0``. Each text is its tokens plus ``</s>`` (fastText reads one text per line and
counts the line end as a word). Losses: ``"softmax"`` (default) and ``"hs"``.
"""
from __future__ import annotations

import time

import numpy as np

from .. import _native

__all__ = ["FastTextClassifier", "word_ngram_features", "loss_and_grads", "hs_loss_and_grads", "huffman_paths"]

EOS = "</s>"
_NGRAM_MUL = np.uint64(116049371)


def _token_hashes(tokens, cache):
    from ..embeddings.fasttext import ft_hash_bytes

    out = np.empty(len(tokens), dtype=np.uint32)
    for i, t in enumerate(tokens):
        h = cache.get(t)
        if h is None:
            h = cache[t] = ft_hash_bytes(t.encode("utf-8"))
        out[i] = h
    return out


def word_ngram_features(hashes, n, bucket):
    """Bucket numbers (0..bucket-1) of the word 2..n-grams of one text from its token hashes (uint32), in
    fastText's order (by start token, then length). Empty when ``n < 2`` or ``bucket == 0``."""
    hashes = np.asarray(hashes, dtype=np.uint32)
    L = len(hashes)
    if n < 2 or bucket <= 0 or L < 2:
        return np.zeros(0, dtype=np.int64)
    # int32 -> uint64 with sign extension, as fastText's `uint64_t h = (int32_t) hash`
    h64 = hashes.view(np.int32).astype(np.int64).view(np.uint64)
    cols = []
    g = h64.copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            if L - k <= 0:
                break
            g = g[:L - k] * _NGRAM_MUL + h64[k:]          # wraps mod 2**64 like the C++ uint64
            cols.append(g % np.uint64(bucket))
    # order: for each start i, lengths 2..n
    out = np.full((L, len(cols)), -1, dtype=np.int64)
    for k, c in enumerate(cols):
        out[:len(c), k] = c.astype(np.int64)
    flat = out.reshape(-1)
    return flat[flat >= 0]


def loss_and_grads(W, O, feats, y):
    """Softmax loss of one text and its exact gradients: ``(loss, dL/dh (D,), dL/dO (K, D), probs (K,))``;
    the gradient of ``W`` is ``dL/dh / len(feats)`` added at every row of ``feats`` (repeats add up)."""
    feats = np.asarray(feats, dtype=np.int64)
    D = W.shape[1]
    h = W[feats].mean(axis=0) if len(feats) else np.zeros(D, dtype=W.dtype)
    z = O @ h
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    loss = -float(np.log(max(p[y], 1e-300)))
    d = p.copy()
    d[y] -= 1.0
    return loss, O.T @ d, np.outer(d, h), p


def huffman_paths(counts):
    """Huffman tree of ``K >= 2`` classes with these counts, built as Facebook's ``Model::buildTree``.

    The leaves are the classes in order of decreasing count (ties: the earlier class first, which keeps the
    order of a Facebook dictionary, already sorted that way); the two smallest of (next leaf, next inner
    node) are merged, the second taking code 1. Returns ``(paths, codes)``: for class ``k``, ``paths[k]``
    the inner-node rows (``0..K-2``) from its leaf up to the root and ``codes[k]`` the codes (0/1) of the
    steps, as int64 arrays.
    """
    counts = np.asarray(counts, dtype=np.int64)
    K = len(counts)
    if K < 2:
        raise ValueError(f"huffman_paths: need at least 2 classes, got {K}")
    order = np.argsort(-counts, kind="stable")             # leaf position -> class
    n = 2 * K - 1
    cnt = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    cnt[:K] = counts[order]
    parent = np.full(n, -1, dtype=np.int64)
    binary = np.zeros(n, dtype=np.int64)
    leaf, node = K - 1, K
    for i in range(K, n):
        mini = []
        for _ in range(2):
            if leaf >= 0 and cnt[leaf] < cnt[node]:
                mini.append(leaf)
                leaf -= 1
            else:
                mini.append(node)
                node += 1
        cnt[i] = cnt[mini[0]] + cnt[mini[1]]
        parent[mini[0]] = parent[mini[1]] = i
        binary[mini[1]] = 1
    paths, codes = [None] * K, [None] * K
    for pos in range(K):
        p, c, j = [], [], pos
        while parent[j] != -1:
            p.append(parent[j] - K)
            c.append(binary[j])
            j = parent[j]
        paths[order[pos]], codes[order[pos]] = np.array(p, dtype=np.int64), np.array(c, dtype=np.int64)
    return paths, codes


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def hs_loss_and_grads(W, O, feats, path, code):
    """Hierarchical-softmax loss of one text whose class has inner nodes ``path`` and codes ``code`` (from
    :func:`huffman_paths`): ``(loss, dL/dh (D,), dL/dO (rows of O, D))``; the gradient of ``W`` is
    ``dL/dh / len(feats)`` added at every row of ``feats``."""
    feats = np.asarray(feats, dtype=np.int64)
    D = W.shape[1]
    h = W[feats].mean(axis=0) if len(feats) else np.zeros(D, dtype=W.dtype)
    f = O[path] @ h
    sign = 2.0 * code - 1.0                                  # p(step) = s(sign * f)
    loss = -float(np.sum(_log_sigmoid(sign * f)))
    d = 1.0 / (1.0 + np.exp(-f)) - code                      # dL/df
    gO = np.zeros_like(O)
    np.add.at(gO, path, d[:, None] * h[None, :])
    return loss, O[path].T @ d, gO


class FastTextClassifier:
    """Supervised fastText: ``FastTextClassifier(dim=10, word_ngrams=2, bucket=2000000, lr=0.1, epochs=5)``.

    ``fit(texts, labels)`` with ``texts`` a list of token lists and ``labels`` a list of hashable labels;
    ``predict_proba(texts)`` (N, K), ``predict(texts)`` labels, ``evaluate(texts, labels)`` accuracy and mean
    loss. Names and defaults of Facebook's ``fasttext supervised`` (``-dim -wordNgrams -bucket -lr -epoch
    -minCount -lrUpdateRate -loss``) except ``dim`` (fastText: 100; 10 is the paper's sentiment setting).
    ``bucket`` is set to 0 when ``word_ngrams == 1`` (as fastText). ``loss``: ``"softmax"`` or ``"hs"``
    (hierarchical softmax over a Huffman tree of the class counts). See the module docstring for the math.
    """

    def __init__(self, dim=10, word_ngrams=2, bucket=2000000, lr=0.1, epochs=5, min_count=1, lr_update_rate=100,
                 seed=0, verbose=False, loss="softmax"):
        if not isinstance(loss, str) or loss not in ("softmax", "hs"):
            raise ValueError(f"FastTextClassifier: loss must be 'softmax' or 'hs', got {loss!r}")
        self.loss = loss
        self.class_counts = None
        for name, val, low in (("dim", dim, 1), ("word_ngrams", word_ngrams, 1), ("bucket", bucket, 0),
                               ("epochs", epochs, 1), ("min_count", min_count, 1),
                               ("lr_update_rate", lr_update_rate, 1)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
                raise ValueError(f"FastTextClassifier: {name} must be an int >= {low}, got {val!r}")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"FastTextClassifier: lr must be a finite number > 0, got {lr!r}")
        if word_ngrams > 1 and bucket == 0:
            raise ValueError(f"FastTextClassifier: bucket=0 leaves no rows for the word n-grams of "
                             f"word_ngrams={word_ngrams}; give bucket >= 1 or word_ngrams=1")
        self.dim, self.word_ngrams = int(dim), int(word_ngrams)
        self.bucket = int(bucket) if word_ngrams > 1 else 0
        self.lr, self.epochs, self.min_count = float(lr), int(epochs), int(min_count)
        self.lr_update_rate = int(lr_update_rate)
        self.seed, self.verbose = int(seed), bool(verbose)
        self.words = None
        self.classes = None
        self._hash_cache = {}

    # ------------------------------------------------------------------ features
    def _check_texts(self, texts, what):
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"FastTextClassifier.{what}: texts must be a list of token lists, not a string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if isinstance(t, (str, bytes)):
                raise TypeError(f"FastTextClassifier.{what}: text {i} is a string; give token lists "
                                "(e.g. text.split())")
        return texts

    def features(self, tokens):
        """The feature rows of one text (token list): vocabulary word ids, then ``nwords + n-gram bucket``."""
        toks = list(tokens) + [EOS]
        get = self.word_index.get
        ids = np.fromiter((i for i in map(get, toks) if i is not None), dtype=np.int64)
        if self.bucket:
            ng = word_ngram_features(_token_hashes(toks, self._hash_cache), self.word_ngrams, self.bucket)
            ids = np.concatenate([ids, ng + len(self.words)])
        return ids

    # ------------------------------------------------------------------ training
    def fit(self, texts, labels):
        """Build the vocabulary (words with ``count >= min_count``, most frequent first, ``</s>`` counted
        once per text), then SGD as fastText. Returns ``self``; ``train_seconds`` / ``train_cpu_seconds``
        hold the training time (features included)."""
        texts = self._check_texts(texts, "fit")
        labels = list(labels)
        if len(texts) != len(labels):
            raise ValueError(f"FastTextClassifier.fit: {len(texts)} texts but {len(labels)} labels")
        ntok = sum(len(t) for t in texts)
        if not texts or ntok == 0:
            raise ValueError(f"FastTextClassifier.fit: no training words ({len(texts)} texts, 0 tokens)")
        self.classes = sorted(set(labels), key=str)
        if len(self.classes) < 2:
            raise ValueError(f"FastTextClassifier.fit: need at least 2 classes, got {self.classes}")
        t0, c0 = time.perf_counter(), time.process_time()
        from collections import Counter

        counts = Counter()
        for t in texts:
            counts.update(t)
        counts[EOS] += len(texts)
        kept = sorted(((w, c) for w, c in counts.items() if c >= self.min_count), key=lambda wc: -wc[1])
        self.words = [w for w, _ in kept]
        self.word_index = {w: i for i, w in enumerate(self.words)}
        cls_index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([cls_index[c] for c in labels], dtype=np.int64)
        self.class_counts = np.bincount(y, minlength=len(self.classes)).astype(np.int64)
        self._set_tree()
        feats = [self.features(t) for t in texts]
        ntokens = ntok + len(texts)
        rng = np.random.default_rng(self.seed)
        V, D, K = len(self.words), self.dim, len(self.classes)
        self.input_matrix = ((rng.random((V + self.bucket, D), dtype=np.float32) * 2 - 1) / D).astype(np.float32)
        self.output_matrix = np.zeros((K, D), dtype=np.float32)
        self._sgd(feats, y, [len(t) + 1 for t in texts], ntokens)
        self.train_seconds = time.perf_counter() - t0
        self.train_cpu_seconds = time.process_time() - c0
        return self

    def _set_tree(self):
        self._paths = self._codes = None
        if self.loss == "hs":
            self._paths, self._codes = huffman_paths(self.class_counts)

    def _sgd(self, feats, y, lens, ntokens):
        W, O = self.input_matrix, self.output_matrix
        total = self.epochs * ntokens
        seen, since = 0, 0
        lr = self.lr
        loss_sum, n_ex = 0.0, 0
        last = time.perf_counter()
        scatter = _native.scatter_add
        for epoch in range(self.epochs):
            for i in range(len(feats)):
                f = feats[i]
                if len(f) and self.loss == "hs":
                    h = W[f].mean(axis=0)
                    path, code = self._paths[y[i]], self._codes[y[i]]
                    Op = O[path]
                    z = Op @ h
                    loss_sum -= float(np.sum(_log_sigmoid((2.0 * code - 1.0) * z)))
                    d = 1.0 / (1.0 + np.exp(-z)) - code           # dL/df per inner node
                    gh = (Op.T @ d) * (-lr / len(f))
                    O[path] = Op - (lr * d)[:, None] * h[None, :]
                    scatter(W, f, np.broadcast_to(gh, (len(f), gh.shape[0])))
                elif len(f):
                    h = W[f].mean(axis=0)
                    z = O @ h
                    z -= z.max()
                    p = np.exp(z)
                    p /= p.sum()
                    loss_sum -= float(np.log(max(p[y[i]], 1e-30)))
                    p[y[i]] -= 1.0                               # dL/dz
                    gh = (O.T @ p) * (-lr / len(f))               # -lr dL/dW[f] for every occurrence
                    O -= (lr * p)[:, None] * h[None, :]
                    scatter(W, f, np.broadcast_to(gh, (len(f), gh.shape[0])))
                n_ex += 1
                since += lens[i]
                if since > self.lr_update_rate:
                    seen += since
                    since = 0
                    lr = self.lr * max(0.0, 1.0 - seen / total)
                    if self.verbose and time.perf_counter() - last > 0.5:
                        last = time.perf_counter()
                        print(f"\rfastText supervised: epoch {epoch + 1}/{self.epochs} {100.0 * seen / total:5.1f}%"
                              f"  lr {lr:.5f}  loss {loss_sum / max(n_ex, 1):.4f} ", end="", flush=True)
            if not np.isfinite(O).all():
                raise FloatingPointError(f"FastTextClassifier diverged in epoch {epoch + 1} (lr {self.lr}); "
                                         "train again with a smaller lr")
        self.train_loss = loss_sum / max(n_ex, 1)
        if self.verbose:
            print(f"\rfastText supervised: {self.epochs} epochs, mean loss {self.train_loss:.4f}" + " " * 20,
                  flush=True)

    # ------------------------------------------------------------------ inference
    def _require_fit(self, what):
        if self.words is None:
            raise ValueError(f"FastTextClassifier.{what}: call fit() first")

    def predict_proba(self, texts):
        self._require_fit("predict_proba")
        texts = self._check_texts(texts, "predict_proba")
        W, O = self.input_matrix, self.output_matrix
        H = np.zeros((len(texts), self.dim), dtype=np.float64)
        for i, t in enumerate(texts):
            f = self.features(t)
            if len(f):
                H[i] = W[f].mean(axis=0)
        if self.loss == "hs":
            F = H @ O.T.astype(np.float64)                   # (N, K) scores of the inner nodes (last unused)
            logP = np.zeros((len(texts), len(self.classes)))
            for k, (path, code) in enumerate(zip(self._paths, self._codes)):
                logP[:, k] = _log_sigmoid(F[:, path] * (2.0 * code - 1.0)).sum(axis=1)
            return np.exp(logP)
        Z = H @ O.T.astype(np.float64)
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        return P / P.sum(axis=1, keepdims=True)

    def predict(self, texts):
        P = self.predict_proba(texts)
        return [self.classes[k] for k in np.argmax(P, axis=1)]

    def evaluate(self, texts, labels):
        """``{"accuracy", "loss"}`` on labelled texts (labels unknown to the model raise ``ValueError``)."""
        labels = list(labels)
        idx = {c: i for i, c in enumerate(self.classes or [])}
        unknown = sorted({str(c) for c in labels if c not in idx})
        if unknown:
            raise ValueError(f"FastTextClassifier.evaluate: label(s) {unknown[:5]} unknown to the model "
                             f"(classes {self.classes})")
        P = self.predict_proba(texts)
        if len(labels) != len(P):
            raise ValueError(f"FastTextClassifier.evaluate: {len(P)} texts but {len(labels)} labels")
        y = np.array([idx[c] for c in labels])
        return {"accuracy": float(np.mean(np.argmax(P, axis=1) == y)),
                "loss": float(-np.mean(np.log(np.maximum(P[np.arange(len(y)), y], 1e-300))))}

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write an ``.npz`` (no pickle) through :func:`rnnlab.io.write_npz`, atomically: both matrices and the
        settings/vocabulary/classes as the JSON entry ``meta``; returns the path."""
        from ..io import write_npz

        self._require_fit("save")
        meta = {"kind": "rnnlab.FastTextClassifier", "dim": self.dim, "word_ngrams": self.word_ngrams,
                "bucket": self.bucket, "lr": self.lr, "epochs": self.epochs, "min_count": self.min_count,
                "lr_update_rate": self.lr_update_rate, "seed": self.seed, "words": self.words,
                "classes": [str(c) for c in self.classes], "loss": self.loss,
                "class_counts": [int(c) for c in self.class_counts]}
        return write_npz(path, {"input_matrix": self.input_matrix, "output_matrix": self.output_matrix},
                         {"meta": meta})

    @classmethod
    def from_facebook(cls, path):
        """A classifier with the vocabulary, labels, n-gram settings and matrices of a supervised Facebook
        fastText ``.bin`` (read by :func:`rnnlab.embeddings.load_facebook_model`); its predictions are the
        model's (softmax or hierarchical-softmax loss, the tree rebuilt from the label counts of the file;
        character n-grams, ``maxn > 0``, and the ns/ova losses are not supported here)."""
        from ..embeddings.fasttext_io import load_facebook_model

        fb = load_facebook_model(path)
        a = fb.args
        if a["model"] != "supervised":
            raise ValueError(f"{path}: a {a['model']} model, not a supervised classifier")
        if a["maxn"] > 0:
            raise ValueError(f"{path}: the model uses character n-grams (minn={a['minn']}, maxn={a['maxn']}), "
                             "which FastTextClassifier does not compute")
        if a["loss"] not in ("softmax", "hs"):
            raise ValueError(f"{path}: the model was trained with loss={a['loss']}; FastTextClassifier reads "
                             "the softmax and hs losses only")
        m = cls(dim=a["dim"], word_ngrams=a["wordNgrams"], bucket=max(a["bucket"], 1), lr=0.1,
                epochs=max(a["epoch"], 1), min_count=max(a["minCount"], 1), loss=a["loss"])
        m.bucket = a["bucket"] if a["wordNgrams"] > 1 else 0
        m.words, m.classes = list(fb.words), list(fb.labels)
        m.word_index = {w: i for i, w in enumerate(m.words)}
        m.input_matrix = fb.input_matrix[:len(m.words) + m.bucket]
        m.output_matrix = fb.output_matrix
        m.class_counts = np.asarray(fb.label_counts, dtype=np.int64)
        if m.loss == "hs" and len(m.classes) < 2:
            raise ValueError(f"{path}: a hierarchical-softmax model needs at least 2 labels, got {len(m.classes)}")
        m._set_tree()
        return m

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save` through :class:`rnnlab.io.NpzArchive` (no pickle; the matrix
        shapes are checked from the array headers against the settings before anything is read); every problem
        is an :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file."""
        from .. import io as rio

        with rio.NpzArchive(path, "rnnlab FastTextClassifier file") as arc:
            if "meta" not in arc:
                raise rio.FileFormatError(f"{path}: not a FastTextClassifier file (no 'meta' entry)", path=path)
            meta = arc.read_json("meta")
            if not isinstance(meta, dict) or meta.get("kind") != "rnnlab.FastTextClassifier":
                kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
                raise rio.FileFormatError(f"{path}: not a FastTextClassifier file (kind {kind!r:.60})", path=path)
            try:
                m = cls(dim=meta["dim"], word_ngrams=meta["word_ngrams"], bucket=meta["bucket"] or 1,
                        lr=meta["lr"], epochs=meta["epochs"], min_count=meta["min_count"],
                        lr_update_rate=meta["lr_update_rate"], seed=meta["seed"], loss=meta.get("loss", "softmax"))
                m.bucket = meta["bucket"]
                m.class_counts = np.asarray(meta.get("class_counts", [1] * len(meta["classes"])), dtype=np.int64)
                m.words, m.classes = list(meta["words"]), list(meta["classes"])
                m.word_index = {w: i for i, w in enumerate(m.words)}
                exp = (len(m.words) + m.bucket, m.dim)
            except rio.BUILD_ERRORS as e:
                raise rio.build_error(path, "FastTextClassifier", e) from None
            for name, want in (("input_matrix", exp), ("output_matrix", (len(m.classes), m.dim))):
                if name not in arc or arc.shape(name) != want or arc.dtype(name).kind != "f":
                    got = f"{arc.dtype(name)} {arc.shape(name)}" if name in arc else "missing"
                    raise rio.FileFormatError(f"{path}: matrix {name} is {got}; the settings need a float array of "
                                              f"shape {want}", path=path, member=name)
            m.input_matrix, m.output_matrix = arc.read("input_matrix"), arc.read("output_matrix")
        if m.class_counts.shape != (len(m.classes),) or (m.class_counts < 0).any():
            raise ValueError(f"{path}: class_counts {m.class_counts.tolist()[:10]} do not match the "
                             f"{len(m.classes)} classes")
        m._set_tree()
        return m
