"""EchoStateNetwork: reservoir construction, update rule, closed-form readout, prediction, files, bad input."""
import numpy as np
import pytest

from rnnlab.datasets.timeseries import mackey_glass, sum_of_sines
from rnnlab.forecast_metrics import nrmse
from rnnlab.models import EchoStateNetwork


def test_reservoir_spectral_radius_density_and_seed():
    esn = EchoStateNetwork(200, spectral_radius=0.7, density=0.05, input_scaling=0.3, seed=3).build(2)
    assert np.isclose(np.max(np.abs(np.linalg.eigvals(esn.W))), 0.7, rtol=1e-10)
    frac = np.count_nonzero(esn.W) / esn.W.size
    assert 0.04 < frac < 0.06
    assert esn.W_in.shape == (200, 3) and np.abs(esn.W_in).max() <= 0.3
    again = EchoStateNetwork(200, spectral_radius=0.7, density=0.05, input_scaling=0.3, seed=3).build(2)
    np.testing.assert_array_equal(esn.W, again.W)
    other = EchoStateNetwork(200, spectral_radius=0.7, density=0.05, input_scaling=0.3, seed=4).build(2)
    assert not np.allclose(esn.W, other.W)


def test_state_update_matches_the_equation_by_hand():
    rng = np.random.default_rng(0)
    esn = EchoStateNetwork(7, spectral_radius=0.9, leak_rate=0.3, density=0.5, seed=1).build(2)
    X = rng.standard_normal((3, 5, 2))
    S = esn.run(X)
    for b in range(3):
        x = np.zeros(7)
        for t in range(5):
            xt = np.tanh(esn.W_in @ np.r_[1.0, X[b, t]] + esn.W @ x)
            x = 0.7 * x + 0.3 * xt
            np.testing.assert_allclose(S[b, t], x, rtol=1e-12, atol=1e-14)
    # continuing from the carried state equals one long run
    long = esn.run(X[:, :5])
    esn.run(X[:, :2])
    tail = esn.run(X[:, 2:], reset=False)
    np.testing.assert_allclose(tail, long[:, 2:], rtol=1e-12)


def test_readout_is_the_ridge_solution():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((2, 60, 1)), rng.standard_normal((2, 60, 2))
    esn = EchoStateNetwork(20, ridge=0.5, washout=10, seed=0).fit(X, Y)
    S = esn.run(X)
    F = np.concatenate([np.ones((2, 60, 1)), X, S], -1)[:, 10:].reshape(-1, 22)
    T = Y[:, 10:].reshape(-1, 2)
    # ridge with an unpenalised intercept as an augmented least-squares problem: [F; sqrt(r) P] w = [T; 0],
    # P = identity without its first row's 1 (the constant column is not penalised)
    P = np.eye(22)
    P[0, 0] = 0.0
    A = np.vstack([F, np.sqrt(0.5) * P])
    B = np.vstack([T, np.zeros((22, 2))])
    w = np.linalg.lstsq(A, B, rcond=None)[0]
    np.testing.assert_allclose(esn.W_out, w.T, rtol=1e-8, atol=1e-10)
    pred = esn.predict(X)[:, 10:].reshape(-1, 2)
    np.testing.assert_allclose(pred, F @ w, rtol=1e-8, atol=1e-10)


def test_mackey_glass_one_step_and_closed_loop():
    x = mackey_glass(1400, discard=300)
    x = (x - x.mean()) / x.std()
    esn = EchoStateNetwork(150, spectral_radius=1.25, leak_rate=0.3, input_scaling=0.5, density=0.1,
                           ridge=1e-7, washout=100, seed=1)
    esn.fit(x[:999], x[1:1000])
    one = esn.predict(x[900:-1])[100:]  # predictions of x[1001:]
    assert nrmse(x[1001:], one) < 0.01
    gen = esn.generate(84, warmup=x[800:1000])  # closed loop from x[1000] on
    assert gen.shape == (84, 1)
    assert nrmse(x[1000:1084], gen[:, 0]) < 0.1
    # predicting the mean would score 1; an untrained-looking flat line scores badly
    assert nrmse(x[1000:1084], np.zeros(84)) > 0.5


def test_generate_continues_after_predict_and_batches():
    x = sum_of_sines(600, periods=[25], noise=0.0)
    esn = EchoStateNetwork(60, spectral_radius=0.9, leak_rate=1.0, washout=50, ridge=1e-8, seed=2)
    esn.fit(x[:399], x[1:400])
    esn.predict(x[300:400])
    cont = esn.generate(30)
    np.testing.assert_allclose(cont, esn.generate(30, warmup=x[300:400]), rtol=1e-9, atol=1e-12)
    assert nrmse(x[400:430], cont[:, 0]) < 0.05
    batch = esn.generate(10, warmup=np.stack([x[300:400], x[310:410]])[..., None])
    assert batch.shape == (2, 10, 1)
    np.testing.assert_allclose(batch[0], esn.generate(10, warmup=x[300:400]), rtol=1e-9, atol=1e-12)


