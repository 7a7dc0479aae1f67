"""Glorot, He and LeCun initializers are Keras 3's VarianceScaling presets: the values of the VarianceScaling they
name (LeCun's are that class; Glorot's and He's keep their one-division formulas, equal to the last bit or two
in float64), a seed-only config, and one constructor-like repr for every initializer."""
import numpy as np
import pytest

from rnnlab import initializers

PRESETS = [("GlorotUniform", 1.0, "fan_avg", "uniform"), ("GlorotNormal", 1.0, "fan_avg", "truncated_normal"),
           ("HeNormal", 2.0, "fan_in", "truncated_normal"), ("HeUniform", 2.0, "fan_in", "uniform"),
           ("LecunNormal", 1.0, "fan_in", "truncated_normal"), ("LecunUniform", 1.0, "fan_in", "uniform")]


@pytest.mark.parametrize("name, scale, mode, dist", PRESETS)
def test_preset_is_its_variance_scaling(name, scale, mode, dist):
    cls = getattr(initializers, name)
    init = cls(seed=7)
    ref = initializers.VarianceScaling(scale, mode, dist, seed=7)
    for shape in [(30, 50), (8,), (3, 4, 5), (3, 5, 700)]:
        got, want = init(shape, "float64"), ref(shape, "float64")
        if name.startswith("Lecun"):
            np.testing.assert_array_equal(got, want)
        else:   # sqrt(6 / (fan_in + fan_out)) against Keras's sqrt(3 * (1 / fan_avg)): the same up to rounding
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert isinstance(init, initializers.VarianceScaling) == name.startswith("Lecun")
    assert init.get_config() == {"seed": 7} and repr(init) == f"{name}(seed=7)"
    assert initializers.serialize(init) == {"class_name": name, "config": {"seed": 7}}
    back = initializers.get(initializers.serialize(init))
    assert type(back) is cls and back.seed == 7 and cls.from_config({"seed": 3}).seed == 3


def test_preset_matches_keras_hierarchy_and_limits():
    keras = pytest.importorskip("keras")
    for name, *_ in PRESETS:
        assert issubclass(getattr(keras.initializers, name), keras.initializers.VarianceScaling)
    w = initializers.GlorotUniform(seed=1)((40, 60), "float64")
    assert np.abs(w).max() <= np.sqrt(6.0 / 100) and np.abs(w).max() > 0.9 * np.sqrt(6.0 / 100)


def test_every_initializer_repr_reads_like_its_constructor():
    assert repr(initializers.RandomUniform()) == "RandomUniform(minval=-0.05, maxval=0.05, seed=None)"
    assert repr(initializers.Orthogonal(gain=2.0)) == "Orthogonal(gain=2.0, seed=None)"
    assert repr(initializers.Zeros()) == "Zeros()"
    assert initializers.Constant.from_config({"value": 3.0})((2,)).tolist() == [3.0, 3.0]
