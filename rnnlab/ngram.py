"""Count-based n-gram language models: the baseline for the neural word-level LM.

A model sees the training file as one token stream (sentences ending in ``<eos>``, the same stream a
neural LM trained with truncated BPTT sees) and is evaluated the same way: perplexity
``exp(-mean log p(w_i | w_{i-n+1} .. w_{i-1}))`` over every token of the evaluation file, ``<eos>`` included.
The stream is preceded by ``n - 1`` ``<eos>`` tokens so that the first words have a full context
(a sentence start is what follows an ``<eos>``).

The vocabulary is the set of training tokens plus ``<unk>``; evaluation tokens outside it count as ``<unk>``.
Every model defines a proper distribution over that vocabulary for every context (``distribution(context)``
sums to 1; the tests check it).

Smoothing
---------
``addk``
    ``p(w | h) = (c(h w) + k) / (c(h) + k |V|)`` at the full order only. It shows the sparsity problem
    plainly: an unseen context gives the uniform distribution, an unseen n-gram gets almost nothing.
``kn`` -- interpolated Kneser-Ney (Chen & Goodman 1998), one discount ``D`` per order::

        p(w | h) = max(c(h w) - D, 0) / c(h)  +  D N1+(h .) / c(h) * p(w | h')

    where ``h'`` drops the oldest word of ``h``. The full order uses raw counts ``c``; lower orders use
    *continuation counts* (the number of distinct words seen before ``h' w``), so a word frequent only after
    one particular word gets little lower-order mass. The unigram level is interpolated with the uniform
    distribution ``1/|V|``, so unseen vocabulary words keep a small probability. A context never seen in
    training hands its whole mass to the lower order. ``D = n1 / (n1 + 2 n2)`` from the count-of-counts of the
    order (n1 n-grams seen once, n2 twice), unless ``discount`` is given.
``mkn`` -- modified Kneser-Ney: three discounts per order for counts 1, 2 and 3+
    (``D_c = c - (c + 1) Y n_{c+1} / n_c`` with ``Y = n1 / (n1 + 2 n2)``), and the matching back-off weight
    ``(D1 N1(h .) + D2 N2(h .) + D3 N3+(h .)) / c(h)``.
"""
from __future__ import annotations

import collections
import math

import numpy as np

UNK = "<unk>"
EOS = "<eos>"