def test_save_load_roundtrip_without_pickle(tmp_path):
    x = sum_of_sines(300, seed=1)
    esn = EchoStateNetwork(30, washout=20, seed=5).fit(x[:-1], x[1:])
    p = esn.save(tmp_path / "esn.npz")
    with np.load(p, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
    back = EchoStateNetwork.load(p)
    assert back.get_config() == esn.get_config()
    np.testing.assert_array_equal(back.predict(x[:50]), esn.predict(x[:50]))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not an rnnlab echo state network"):
        EchoStateNetwork.load(tmp_path / "other.npz")


@pytest.mark.parametrize("kw, match", [
    ({"units": 0}, "units must be a positive int"),
    ({"spectral_radius": 0}, "spectral_radius must be a number in"),
    ({"leak_rate": 1.5}, "leak_rate must be a number in"),
    ({"density": 0.0}, "density"),
    ({"ridge": -1}, "ridge"),
    ({"washout": -2}, "washout must be an int >= 0"),
])
def test_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        EchoStateNetwork(**kw)


def test_bad_inputs():
    esn = EchoStateNetwork(10, washout=5, seed=0)
    with pytest.raises(RuntimeError, match="fit"):
        esn.predict(np.zeros(10))
    with pytest.raises(ValueError, match=r"same \(batch, time\)"):
        esn.fit(np.zeros(20), np.zeros(19))
    with pytest.raises(ValueError, match="nothing after the washout"):
        esn.fit(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        esn.fit(np.r_[np.zeros(10), np.nan], np.zeros(11))
    with pytest.raises(TypeError, match="numeric"):
        esn.fit(np.array(["a"] * 10), np.zeros(10))
    esn.fit(np.zeros((20, 2)), np.zeros((20, 1)))
    with pytest.raises(ValueError, match="2 features"):
        esn.predict(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="output size = input size"):
        esn.generate(3, warmup=np.zeros((5, 2)))


def test_forecast_from_many_starts_equals_generate_with_the_whole_past():
    x = mackey_glass(500, discard=200)
    esn = EchoStateNetwork(50, leak_rate=0.5, washout=50, seed=0).fit(x[:299], x[1:300])
    f = esn.forecast(x, [300, 350, 420], 7)
    assert f.shape == (3, 7)
    for row, t in zip(f, (300, 350, 420)):
        np.testing.assert_allclose(row, esn.generate(7, warmup=x[:t])[:, 0], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r"starts must lie in \[1, 500\]"):
        esn.forecast(x, [0], 3)


def test_same_reservoir_as_reservoirpy_gives_same_states_and_readout():
    """Anchor: with our W, W_in and bias given to reservoirpy, states and readout agree (optional dependency)."""
    rpy = pytest.importorskip("reservoirpy.nodes", reason="reservoirpy is an optional benchmark dependency")
    x = mackey_glass(400, discard=100)
    # a well-conditioned ridge (1e-2) so that the two solvers' different rounding stays far below the tolerance
    esn = EchoStateNetwork(40, spectral_radius=1.1, leak_rate=0.3, density=0.2, ridge=1e-2, washout=20, seed=0,
                           readout_input=False).build(1)
    res = rpy.Reservoir(40, lr=0.3, W=esn.W.copy(), Win=esn.W_in[:, 1:].copy(), bias=esn.W_in[:, 0].copy())
    ours = esn.run(x[:-1, None])[0]
    theirs = res.run(x[:-1, None])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    esn.fit(x[:-1], x[1:])
    ro = rpy.Ridge(ridge=1e-2)
    ro.fit(theirs[20:], x[21:, None])
    np.testing.assert_allclose(esn.W_out[0, 1:], ro.Wout[:, 0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(esn.W_out[0, 0], ro.bias[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(esn.predict(x[:-1]), ro.run(theirs)[:, 0], rtol=1e-8, atol=1e-10)


def test_sparse_and_dense_paths_agree():
    x = mackey_glass(300, discard=100)
    esn = EchoStateNetwork(60, density=0.1, leak_rate=0.4, seed=0).build(1)
    esn.use_sparse = False
    dense = esn.run(x[:, None])
    esn.use_sparse = True
    pytest.importorskip("scipy.sparse")
    assert esn._sparse_W() is not None
    np.testing.assert_allclose(esn.run(x[:, None]), dense, rtol=1e-12, atol=1e-14)
    cont = esn.run(x[:50, None]) is not None and esn.run(x[50:, None], reset=False)
    np.testing.assert_allclose(cont[0], dense[0, 50:], rtol=1e-12, atol=1e-14)
