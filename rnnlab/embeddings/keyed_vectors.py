"""Word vectors looked up by word: cosine similarity, 3CosAdd analogies and the standard evaluations.

With unit vectors ``u(w) = v(w) / ||v(w)||``:

* ``similarity(a, b) = u(a) . u(b)`` (cosine);
* ``most_similar(positive=P, negative=N)`` ranks every other word ``x`` by ``u(x) . q`` with
  ``q = m / ||m||``, ``m = mean(u(p) for p in P, -u(n) for n in N)`` — for ``P = [b, c]``, ``N = [a]``
  this is 3CosAdd, "a is to b as c is to ?" (gensim's and word2vec's ``most_similar``);
* ``doesnt_match(words)``: the word least similar to the normalised mean of the words' unit vectors;
* ``evaluate_word_analogies(path)``: word2vec's ``questions-words.txt`` format;
* ``evaluate_word_pairs(path)``: pairs with a human score, Spearman's rho computed here with
  tie-aware (average) ranks: ``rho = pearson(rank(x), rank(y))``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["KeyedVectors", "spearman", "rankdata"]


def rankdata(x):
    """Ranks 1..n of ``x``; tied values all get the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # group boundaries of equal values
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    ends = np.concatenate((starts[1:], [n]))
    avg = (starts + ends + 1) / 2.0            # mean of ranks starts+1 .. ends
    ranks = np.empty(n)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _pearson(a, b):
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def spearman(x, y):
    """Spearman's rank correlation of two equally long sequences (average ranks for ties)."""
    if len(x) != len(y):
        raise ValueError(f"spearman: lengths differ ({len(x)} vs {len(y)})")
    if len(x) < 2:
        raise ValueError(f"spearman: need at least 2 pairs, got {len(x)}")
    return _pearson(rankdata(x), rankdata(y))