class NGramLM:
    """n-gram language model over a fixed vocabulary.

    Parameters
    ----------
    order : int
        n (1 = unigram).
    smoothing : ``"kn"``, ``"mkn"`` or ``"addk"``
    k : float
        add-k constant (``addk`` only), > 0.
    discount : float or None
        fixed KN discount in (0, 1) for all orders (``kn`` only); ``None`` estimates it.
    """

    def __init__(self, order=3, smoothing="kn", k=0.01, discount=None):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"NGramLM: order must be an integer >= 1, got {order!r}")
        if smoothing not in ("kn", "mkn", "addk"):
            raise ValueError(f"NGramLM: smoothing must be 'kn', 'mkn' or 'addk', got {smoothing!r}")
        if smoothing == "addk" and not (k > 0):
            raise ValueError(f"NGramLM: k must be > 0 for add-k smoothing, got {k!r}")
        if discount is not None and not 0 < discount < 1:
            raise ValueError(f"NGramLM: discount must be in (0, 1), got {discount!r}")
        self.order = order
        self.smoothing = smoothing
        self.k = float(k)
        self.fixed_discount = discount
        self.vocab = None

    # -- training ------------------------------------------------------------------------------------
    def fit(self, tokens, vocab=None):
        """Count n-grams of a token stream (a list of strings, ``<eos>`` included); returns ``self``.

        ``vocab``: the token list to predict over; default = the distinct training tokens plus ``<unk>``.
        Training tokens outside a given ``vocab`` become ``<unk>``.
        """
        tokens = list(tokens)
        if not tokens:
            raise ValueError("NGramLM.fit: no training tokens")
        if vocab is None:
            vocab = list(dict.fromkeys([UNK, EOS] + tokens))
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise ValueError("NGramLM.fit: the vocabulary has duplicate tokens")
        if UNK not in self.index:
            raise ValueError(f"NGramLM.fit: the vocabulary must contain {UNK!r}")
        ids = self._ids(tokens)
        n = self.order
        self._pad = (self.index.get(EOS, self.index[UNK]),) * (n - 1)
        stream = self._pad + tuple(ids)
        # top[m][context] = {word: count}; for the full order raw counts, lower orders continuation counts
        full = collections.Counter(stream[i - n + 1:i + 1] for i in range(n - 1, len(stream)))
        self._levels = [None] * (n + 1)
        self._levels[n] = _group(full)
        if self.smoothing in ("kn", "mkn"):
            grams = full
            for m in range(n - 1, 0, -1):
                cont = collections.Counter(g[1:] for g in grams)    # distinct left extensions
                self._levels[m] = _group(cont)
                grams = cont
            self._discounts = [None] + [self._estimate_discounts(self._levels[m]) for m in range(1, n + 1)]
        self._stats = [None] + [self._context_stats(m) if self._levels[m] is not None else None
                                for m in range(1, n + 1)]
        self.train_tokens = len(ids)
        return self

    def _ids(self, tokens):
        unk = self.index[UNK]
        return [self.index.get(t, unk) for t in tokens]

    def _estimate_discounts(self, level):
        coc = collections.Counter()
        for succ in level.values():
            for c in succ.values():
                if c <= 4:
                    coc[c] += 1
        n1, n2, n3, n4 = (coc[i] for i in (1, 2, 3, 4))
        if self.fixed_discount is not None:
            return (self.fixed_discount,) * 3
        y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
        y = min(max(y, 0.05), 0.95)
        if self.smoothing == "kn":
            return (y, y, y)
        d1 = 1 - 2 * y * n2 / n1 if n1 else y
        d2 = 2 - 3 * y * n3 / n2 if n2 else y
        d3 = 3 - 4 * y * n4 / n3 if n3 else y
        # keep each D_c within (0, c): tiny corpora can give odd count-of-counts
        return (min(max(d1, 0.05), 0.95), min(max(d2, 0.05), 1.95), min(max(d3, 0.05), 2.95))

    def _context_stats(self, m):
        """context -> (total count, back-off weight numerator)."""
        out = {}
        disc = self._discounts[m] if self.smoothing != "addk" else None
        for h, succ in self._levels[m].items():
            total = sum(succ.values())
            if disc is None:
                out[h] = (total, 0.0)
                continue
            n1 = n2 = n3 = 0
            for c in succ.values():
                if c == 1:
                    n1 += 1
                elif c == 2:
                    n2 += 1
                else:
                    n3 += 1
            out[h] = (total, disc[0] * n1 + disc[1] * n2 + disc[2] * n3)
        return out

    @staticmethod
    def _d(disc, c):
        return disc[0] if c == 1 else disc[1] if c == 2 else disc[2]

    # -- probabilities ---------------------------------------------------------------------------------
    def _check(self):
        if self.vocab is None:
            raise ValueError("NGramLM: call fit() first")

    def _context(self, context):
        ctx = self._pad + tuple(self._ids(context))
        return ctx[len(ctx) - (self.order - 1):] if self.order > 1 else ()

    def prob_id(self, w, ctx):
        """p(word id ``w`` | context ids ``ctx``), ``ctx`` a tuple of exactly ``order - 1`` ids."""
        V = len(self.vocab)
        n = self.order
        if self.smoothing == "addk":
            stats = self._stats[n].get(ctx)
            c = self._levels[n].get(ctx, {}).get(w, 0)
            total = stats[0] if stats else 0
            return (c + self.k) / (total + self.k * V)
        p = 1.0 / V
        for m in range(1, n + 1):
            h = ctx[n - m:]
            st = self._stats[m].get(h)
            if st is None:
                continue
            total, gamma_num = st
            c = self._levels[m][h].get(w, 0)
            p = (max(c - self._d(self._discounts[m], c), 0.0) if c else 0.0) / total + gamma_num / total * p
        return p

    def prob(self, word, context=()):
        """p(``word`` | the preceding tokens ``context``; only the last ``order - 1`` matter)."""
        self._check()
        return self.prob_id(self.index.get(word, self.index[UNK]), self._context(context))

    def distribution(self, context=()):
        """float64 array of p(w | context) for every vocabulary word (in ``vocab`` order); sums to 1."""
        self._check()
        ctx = self._context(context)
        V = len(self.vocab)
        n = self.order
        if self.smoothing == "addk":
            succ = self._levels[n].get(ctx, {})
            total = sum(succ.values())
            p = np.full(V, self.k / (total + self.k * V))
            for w, c in succ.items():
                p[w] += c / (total + self.k * V)
            return p
        p = np.full(V, 1.0 / V)
        for m in range(1, n + 1):
            h = ctx[n - m:]
            st = self._stats[m].get(h)
            if st is None:
                continue
            total, gamma_num = st
            p *= gamma_num / total
            disc = self._discounts[m]
            for w, c in self._levels[m][h].items():
                p[w] += max(c - self._d(disc, c), 0.0) / total
        return p

    def log_prob_stream(self, tokens):
        """Sum of natural-log probabilities of a token stream (context continues from ``<eos>`` padding)."""
        self._check()
        ids = self._ids(tokens)
        stream = self._pad + tuple(ids)
        n1 = self.order - 1
        total = 0.0
        for i in range(n1, len(stream)):
            total += math.log(self.prob_id(stream[i], stream[i - n1:i]))
        return total, len(ids)

    def perplexity(self, tokens):
        """``exp(-mean log p)`` over the stream (every token, ``<eos>`` included; unknown -> ``<unk>``)."""
        lp, count = self.log_prob_stream(tokens)
        if count == 0:
            raise ValueError("NGramLM.perplexity: no tokens")
        return math.exp(-lp / count)


def _group(counter):
    """{(context..., w): c} -> {context: {w: c}}."""
    out = {}
    for g, c in counter.items():
        out.setdefault(g[:-1], {})[g[-1]] = c
    return out


def stream_of(sentences):
    """Flatten the sentences of :func:`rnnlab.datasets.text_corpus.read_token_file` into one token list."""
    return [t for s in sentences for t in s]
