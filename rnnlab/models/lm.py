"""Language-model building blocks shared by ``rnnlab train charlm``/``wordlm``, ``rnnlab generate`` and
``rnnlab explore`` (the library layer: nothing here imports :mod:`rnnlab.tasks` or the CLI).

Models (``settings`` is the dict a task file stores under ``settings``):

* :func:`build_charlm_stream_model` -- ``Embedding(V, E) -> RNN(U, return_sequences, stateful) x layers
  -> [Dropout] -> Dense(V)`` (logits), for a fixed batch of B contiguous streams (truncated BPTT).
* :func:`build_charlm_window_model` -- the Keras ``lstm_text_generation`` example: one-hot windows
  (maxlen, V) -> RNN(U) -> Dense(V, softmax).
* :func:`build_wordlm_model` -- ``[Tied]Embedding(V, E) -> [Dropout] -> (RNN -> [Dropout]) x layers
  -> Dense|TiedDense(V)``; with tied weights the last recurrent layer has E units so the output matrix
  is the embedding matrix transposed (Press & Wolf 2017, Inan et al. 2017). With
  ``settings["variational_dropout"]`` the dropouts are ``SpatialDropout1D``: one mask per sequence and
  feature, the same at every step of a BPTT window (Gal & Ghahramani 2016).

Sampling: with logits z and temperature T > 0, ``p_i = exp(z_i / T) / sum_j exp(z_j / T)`` (T = 0 is greedy
argmax); ``top_k = K`` keeps the K largest scores and renormalises (:func:`sample_next`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["build_charlm_stream_model", "build_charlm_window_model", "build_wordlm_model", "log_softmax",
           "one_hot_windows", "sample_next", "generate_chars", "charlm_default_size", "charlm_params"]


def _cell(name):
    from ..layers import GRU, LSTM, SimpleRNN

    cells = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
    if name not in cells:
        raise ValueError(f"cell must be one of {sorted(cells)}; got {name!r}")
    return cells[name]


def build_charlm_stream_model(vocab, settings, batch_size):
    """The stateful character stream model for a fixed batch size (training, evaluation or generation)."""
    from .sequential import Input, Sequential
    from ..layers import Dense, Dropout, Embedding


    cell = _cell(settings["cell"])
    layers = [Input((None,), batch_size=batch_size, dtype="int32"),
              Embedding(vocab, settings["embedding_dim"], name="embedding")]
    for i in range(settings["layers"]):
        layers.append(cell(settings["units"], return_sequences=True, stateful=True, name=f"rnn_{i}"))
        if settings["dropout"] and i < settings["layers"] - 1:
            layers.append(Dropout(settings["dropout"], name=f"dropout_{i}"))
    if settings["dropout"]:
        layers.append(Dropout(settings["dropout"], name="dropout_out"))
    layers.append(Dense(vocab, name="logits"))
    return Sequential(layers, name="charlm")


#: floating-point operations per second of one thread in a character-model training step, measured with
#: ``LSTM(512)`` and ``2 x LSTM(512)`` stream models (batch 64, bptt 100) on the 2-core development machine:
#: 77-82 GFLOP/s (11,500 and 4,270 characters per CPU-second)
CHARLM_FLOPS_PER_THREAD = 8e10
#: training characters per parameter at the compute-optimal size (Hoffmann et al. 2022: ~20 tokens per parameter)
CHARLM_CHARS_PER_PARAM = 20
#: at most this many parameters per training character (more over-fits the text despite dropout)
CHARLM_PARAMS_PER_CHAR = 2


def charlm_params(units, layers, vocab, embedding_dim=32, cell="lstm"):
    """Parameters of the stream model ``Embedding(V, E) -> RNN(U) x L -> Dense(V)``: a recurrent layer with
    ``g`` gate blocks (LSTM 4, GRU 3, SimpleRNN 1), input ``n`` and ``U`` units has ``g (n U + U U + 2 U)``."""
    g = {"lstm": 4, "gru": 3, "rnn": 1}.get(cell, 4)
    n, total = embedding_dim, vocab * embedding_dim
    for _ in range(layers):
        total += g * (n * units + units * units + 2 * units)
        n = units
    return total + (units + 1) * vocab


def charlm_default_size(train_chars, vocab, max_minutes, threads=1, embedding_dim=32, cell="lstm", layers=None):
    """The size rule of ``rnnlab train charlm``'s default model: ``(layers, units, target parameters)``.

    The target parameter count is the smaller of

    * the data limit ``P_data = 2 x training characters`` (:data:`CHARLM_PARAMS_PER_CHAR`), and
    * the compute-optimal size for the budget, ``P_compute = sqrt(C / (6 x 20))`` with the budget's operations
      ``C = max_minutes x 60 x threads x 8e10`` (:data:`CHARLM_FLOPS_PER_THREAD`, measured): a training step
      costs about 6 operations per parameter and character, and a model is best trained on about 20 characters
      per parameter (:data:`CHARLM_CHARS_PER_PARAM`). No budget (``max_minutes`` None or <= 0): ``P_data``.

    Layers grow with the target (unless ``layers`` is given): 1 below 2M parameters, 2 below 8M, else 3. The
    width ``U`` is the multiple of 64 (64 to 2048) whose :func:`charlm_params` is nearest the target. So a small
    text or a short budget gives one layer, a large text with a long budget (or many threads) a deeper and
    wider model. Nietzsche (541k training characters) with the 15-minute default on one thread: ``P_compute``
    775k < ``P_data`` 1.08M -> ``LSTM(448)``; without a budget ``LSTM(512)``.
    """
    if train_chars < 1:
        raise ValueError(f"charlm_default_size: train_chars must be >= 1, got {train_chars}")
    target = float(CHARLM_PARAMS_PER_CHAR * train_chars)
    if max_minutes is not None and max_minutes > 0:
        ops = float(max_minutes) * 60.0 * max(1, int(threads)) * CHARLM_FLOPS_PER_THREAD
        target = min(target, (ops / (6.0 * CHARLM_CHARS_PER_PARAM)) ** 0.5)
    if layers is None:
        layers = 1 if target < 2e6 else (2 if target < 8e6 else 3)
    widths = range(64, 2049, 64)
    units = min(widths, key=lambda u: (abs(charlm_params(u, layers, vocab, embedding_dim, cell) - target), u))
    return int(layers), int(units), int(target)


def build_charlm_window_model(vocab, settings):
    """The Keras example: one-hot windows (maxlen, V) -> RNN(U) -> Dense(V, softmax)."""
    from .sequential import Input, Sequential
    from ..layers import Dense, Dropout


    cell = _cell(settings["cell"])
    layers = [Input((settings["maxlen"], vocab))]
    for i in range(settings["layers"]):
        layers.append(cell(settings["units"], return_sequences=i < settings["layers"] - 1, name=f"rnn_{i}"))
    if settings["dropout"]:
        layers.append(Dropout(settings["dropout"], name="dropout_out"))
    layers.append(Dense(vocab, activation="softmax", name="softmax"))
    return Sequential(layers, name="charlm_window")


def build_wordlm_model(vocab, s, batch_size):
    """The stateful word language model for ``batch_size`` parallel streams (layers linked when tied)."""
    from .sequential import Input, Sequential
    from ..layers import Dense, Dropout, WeightDrop
    from ..layers.embedding import Embedding
    from ..layers.regularization import SpatialDropout1D
    from ..layers.tied import TiedDense, TiedEmbedding, link_tied_layers


    cell = _cell(s["cell"])
    emb_cls = TiedEmbedding if s["tie_weights"] else Embedding
    # variational dropout (Gal & Ghahramani 2016): one mask per sequence and feature, shared by all its steps
    drop = SpatialDropout1D if s.get("variational_dropout") else Dropout
    layers = [Input((None,), batch_size=batch_size, dtype="int32"),
              emb_cls(vocab, s["embedding_dim"], name="embedding")]
    if s["dropout"]:
        layers.append(drop(s["dropout"], name="dropout_in"))
    for i in range(s["layers"]):
        units = s["embedding_dim"] if (s["tie_weights"] and i == s["layers"] - 1) else s["units"]
        rec = cell(units, return_sequences=True, stateful=True, name=f"rnn_{i}")
        if s.get("weight_drop"):
            rec = WeightDrop(rec, rate=s["weight_drop"], name=f"weight_drop_{i}")
        layers.append(rec)
        if s["dropout"]:
            layers.append(drop(s["dropout"], name=f"dropout_{i}"))
    if s["tie_weights"]:
        layers.append(TiedDense("embedding", units=vocab, name="logits"))
    else:
        layers.append(Dense(vocab, name="logits"))
    return link_tied_layers(Sequential(layers, name="wordlm"))


def log_softmax(z):
    """``z - log(sum(exp(z)))`` over the last axis, in float64 (stable: the maximum is subtracted first)."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def one_hot_windows(ids, starts, maxlen, vocab, dtype="float32"):
    """(len(starts), maxlen, vocab) one-hot inputs of the windows ``ids[s:s+maxlen]``."""
    idx = np.asarray(starts)[:, None] + np.arange(maxlen)[None, :]
    x = np.zeros((len(starts), maxlen, vocab), dtype=dtype)
    np.put_along_axis(x, np.asarray(ids)[idx][..., None], 1.0, axis=2)
    return x


