"""NBSVM-style text classifier (Wang & Manning 2012, "Baselines and Bigrams"): binarized word n-gram features
scaled by the naive-Bayes log-count ratio, then a linear classifier (here logistic regression, the "NB-LR"
form, trained by rnnlab's Adam).

Features. The vocabulary is every word n-gram (orders ``1..ngrams``) of the training texts whose words all occur
``>= min_count`` times; n-grams are exact (integer keys, no hashing). A text becomes the *binarized* indicator
vector ``x_hat`` (``x_hat_f = 1`` if feature ``f`` occurs in it, else 0; unknown n-grams are dropped).

Naive-Bayes ratio (alpha smoothing), for class ``k`` against the rest (one model when ``K = 2``, for class 1):

    p = alpha + sum_{i: y_i = k} x_hat_i,   q = alpha + sum_{i: y_i != k} x_hat_i,
    r_k = log( (p / ||p||_1) / (q / ||q||_1) )                                       (F,)

Model and loss (``s_ik = +1`` if ``y_i = k`` else ``-1``; ``lam = 1 / (C N)``, sklearn's scaling of ``C``):

    m_ik = sum_f w_kf r_kf x_hat_if + b_k,
    L = (1/N) sum_i sum_k log(1 + exp(-s_ik m_ik)) + (lam / 2) sum_k ||w_k||^2,
    dL/dm_ik = -s_ik sigmoid(-s_ik m_ik) / N,
    dL/dw_kf = sum_i dL/dm_ik r_kf x_hat_if + lam w_kf,   dL/db_k = sum_i dL/dm_ik

(:func:`logistic_loss_and_grads`, checked by finite differences in the tests). Training is full-batch Adam
(``learning_rate``, ``steps`` steps) from ``w = 0, b = 0``; with ``validation_data`` the weights of the step with
the best validation accuracy (checked every ``eval_every`` steps, ties: the earlier step) are kept. Probabilities:
``K = 2``: ``p(class 1) = sigmoid(m_i1)``; ``K > 2``: the one-vs-rest ``sigmoid(m_ik)`` normalised over ``k``.

On the IMDB official split (22,500 training reviews, 2,500 held out for validation): test accuracy 0.9156 with
the defaults and ``validation_data`` (best step 50), 0.918 after all 100 steps without it (docs/results.md);
Wang & Manning report 0.912 for NBSVM with bigrams.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

__all__ = ["NBSVMClassifier", "nb_log_count_ratio", "logistic_loss_and_grads"]


def nb_log_count_ratio(doc_ids, feat_ids, positive, n_features, alpha=1.0):
    """The naive-Bayes log-count ratio ``r`` (F,) of binarized features given as ``(doc, feature)`` pairs (each
    pair once), ``positive`` (N,) bool the documents of the class: ``log((p/|p|_1) / (q/|q|_1))`` with
    ``p = alpha + sum of the positive documents' x_hat``, ``q`` the same over the others."""
    pos = np.asarray(positive, dtype=bool)[doc_ids]
    p = alpha + np.bincount(feat_ids[pos], minlength=n_features).astype(np.float64)
    q = alpha + np.bincount(feat_ids[~pos], minlength=n_features).astype(np.float64)
    return np.log(p / p.sum()) - np.log(q / q.sum())


def _margins(u, b, doc_ids, feat_ids, n):
    """``m (n, K)``: ``m_ik = sum_{f in doc i} u_kf + b_k`` for ``u (K, F)`` (``u = w * r``)."""
    return np.stack([np.bincount(doc_ids, weights=u[k][feat_ids], minlength=n) for k in range(u.shape[0])],
                    axis=1) + b


def logistic_loss_and_grads(w, b, r, doc_ids, feat_ids, signs, lam):
    """The loss and exact gradients of the module docstring: ``(L, dL/dw (K, F), dL/db (K,))`` for ``w, r (K, F)``,
    ``b (K,)``, binarized features as ``(doc, feature)`` pairs and ``signs (N, K)`` in {-1, +1}."""
    n = signs.shape[0]
    m = _margins(w * r, b, doc_ids, feat_ids, n)
    loss = float(np.logaddexp(0.0, -signs * m).sum() / n + 0.5 * lam * np.sum(w * w))
    dm = -signs / (1.0 + np.exp(signs * m)) / n                          # -s sigmoid(-s m) / N
    gw = np.stack([np.bincount(feat_ids, weights=dm[doc_ids, k], minlength=w.shape[1]) for k in range(w.shape[0])])
    return loss, gw * r + lam * w, dm.sum(axis=0)


class _Params:
    """The weights as rnnlab's optimizers see a layer: ``params`` and ``grads`` by name."""

    def __init__(self, **params):
        self.params, self.grads = params, {}