class KeyedVectors:
    """A (V, D) float array of vectors with ``index_to_key`` (list) and ``key_to_index`` (dict).

    ``kv["word"]`` is the vector (a view; a list of words gives a (n, D) array), ``"word" in kv`` tests
    membership, ``len(kv)`` is the vocabulary size. Unknown words raise ``KeyError`` naming the word.
    ``counts`` (optional) holds word frequencies (saved nowhere; used by nothing but reports).
    """

    def __init__(self, vectors, index_to_key, counts=None):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"KeyedVectors: vectors must be 2-D (words, dim), got shape {vectors.shape}")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise TypeError(f"KeyedVectors: vectors must be a float array, got {vectors.dtype}")
        index_to_key = list(index_to_key)
        if len(index_to_key) != vectors.shape[0]:
            raise ValueError(f"KeyedVectors: {len(index_to_key)} keys for {vectors.shape[0]} vectors")
        self.vectors = vectors
        self.index_to_key = index_to_key
        self.key_to_index = {k: i for i, k in enumerate(index_to_key)}
        if len(self.key_to_index) != len(index_to_key):
            seen = set()
            dup = next(k for k in index_to_key if k in seen or seen.add(k))
            raise ValueError(f"KeyedVectors: duplicate key {dup!r}")
        self.counts = None if counts is None else np.asarray(counts)
        self._normed = None

    # ------------------------------------------------------------------ basics
    @property
    def vector_size(self):
        return self.vectors.shape[1]

    def __len__(self):
        return len(self.index_to_key)

    def __contains__(self, key):
        return key in self.key_to_index

    def get_index(self, key):
        """Row of ``key``; ``KeyError`` naming the word when it is not in the vocabulary."""
        try:
            return self.key_to_index[key]
        except (KeyError, TypeError):
            raise KeyError(f"word {key!r} not in vocabulary") from None

    def __getitem__(self, key):
        if isinstance(key, (list, tuple)):
            return self.vectors[[self.get_index(k) for k in key]]
        return self.vectors[self.get_index(key)]

    def get_vector(self, key, norm=False):
        i = self.get_index(key)
        return self.get_normed_vectors()[i] if norm else self.vectors[i]

    def fill_norms(self, force=False):
        """(Re)compute the cached unit vectors (call with ``force=True`` after changing ``vectors``)."""
        if self._normed is None or force:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._normed = self.vectors / np.where(norms > 0, norms, 1.0)

    def get_normed_vectors(self):
        self.fill_norms()
        return self._normed

    # ------------------------------------------------------------------ similarity
    def similarity(self, w1, w2):
        """Cosine similarity of two words."""
        un = self.get_normed_vectors()
        return float(np.dot(un[self.get_index(w1)], un[self.get_index(w2)]))

    def _query(self, positive, negative):
        if isinstance(positive, (str, np.ndarray)):
            positive = [positive]
        if isinstance(negative, (str, np.ndarray)):
            negative = [negative]
        positive = list(positive or [])
        negative = list(negative or [])
        if not positive and not negative:
            raise ValueError("most_similar: give at least one positive or negative word")
        un = self.get_normed_vectors()
        parts, used = [], []
        for words, sign in ((positive, 1.0), (negative, -1.0)):
            for w in words:
                if isinstance(w, np.ndarray):
                    if w.shape != (self.vector_size,):
                        raise ValueError(f"most_similar: a vector must have shape ({self.vector_size},), "
                                         f"got {w.shape}")
                    parts.append(sign * w / max(np.linalg.norm(w), 1e-30))
                else:
                    i = self.get_index(w)
                    used.append(i)
                    parts.append(sign * un[i])
        m = np.mean(parts, axis=0)
        return m / max(np.linalg.norm(m), 1e-30), used

    def most_similar(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """The ``topn`` words nearest (cosine) to the combined query, as ``[(word, similarity), ...]``.

        Words of the query are never returned. ``restrict_vocab=n`` searches only the first ``n`` words
        (the most frequent for trained or word2vec-format vectors).
        """
        if isinstance(topn, bool) or not isinstance(topn, (int, np.integer)) or topn < 1:
            raise ValueError(f"most_similar: topn must be a positive int, got {topn!r}")
        q, used = self._query(positive, negative)
        un = self.get_normed_vectors()
        if restrict_vocab is not None:
            un = un[:int(restrict_vocab)]
        sims = un @ q.astype(un.dtype)
        used = [i for i in used if i < len(sims)]
        sims[used] = -np.inf
        k = min(topn, len(sims) - len(set(used)))
        if k <= 0:
            return []
        best = np.argpartition(-sims, k - 1)[:k]
        best = best[np.argsort(-sims[best], kind="stable")]
        return [(self.index_to_key[i], float(sims[i])) for i in best]

    def similar_by_vector(self, vector, topn=10, restrict_vocab=None):
        return self.most_similar(positive=[np.asarray(vector, dtype=np.float64)], topn=topn,
                                 restrict_vocab=restrict_vocab)

    def doesnt_match(self, words):
        """The word of ``words`` that fits least: lowest cosine to the normalised mean unit vector."""
        words = list(words)
        if len(words) < 2:
            raise ValueError(f"doesnt_match: need at least 2 words, got {len(words)}")
        un = self.get_normed_vectors()[[self.get_index(w) for w in words]]
        mean = un.mean(axis=0)
        mean /= max(np.linalg.norm(mean), 1e-30)
        return words[int(np.argmin(un @ mean))]

    # ------------------------------------------------------------------ evaluations
    def _ok_vocab(self, restrict_vocab, case_insensitive):
        n = len(self) if restrict_vocab is None else min(int(restrict_vocab), len(self))
        if case_insensitive:
            # the most frequent spelling wins (first in index order), as gensim
            ok = {}
            for i in range(n - 1, -1, -1):
                ok[self.index_to_key[i].upper()] = i
            return ok, n
        return {self.index_to_key[i]: i for i in range(n)}, n

    def evaluate_word_analogies(self, path, restrict_vocab=300000, case_insensitive=True):
        """Accuracy on analogy questions ``a b c d`` ("a is to b as c is to d"), 3CosAdd over the first
        ``restrict_vocab`` words, excluding ``a, b, c`` from the answers (gensim's protocol).

        File format: ``: section`` header lines, then lines of exactly 4 words. Questions with a word outside
        the searched vocabulary are skipped and counted in ``oov``. Returns a dict with ``accuracy`` (over
        answered questions), ``correct``, ``total`` (answered), ``oov``, ``oov_ratio`` and ``sections``
        (``[{"section", "correct", "total", "accuracy"}]``).
        """
        ok, n = self._ok_vocab(restrict_vocab, case_insensitive)
        sections = []
        oov = 0
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(":"):
                    sections.append({"section": line[1:].strip(), "questions": []})
                    continue
                if not sections:
                    raise ValueError(f"{path}: line {lineno}: question before the first ': section' line")
                words = line.upper().split() if case_insensitive else line.split()
                if len(words) != 4:
                    raise ValueError(f"{path}: line {lineno}: expected 4 words, got {len(words)}: {line!r}")
                if all(w in ok for w in words):
                    sections[-1]["questions"].append([ok[w] for w in words])
                else:
                    oov += 1
        un = self.get_normed_vectors()[:n]
        out, tot_c, tot_n = [], 0, 0
        for sec in sections:
            q = np.asarray(sec["questions"], dtype=np.int64).reshape(-1, 4)
            correct = 0
            for b0 in range(0, len(q), 512):
                qb = q[b0:b0 + 512]
                m = un[qb[:, 1]] - un[qb[:, 0]] + un[qb[:, 2]]
                m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-30)
                sims = m @ un.T
                rows = np.arange(len(qb))
                for j in range(3):
                    sims[rows, qb[:, j]] = -np.inf
                correct += int(np.sum(np.argmax(sims, axis=1) == qb[:, 3]))
            total = len(q)
            out.append({"section": sec["section"], "correct": correct, "total": total,
                        "accuracy": correct / total if total else float("nan")})
            tot_c += correct
            tot_n += total
        asked = tot_n + oov
        return {"accuracy": tot_c / tot_n if tot_n else float("nan"), "correct": tot_c, "total": tot_n,
                "oov": oov, "oov_ratio": oov / asked if asked else float("nan"), "sections": out}

    def evaluate_word_pairs(self, path, delimiter="\t", restrict_vocab=300000, case_insensitive=True):
        """Spearman (and Pearson) correlation between cosine similarities and human scores.

        File: lines ``word1<delimiter>word2<delimiter>score``; blank lines and lines starting with ``#`` are
        skipped. Pairs with a word outside the first ``restrict_vocab`` words are skipped and counted.
        Returns a dict with ``spearman``, ``pearson``, ``pairs`` (used), ``oov`` and ``oov_ratio``.
        """
        ok, n = self._ok_vocab(restrict_vocab, case_insensitive)
        un = self.get_normed_vectors()
        model_s, human_s, oov = [], [], 0
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = line.rstrip("\r\n").split(delimiter)
                if len(parts) != 3:
                    raise ValueError(f"{path}: line {lineno}: expected 3 fields separated by {delimiter!r}, "
                                     f"got {len(parts)}: {line.strip()!r}")
                a, b, score = parts
                try:
                    score = float(score)
                except ValueError:
                    raise ValueError(f"{path}: line {lineno}: score {score!r} is not a number") from None
                if case_insensitive:
                    a, b = a.upper(), b.upper()
                if a in ok and b in ok:
                    model_s.append(float(np.dot(un[ok[a]], un[ok[b]])))
                    human_s.append(score)
                else:
                    oov += 1
        total = len(model_s) + oov
        if len(model_s) < 2:
            raise ValueError(f"{path}: fewer than 2 pairs with both words in the vocabulary "
                             f"({oov} of {total} pairs out of vocabulary)")
        return {"spearman": spearman(model_s, human_s), "pearson": _pearson(model_s, human_s),
                "pairs": len(model_s), "oov": oov, "oov_ratio": oov / total}

    # ------------------------------------------------------------------ files
    def save_word2vec_format(self, path, binary=False):
        """Write the word2vec text (``binary=False``) or binary format (readable by gensim and word2vec.c)."""
        from .io import save_word2vec_format
        save_word2vec_format(self, path, binary=binary)

    @classmethod
    def load_word2vec_format(cls, path, binary=False, limit=None):
        from .io import load_word2vec_format
        return load_word2vec_format(path, binary=binary, limit=limit)

    @classmethod
    def load_glove(cls, path, limit=None):
        from .io import load_glove
        return load_glove(path, limit=limit)