def sample_next(logits, temperature, top_k, rng):
    """One id drawn from ``softmax(logits / temperature)`` restricted to the ``top_k`` best (see the module
    docstring); ``temperature == 0`` returns the argmax."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if top_k and top_k < len(z):
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def generate_chars(model_path, settings, vocab, seed_ids, length, temperature=1.0, top_k=None, seed=None, pad_id=0):
    """``length`` sampled character ids continuing ``seed_ids`` from the charlm model file ``model_path``
    (trained with ``settings`` on ``vocab`` characters); a window model pads a short seed with ``pad_id``."""
    s, V = settings, vocab
    ids = list(seed_ids)
    rng = np.random.default_rng(seed)
    out = []
    if s["mode"] == "stream":
        model = build_charlm_stream_model(V, s, 1)
        model.load_weights(model_path)
        model.reset_states()
        if not ids:
            ids = [int(rng.integers(V))]
        z = model.predict_on_batch(np.asarray([ids], dtype=np.int32))[0, -1]
        for _ in range(length):
            nxt = sample_next(z, temperature, top_k, rng)
            out.append(nxt)
            z = model.predict_on_batch(np.asarray([[nxt]], dtype=np.int32))[0, -1]
    else:
        model = build_charlm_window_model(V, s)
        model.load_weights(model_path)
        maxlen = s["maxlen"]
        window = ([pad_id] * maxlen + ids)[-maxlen:]
        for _ in range(length):
            p = np.asarray(model.predict_on_batch(one_hot_windows(np.asarray(window), [0], maxlen, V)))[0]
            nxt = sample_next(np.log(np.clip(p, 1e-12, 1.0)), temperature, top_k, rng)
            out.append(nxt)
            window = window[1:] + [nxt]
    return out