class NBSVMClassifier:
    """``NBSVMClassifier(ngrams=2, alpha=1.0, C=1.0, steps=100, learning_rate=0.02, min_count=1, eval_every=10)``.

    ``fit(texts, labels, validation_data=None)`` with ``texts`` a list of token lists and ``labels`` hashable
    labels (2 or more classes); ``predict_proba(texts)`` (N, K) in the order of ``classes``, ``predict``,
    ``evaluate(texts, labels)`` (accuracy and mean loss), ``save(path)`` / ``NBSVMClassifier.load(path)``
    (``.npz`` through :func:`rnnlab.io.write_npz`, no pickle). See the module docstring for the math.
    """

    def __init__(self, ngrams=2, alpha=1.0, C=1.0, steps=100, learning_rate=0.02, min_count=1, eval_every=10,
                 verbose=False):
        for name, val, low, high in (("ngrams", ngrams, 1, 3), ("steps", steps, 1, None),
                                     ("min_count", min_count, 1, None), ("eval_every", eval_every, 1, None)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low or (
                    high is not None and val > high):
                rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"NBSVMClassifier: {name} must be an int {rng}, got {val!r}")
        for name, val in (("alpha", alpha), ("C", C), ("learning_rate", learning_rate)):
            if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)) or not (
                    np.isfinite(val) and val > 0):
                raise ValueError(f"NBSVMClassifier: {name} must be a finite number > 0, got {val!r}")
        self.ngrams, self.steps, self.min_count, self.eval_every = int(ngrams), int(steps), int(min_count), \
            int(eval_every)
        self.alpha, self.C, self.learning_rate = float(alpha), float(C), float(learning_rate)
        self.verbose = bool(verbose)
        self.words = self.classes = None
        self.best_step = None

    # ------------------------------------------------------------------ features
    @staticmethod
    def _check_texts(texts, what):
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"NBSVMClassifier.{what}: texts must be a list of token lists, not a string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if isinstance(t, (str, bytes)):
                raise TypeError(f"NBSVMClassifier.{what}: text {i} is a string; give token lists (e.g. text.split())")
        return texts

    def _ids(self, tokens):
        get = self.word_index.get
        return np.fromiter((get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))

    def _keys(self, ids, n):
        """Integer keys of the n-grams of one id array (0 where a word is unknown: dropped)."""
        V = len(self.words) + 1
        if len(ids) < n:
            return np.zeros(0, dtype=np.int64)
        key = ids[:len(ids) - n + 1].copy()
        ok = key > 0
        for j in range(1, n):
            part = ids[j:len(ids) - n + 1 + j]
            key = key * V + part
            ok &= part > 0
        return key[ok]

    def _pairs(self, texts):
        """Binarized features of ``texts`` as ``(doc ids, feature ids)``, each pair once, sorted by document."""
        docs, feats = [], []
        for i, t in enumerate(texts):
            ids = self._ids(t)
            parts = [ids[ids > 0] - 1]
            offset = len(self.words)
            for n, table in enumerate(self.ngram_keys, start=2):
                k = self._keys(ids, n)
                pos = np.minimum(np.searchsorted(table, k), max(len(table) - 1, 0))
                hit = table[pos] == k if len(table) else np.zeros(len(k), dtype=bool)
                parts.append(pos[hit] + offset)
                offset += len(table)
            f = np.unique(np.concatenate(parts))
            feats.append(f)
            docs.append(np.full(len(f), i, dtype=np.int64))
        if not texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(docs), np.concatenate(feats)

    @property
    def n_features(self):
        return len(self.words) + sum(len(t) for t in self.ngram_keys)

    # ------------------------------------------------------------------ training
    def fit(self, texts, labels, validation_data=None):
        """Build the n-gram vocabulary and the NB ratios, then train (module docstring). ``validation_data``:
        ``(texts, labels)``; the weights with the best validation accuracy are kept. Returns ``self``."""
        from ..optimizers import Adam

        texts = self._check_texts(texts, "fit")
        labels = list(labels)
        if len(texts) != len(labels):
            raise ValueError(f"NBSVMClassifier.fit: {len(texts)} texts but {len(labels)} labels")
        classes = sorted(set(labels), key=str)
        if len(classes) < 2:
            raise ValueError(f"NBSVMClassifier.fit: need at least 2 classes, got {classes}")
        counts = Counter()
        for t in texts:
            counts.update(t)
        kept = sorted(((w, c) for w, c in counts.items() if c >= self.min_count), key=lambda wc: (-wc[1], wc[0]))
        if not kept:
            raise ValueError(f"NBSVMClassifier.fit: no word occurs min_count={self.min_count} times in the "
                             f"{len(texts)} training texts")
        if (len(kept) + 1) ** self.ngrams >= 2 ** 63:
            raise ValueError(f"NBSVMClassifier.fit: {len(kept):,} words are too many for exact {self.ngrams}-gram "
                             "keys; raise min_count or lower ngrams")
        t0, c0 = time.perf_counter(), time.process_time()
        self.classes = classes
        self.words = [w for w, _ in kept]
        self.word_index = {w: i + 1 for i, w in enumerate(self.words)}
        ids = [self._ids(t) for t in texts]
        self.ngram_keys = [np.unique(np.concatenate([self._keys(a, n) for a in ids] or [np.zeros(0, np.int64)]))
                           for n in range(2, self.ngrams + 1)]
        doc_ids, feat_ids = self._pairs(texts)
        F, N = self.n_features, len(texts)
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[c] for c in labels], dtype=np.int64)
        cols = [1] if len(classes) == 2 else list(range(len(classes)))
        from ..io import check_allocation

        # r, w, its gradient and two Adam slots in float64, plus the float32 copies kept: (K, F) each
        check_allocation(44 * len(cols) * F, f"NBSVMClassifier.fit: {len(cols)} x {F:,} features (ratios, "
                                             "weights, gradient, Adam state)")
        r = np.stack([nb_log_count_ratio(doc_ids, feat_ids, y == k, F, self.alpha) for k in cols])
        signs = np.stack([np.where(y == k, 1.0, -1.0) for k in cols], axis=1)
        holder = _Params(w=np.zeros((len(cols), F)), b=np.zeros(len(cols)))
        opt = Adam(self.learning_rate)
        lam = 1.0 / (self.C * N)
        valid = None
        if validation_data is not None:
            vt, vl = validation_data
            vt = self._check_texts(vt, "fit (validation_data)")
            vl = list(vl)
            if len(vt) != len(vl) or not vt:
                raise ValueError(f"NBSVMClassifier.fit: validation_data has {len(vt)} texts and {len(vl)} labels")
            unknown = sorted({str(c) for c in vl if c not in index})
            if unknown:
                raise ValueError(f"NBSVMClassifier.fit: validation label(s) {unknown[:5]} are not training classes "
                                 f"{classes}")
            valid = (*self._pairs(vt), np.array([index[c] for c in vl]), len(vt))
        self.r = r.astype(np.float32)
        r = self.r.astype(np.float64)                                     # the float32 ratios the file keeps
        best = None
        for step in range(1, self.steps + 1):
            loss, gw, gb = logistic_loss_and_grads(holder.params["w"], holder.params["b"], r, doc_ids, feat_ids,
                                                   signs, lam)
            if not np.isfinite(loss):
                raise FloatingPointError(f"NBSVMClassifier diverged at step {step} (learning_rate "
                                         f"{self.learning_rate}); train again with a smaller one")
            holder.grads = {"w": gw, "b": gb}
            opt.apply([("w", holder, "w"), ("b", holder, "b")])
            if valid is not None and (step % self.eval_every == 0 or step == self.steps):
                self.weights, self.intercept = holder.params["w"].astype(np.float32), holder.params["b"].copy()
                acc = float(np.mean(np.argmax(self._proba(valid[0], valid[1], valid[3]), axis=1) == valid[2]))
                if self.verbose:
                    print(f"NBSVM step {step}: loss {loss:.4f}, validation accuracy {acc:.4f}", flush=True)
                if best is None or acc > best[0]:
                    best = (acc, step, self.weights, self.intercept)
        if best is not None:
            self.valid_accuracy, self.best_step, self.weights, self.intercept = best
        else:
            self.valid_accuracy, self.best_step = None, self.steps
            self.weights, self.intercept = holder.params["w"].astype(np.float32), holder.params["b"].copy()
        self.train_loss = loss
        self.train_seconds = time.perf_counter() - t0
        self.train_cpu_seconds = time.process_time() - c0
        return self

    # ------------------------------------------------------------------ inference
    def _proba(self, doc_ids, feat_ids, n):
        u = self.weights.astype(np.float64) * self.r.astype(np.float64)
        m = _margins(u, self.intercept, doc_ids, feat_ids, n)
        s = 0.5 * (1.0 + np.tanh(0.5 * m))                                  # sigmoid, overflow-free
        if len(self.classes) == 2:
            return np.concatenate([1.0 - s, s], axis=1)
        s = np.maximum(s, 1e-300)
        return s / s.sum(axis=1, keepdims=True)

    def _require_fit(self, what):
        if self.words is None:
            raise ValueError(f"NBSVMClassifier.{what}: call fit() first")

    def predict_proba(self, texts):
        """Class probabilities (N, K), columns in the order of :attr:`classes`."""
        self._require_fit("predict_proba")
        texts = self._check_texts(texts, "predict_proba")
        return self._proba(*self._pairs(texts), len(texts))

    def predict(self, texts):
        return [self.classes[k] for k in np.argmax(self.predict_proba(texts), axis=1)]

    def evaluate(self, texts, labels):
        """``{"accuracy", "loss"}`` on labelled texts (labels unknown to the model raise ``ValueError``)."""
        self._require_fit("evaluate")
        labels = list(labels)
        idx = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({str(c) for c in labels if c not in idx})
        if unknown:
            raise ValueError(f"NBSVMClassifier.evaluate: label(s) {unknown[:5]} unknown to the model "
                             f"(classes {self.classes})")
        P = self.predict_proba(texts)
        if len(labels) != len(P):
            raise ValueError(f"NBSVMClassifier.evaluate: {len(P)} texts but {len(labels)} labels")
        y = np.array([idx[c] for c in labels], dtype=np.int64)
        return {"accuracy": float(np.mean(np.argmax(P, axis=1) == y)),
                "loss": float(-np.mean(np.log(np.maximum(P[np.arange(len(y)), y], 1e-300))))}

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write an ``.npz`` (no pickle) through :func:`rnnlab.io.write_npz`, atomically: the ratios ``r``, the
        weights, the intercepts and the sorted n-gram keys as arrays; settings, words and classes as the JSON
        entry ``meta``. Returns the path."""
        from ..io import write_npz

        self._require_fit("save")
        meta = {"kind": "rnnlab.NBSVMClassifier", "ngrams": self.ngrams, "alpha": self.alpha, "C": self.C,
                "steps": self.steps, "learning_rate": self.learning_rate, "min_count": self.min_count,
                "eval_every": self.eval_every, "best_step": self.best_step, "words": self.words,
                "classes": [str(c) for c in self.classes]}
        arrays = {"r": self.r, "weights": self.weights, "intercept": np.asarray(self.intercept, dtype=np.float64)}
        for n, table in enumerate(self.ngram_keys, start=2):
            arrays[f"keys_{n}"] = table
        return write_npz(path, arrays, {"meta": meta})

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save` (:class:`rnnlab.io.NpzArchive`, no pickle); the array shapes are
        checked against the settings; every problem is an :class:`rnnlab.io.FileFormatError` (a ``ValueError``)
        naming the file."""
        from .. import io as rio

        with rio.NpzArchive(path, "rnnlab NBSVMClassifier file") as arc:
            if "meta" not in arc:
                raise rio.FileFormatError(f"{path}: not an NBSVMClassifier file (no 'meta' entry)", path=path)
            meta = arc.read_json("meta")
            if not isinstance(meta, dict) or meta.get("kind") != "rnnlab.NBSVMClassifier":
                kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
                raise rio.FileFormatError(f"{path}: not an NBSVMClassifier file (kind {kind!r:.60})", path=path)
            try:
                m = cls(ngrams=meta["ngrams"], alpha=meta["alpha"], C=meta["C"], steps=meta["steps"],
                        learning_rate=meta["learning_rate"], min_count=meta["min_count"],
                        eval_every=meta["eval_every"])
                m.best_step = meta.get("best_step")
                m.words, m.classes = [str(w) for w in meta["words"]], list(meta["classes"])
                if len(m.classes) < 2:
                    raise ValueError(f"need at least 2 classes, got {m.classes}")
                m.word_index = {w: i + 1 for i, w in enumerate(m.words)}
            except rio.BUILD_ERRORS as e:
                raise rio.build_error(path, "NBSVMClassifier", e) from None
            m.ngram_keys = []
            for n in range(2, m.ngrams + 1):
                name = f"keys_{n}"
                if name not in arc or len(arc.shape(name)) != 1 or arc.dtype(name) != np.int64:
                    got = f"{arc.dtype(name)} {arc.shape(name)}" if name in arc else "missing"
                    raise rio.FileFormatError(f"{path}: {name} is {got}; expected a 1-D int64 array", path=path,
                                              member=name)
                m.ngram_keys.append(arc.read(name))
            K = 1 if len(m.classes) == 2 else len(m.classes)
            for name, want in (("r", (K, m.n_features)), ("weights", (K, m.n_features)), ("intercept", (K,))):
                if name not in arc or arc.shape(name) != want or arc.dtype(name).kind != "f":
                    got = f"{arc.dtype(name)} {arc.shape(name)}" if name in arc else "missing"
                    raise rio.FileFormatError(f"{path}: {name} is {got}; the settings need a float array of "
                                              f"shape {want}", path=path, member=name)
            m.r, m.weights, m.intercept = arc.read("r"), arc.read("weights"), arc.read("intercept")
        if any(len(t) > 1 and np.any(np.diff(t) <= 0) for t in m.ngram_keys):
            raise rio.FileFormatError(f"{path}: the n-gram keys are not strictly increasing", path=path)
        return m
