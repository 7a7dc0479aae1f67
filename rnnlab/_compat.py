"""Keras names rnnlab does not have, and what to use instead.

Each public module's ``__getattr__`` (called only for a name that does not exist) ends in
:func:`missing`, which raises an ``AttributeError`` naming the rnnlab equivalent when there is one, e.g.
``rnnlab.optimizers.Nadam`` -> "... the rnnlab equivalent: rnnlab.optimizers.Adam (Nesterov momentum is not
implemented)". Keras aliases of existing classes (``MaxPool1D``, ``Convolution1D`` ...) are resolved, not refused.
"""
from __future__ import annotations

_OPTIMIZERS = "rnnlab.optimizers.SGD, RMSprop, Adam or Adagrad"

HINTS = {
    "rnnlab": {
        "Variable": "rnnlab.variables.Variable (what model.weights returns)",
        "KerasTensor": "rnnlab.models.KerasTensor",
        "random": "rnnlab.backend.rng() (seed it with rnnlab.utils.set_random_seed)",
        "applications": None,
        "mixed_precision": "rnnlab.set_floatx('float32' or 'float64'); there is no mixed precision",
        "distribution": None,
        "export": "model.save('model.keras') or model.save('model.npz')",
        "config": "rnnlab.backend (floatx, set_floatx, epsilon)",
    },
    "rnnlab.layers": {
        "CuDNNLSTM": "rnnlab.layers.LSTM (a CPU library: use_cudnn is accepted and has no effect)",
        "CuDNNGRU": "rnnlab.layers.GRU (a CPU library: use_cudnn is accepted and has no effect)",
        "Lambda": "a Layer subclass with forward() and backward() (rnnlab has no automatic differentiation)",
        "MultiHeadAttention": "rnnlab.layers.Attention or AdditiveAttention (single head)",
        "StringLookup": "rnnlab.layers.TextVectorization or rnnlab.preprocessing.text.Tokenizer",
        "IntegerLookup": "rnnlab.layers.TextVectorization or rnnlab.preprocessing.text.Tokenizer",
        "CategoryEncoding": "rnnlab.utils.to_categorical",
        "Normalization": "rnnlab.layers.LayerNormalization or BatchNormalization",
        "GaussianNoise": "rnnlab.layers.Dropout",
        "GaussianDropout": "rnnlab.layers.Dropout",
        "AlphaDropout": "rnnlab.layers.Dropout",
        "SpatialDropout2D": "rnnlab.layers.SpatialDropout1D",
        "Conv2D": "rnnlab.layers.Conv1D (sequences only)",
        "Convolution2D": "rnnlab.layers.Conv1D (sequences only)",
        "ConvLSTM1D": "rnnlab.layers.Conv1D followed by rnnlab.layers.LSTM",
        "ConvLSTM2D": None,
        "Merge": "rnnlab.layers.Add, Concatenate, Multiply, Average, Maximum, Minimum, Subtract or Dot",
        "merge": "rnnlab.layers.add, concatenate, multiply, average, maximum, minimum, subtract or dot",
        "LeakyReLU": "rnnlab.layers.Activation",
        "ReLU": "rnnlab.layers.Activation('relu')",
        "Softmax": "rnnlab.layers.Activation('softmax')",
        "Cropping1D": "rnnlab.layers.Reshape / slicing the input array",
        "ZeroPadding1D": "rnnlab.preprocessing.sequence.pad_sequences",
        "UpSampling1D": "rnnlab.layers.RepeatVector",
    },
    "rnnlab.optimizers": {
        "Adadelta": _OPTIMIZERS,
        "Adamax": "rnnlab.optimizers.Adam",
        "Nadam": "rnnlab.optimizers.Adam (Nesterov momentum is not implemented)",
        "AdamW": "rnnlab.optimizers.Adam (decoupled weight decay is not implemented)",
        "Ftrl": _OPTIMIZERS,
        "Lion": _OPTIMIZERS,
        "Adafactor": _OPTIMIZERS,
        "LossScaleOptimizer": "the optimizer itself (rnnlab has no mixed precision)",
        "legacy": "rnnlab.optimizers itself (its optimizers accept Keras 2's lr= and decay=)",
        "Optimizer": "rnnlab.optimizers.Optimizer",
    },
    "rnnlab.callbacks": {
        "TensorBoard": "rnnlab.callbacks.CSVLogger (or the History fit returns)",
        "ProgbarLogger": "fit(verbose=1)",
        "BackupAndRestore": "rnnlab.callbacks.ModelCheckpoint and rnnlab.saving.load_model",
        "RemoteMonitor": "rnnlab.callbacks.LambdaCallback",
        "SwapEMAWeights": None,
        "BaseLogger": "rnnlab.callbacks.History",
    },
    "rnnlab.utils": {
        "np_utils": "rnnlab.utils (to_categorical, normalize)",
        "data_utils": "rnnlab.utils.get_file",
        "model_to_dot": "rnnlab.utils.plot_model (draws a PNG)",
        "Sequence": "NumPy arrays given to fit",
        "PyDataset": "NumPy arrays given to fit",
        "timeseries_dataset_from_array": "rnnlab.datasets.timeseries",
        "text_dataset_from_directory": "rnnlab.datasets.load_imdb_folder / rnnlab.datasets.read_imdb_folder",
        "Progbar": "rnnlab.training.ProgressBar",
        "serialize_keras_object": "layer.get_config() / model.to_json()",
        "get_custom_objects": "rnnlab.layers.register (a class decorator)",
        "register_keras_serializable": "rnnlab.layers.register (a class decorator)",
    },
    "rnnlab.saving": {
        "register_keras_serializable": "rnnlab.layers.register (a class decorator)",
        "get_custom_objects": "rnnlab.layers.register (a class decorator)",
    },
    "rnnlab.ops": {
        "gelu": "rnnlab.ops.relu / sigmoid / tanh / softplus (NumPy-backed ops for arrays)",
        "silu": "rnnlab.ops.sigmoid(x) * x",
        "conv": "rnnlab.layers.Conv1D",
        "scan": "a Python loop over the time axis",
        "fori_loop": "a Python for loop",
        "while_loop": "a Python while loop",
        "stop_gradient": "the array itself (ops carry no gradient)",
    },
}


def missing(module: str, name: str) -> AttributeError:
    """The ``AttributeError`` for ``module.name`` that does not exist, naming the equivalent when known."""
    msg = f"module '{module}' has no attribute '{name}'"
    hints = HINTS.get(module, {})
    if name in hints:
        hint = hints[name]
        msg += f": the rnnlab equivalent is {hint}" if hint else ": rnnlab has no equivalent"
    return AttributeError(msg)
