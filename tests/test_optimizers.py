"""Optimizers: Keras 3 and PyTorch parity over several steps (float64), clipping, sparse gradients, state."""
import numpy as np
import pytest
import torch

from rnnlab import optimizers
from rnnlab.backend import RowSparseGrad
from rnnlab.optimizers import SGD, Adagrad, Adam, RMSprop, global_norm
from rnnlab.testing import rel_error

TOL = 1e-6
STEPS = 5


class Holder:
    """Minimal stand-in for a layer: params/grads dicts."""

    def __init__(self, **params):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def refs(self, prefix="layer"):
        return [(f"{prefix}/{k}", self, k) for k in self.params]


def _problem(seed=3):
    g = np.random.default_rng(seed)
    w0 = {"kernel": g.standard_normal((4, 3)), "bias": g.standard_normal(3)}
    # varied magnitudes so that clipping is active on some steps and not others
    grads = [{k: g.standard_normal(v.shape) * (3.0 if s % 2 else 0.2) for k, v in w0.items()} for s in range(STEPS)]
    return w0, grads


def _run_ours(opt, w0, grads):
    h = Holder(**w0)
    for step in grads:
        for k, v in step.items():
            h.grads[k][...] = v
        opt.apply(h.refs())
    return h.params


def _run_keras(kopt, w0, grads):
    import keras
    vs = {k: keras.Variable(v.copy(), dtype="float64") for k, v in w0.items()}
    for step in grads:
        kopt.apply_gradients([(torch.tensor(step[k]), vs[k]) for k in w0])
    return {k: v.numpy() for k, v in vs.items()}


def _assert_same_updates(ours, ref, w0):
    for k in w0:
        err = rel_error(ours[k] - w0[k], ref[k] - w0[k])
        assert err < TOL, f"{k}: relative error of the total update {err:.2e}"


# learning rates exactly representable in float32: Keras stores the learning rate as a float32 variable
KERAS_CASES = [
    ("SGD", dict(learning_rate=0.0625)),
    ("SGD", dict(learning_rate=0.0625, momentum=0.9)),
    ("SGD", dict(learning_rate=0.0625, momentum=0.75, nesterov=True)),
    ("SGD", dict(learning_rate=0.0625, momentum=0.9, clipnorm=1.0)),
    ("RMSprop", dict(learning_rate=0.0078125)),
    ("RMSprop", dict(learning_rate=0.0078125, centered=True)),
    ("RMSprop", dict(learning_rate=0.0078125, momentum=0.5, centered=True, global_clipnorm=2.0)),
    ("RMSprop", dict(learning_rate=0.0078125, rho=0.8, momentum=0.9, epsilon=1e-3, clipvalue=0.5)),
    ("Adam", dict(learning_rate=0.0078125)),
    ("Adam", dict(learning_rate=0.0078125, amsgrad=True)),
    ("Adam", dict(learning_rate=0.0078125, beta_1=0.8, beta_2=0.95, epsilon=1e-4, clipnorm=0.7)),
    ("Adam", dict(learning_rate=0.0078125, global_clipnorm=1.5)),
    ("Adam", dict(learning_rate=0.0078125, clipvalue=0.3, amsgrad=True)),
    ("Adagrad", dict(learning_rate=0.0625)),
    ("Adagrad", dict(learning_rate=0.0625, initial_accumulator_value=0.5, epsilon=1e-3, global_clipnorm=1.0)),
]


@pytest.mark.parametrize("cls,kw", KERAS_CASES, ids=[f"{c}-{'-'.join(k)}" for c, k in KERAS_CASES])
def test_matches_keras_over_several_steps(cls, kw):
    import keras
    w0, grads = _problem()
    ours = _run_ours(getattr(optimizers, cls)(**kw), w0, grads)
    ref = _run_keras(getattr(keras.optimizers, cls)(**kw), w0, grads)
    _assert_same_updates(ours, ref, w0)


def _run_torch(make, w0, grads):
    ps = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in w0.items()}
    opt = make(list(ps.values()))
    for step in grads:
        for k, p in ps.items():
            p.grad = torch.tensor(step[k])
        opt.step()
    return {k: p.detach().numpy() for k, p in ps.items()}


TORCH_CASES = [
    ("sgd", lambda: SGD(0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    ("sgd-momentum", lambda: SGD(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("sgd-nesterov", lambda: SGD(0.05, momentum=0.8, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    # epsilon placement differs (torch: sqrt(.) + eps), so compare with eps = 0
    ("adam", lambda: Adam(0.01, epsilon=0.0), lambda p: torch.optim.Adam(p, lr=0.01, eps=0.0)),
    ("adam-amsgrad", lambda: Adam(0.01, beta_1=0.8, epsilon=0.0, amsgrad=True),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.999), eps=0.0, amsgrad=True)),
    ("rmsprop", lambda: RMSprop(0.01, rho=0.9, epsilon=0.0), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0)),
    ("rmsprop-centered-momentum", lambda: RMSprop(0.01, rho=0.9, momentum=0.5, epsilon=0.0, centered=True),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0, momentum=0.5, centered=True)),
    ("adagrad", lambda: Adagrad(0.1, initial_accumulator_value=0.1, epsilon=0.0),
     lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1, eps=0.0)),
]


@pytest.mark.parametrize("name,ours,theirs", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_over_several_steps(name, ours, theirs):
    w0, grads = _problem(5)
    _assert_same_updates(_run_ours(ours(), w0, grads), _run_torch(theirs, w0, grads), w0)


def test_clipping_matches_torch_clip_utilities():
    w0, grads = _problem(9)
    for ours, clip in ((SGD(0.1, clipnorm=0.5), lambda ps: [torch.nn.utils.clip_grad_norm_([p], 0.5) for p in ps]),
                       (SGD(0.1, global_clipnorm=0.5), lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.5)),
                       (SGD(0.1, clipvalue=0.5), lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.5))):
        ps = [torch.tensor(w0[k].copy(), requires_grad=True) for k in w0]
        topt = torch.optim.SGD(ps, lr=0.1)
        for step in grads:
            for p, k in zip(ps, w0):
                p.grad = torch.tensor(step[k])
            clip(ps)
            topt.step()
        got = _run_ours(ours, w0, grads)
        for p, k in zip(ps, w0):
            # torch's clip_grad_norm_ adds 1e-6 to the norm: agreement to ~1e-6 relative
            assert rel_error(got[k] - w0[k], p.detach().numpy() - w0[k]) < 2e-6


# ------------------------------------------------------------------------ sparse gradients
def _sparse_steps(seed=11, v=12, e=4, steps=4):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        idx = np.sort(g.choice(v, size=5, replace=False))
        out.append(RowSparseGrad(idx, g.standard_normal((5, e)), (v, e)))
    return g.standard_normal((v, e)), out


SPARSE_OPTS = [
    lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9), lambda: SGD(0.1, momentum=0.9, nesterov=True),
    lambda: RMSprop(0.01), lambda: RMSprop(0.01, momentum=0.5, centered=True),
    lambda: Adam(0.01), lambda: Adam(0.01, amsgrad=True), lambda: Adagrad(0.1),
    lambda: Adam(0.01, clipnorm=0.5), lambda: Adam(0.01, clipvalue=0.3), lambda: RMSprop(0.01, global_clipnorm=0.5),
]


@pytest.mark.parametrize("make", SPARSE_OPTS)
def test_sparse_gradient_gives_identical_updates_to_dense(make):
    w0, steps = _sparse_steps()
    hs, hd = Holder(embeddings=w0), Holder(embeddings=w0)
    os_, od = make(), make()
    for sg in steps:
        hs.grads["embeddings"] = sg
        hd.grads["embeddings"] = sg.to_dense()
        os_.apply(hs.refs())
        od.apply(hd.refs())
    assert rel_error(hs.params["embeddings"] - w0, hd.params["embeddings"] - w0) < 1e-12
    np.testing.assert_allclose(hs.params["embeddings"], hd.params["embeddings"], rtol=1e-12, atol=1e-14)


def test_lazy_adam_matches_torch_sparse_adam_and_leaves_other_rows():
    w0, steps = _sparse_steps(seed=4)
    h = Holder(embeddings=w0)
    opt = Adam(0.01, lazy=True)
    p = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.SparseAdam([p], lr=0.01, eps=1e-7)
    for sg in steps[:1] * 3:  # same rows every step: torch's per-parameter step count equals ours
        h.grads["embeddings"] = sg
        opt.apply(h.refs())
        p.grad = torch.sparse_coo_tensor(torch.tensor(sg.indices)[None], torch.tensor(sg.values), sg.shape)
        topt.step()
    assert rel_error(h.params["embeddings"] - w0, p.detach().numpy() - w0) < TOL
    untouched = np.setdiff1d(np.arange(w0.shape[0]), steps[0].indices)
    assert np.array_equal(h.params["embeddings"][untouched], w0[untouched])
    assert not np.any(opt._slots["layer/embeddings"]["momentum"][untouched])


def test_global_norm_handles_sparse_none_and_nonfinite():
    a = np.array([[3.0, 0.0]])
    s = RowSparseGrad(np.array([1]), np.array([[4.0, 0.0]]), (3, 2))
    assert global_norm([a, None, s]) == pytest.approx(5.0)
    assert np.isnan(global_norm([a, np.array([np.nan])]))
    assert np.isinf(global_norm([np.array([np.inf, 1.0])]))


def test_global_clipnorm_with_nan_poisons_weights_like_keras():
    h = Holder(w=np.ones(2))
    h.grads["w"][...] = [np.nan, 1.0]
    SGD(0.1, global_clipnorm=1.0).apply(h.refs())
    assert np.all(np.isnan(h.params["w"]))


# ------------------------------------------------------------------------ state and config
@pytest.mark.parametrize("make", [lambda: Adam(0.01, amsgrad=True), lambda: RMSprop(centered=True, momentum=0.3),
                                  lambda: SGD(0.1, momentum=0.9), lambda: Adagrad()])
def test_state_round_trip_resumes_identically(make):
    w0, grads = _problem(2)
    full = _run_ours(make(), w0, grads)
    opt = make()
    half = _run_ours(opt, w0, grads[:2])
    state = opt.get_state()
    assert int(state["iterations"]) == 2
    resumed = make()
    resumed.set_state({k: v.copy() for k, v in state.items()})
    h = Holder(**half)
    for step in grads[2:]:
        for k, v in step.items():
            h.grads[k][...] = v
        resumed.apply(h.refs())
    for k in w0:
        np.testing.assert_array_equal(h.params[k], full[k])


def test_set_state_rejects_bad_entries_and_shapes():
    opt = Adam()
    with pytest.raises(ValueError, match="iterations"):
        opt.set_state({"layer/kernel/momentum": np.zeros(2)})
    with pytest.raises(ValueError, match="unexpected entry 'layer/kernel/bogus'"):
        opt.set_state({"iterations": 1, "layer/kernel/bogus": np.zeros(2)})
    opt.set_state({"iterations": 1, "layer/w/momentum": np.zeros(3), "layer/w/velocity": np.zeros(3)})
    h = Holder(w=np.ones(2))
    with pytest.raises(ValueError, match=r"slot 'momentum' of 'layer/w' has shape \(3,\).*\(2,\)"):
        opt.apply(h.refs())


def test_learning_rate_settable_and_schedule():
    h = Holder(w=np.zeros(1))
    h.grads["w"][...] = 1.0
    opt = SGD(0.5)
    opt.apply(h.refs())
    opt.learning_rate = 0.25
    opt.apply(h.refs())
    assert h.params["w"][0] == pytest.approx(-0.75)
    assert opt.iterations == 2 and opt.get_config()["learning_rate"] == 0.25
    sched = SGD(lambda it: 1.0 / (it + 1))
    sched.apply(h.refs())
    sched.apply(h.refs())
    assert h.params["w"][0] == pytest.approx(-0.75 - 1.0 - 0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0


def test_config_round_trip_get_and_errors():
    opt = Adam(0.02, beta_1=0.8, amsgrad=True, clipnorm=1.0)
    back = optimizers.get(optimizers.serialize(opt))
    assert back.get_config() == opt.get_config()
    assert isinstance(optimizers.get("rmsprop"), RMSprop) and optimizers.get("Adam").learning_rate == 0.001
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'.*adam"):
        optimizers.get("adamm")
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        SGD(momentum=1.5)
    with pytest.raises(ValueError, match="clipnorm must be a positive number"):
        Adam(clipnorm=-1)
    h = Holder(w=np.ones(3))
    h.grads["w"] = np.ones(4)
    with pytest.raises(ValueError, match=r"gradient of 'layer/w' has shape \(4,\), expected the weight shape \(3,\)"):
        Adam().apply(h.refs())


def test_float32_updates_stay_float32_and_in_place():
    h = Holder(w=np.ones((3, 2)))
    h.params["w"] = h.params["w"].astype(np.float32)
    h.grads["w"] = np.full((3, 2), 0.5, np.float32)
    ref = h.params["w"]
    opt = Adam(0.1)
    opt.apply(h.refs())
    assert h.params["w"] is ref and ref.dtype == np.float32
    assert opt.get_state()["layer/w/momentum"].dtype == np.float32
    assert np.all(ref < 1.0)


# ------------------------------------------------------------ Keras 2 arguments and schedules
from rnnlab.optimizers import schedules  # noqa: E402


@pytest.mark.parametrize("cls", [SGD, RMSprop, Adam, Adagrad])
def test_lr_alias_warns_and_sets_learning_rate(cls):
    with pytest.warns(DeprecationWarning, match="`lr` is deprecated.*learning_rate"):
        opt = cls(lr=0.0123)
    assert opt.learning_rate == pytest.approx(0.0123)
    assert "lr" not in opt.get_config()


def test_unknown_keyword_names_it():
    with pytest.raises(TypeError, match=r"RMSprop: unexpected keyword argument\(s\) \['lrr'\]"):
        RMSprop(lrr=0.1)


def test_epsilon_none_is_keras2_backend_epsilon():
    assert Adam(epsilon=None).epsilon == 1e-7 and RMSprop(epsilon=None).epsilon == 1e-7


def test_decay_is_keras2_time_based_decay_over_steps():
    """Keras 2: lr_t = lr / (1 + decay * iterations), iterations counted before the update."""
    with pytest.warns(DeprecationWarning, match="decay"):
        opt = SGD(lr=0.1, decay=0.5)
    h = Holder(w=np.zeros(3))
    seen = []
    for it in range(4):
        assert opt.learning_rate == pytest.approx(0.1 / (1 + 0.5 * it))
        h.grads["w"][...] = 1.0
        before = h.params["w"].copy()
        opt.apply(h.refs())
        seen.append(before - h.params["w"])
    assert np.allclose([s[0] for s in seen], [0.1 / (1 + 0.5 * i) for i in range(4)])
    with pytest.raises(ValueError, match="decay must be a finite number >= 0"):
        SGD(decay=-1.0)
    with pytest.raises(ValueError, match="cannot be combined"):
        SGD(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.5), decay=0.1)


def _keras_schedules():
    import keras
    ks = keras.optimizers.schedules
    return [
        (schedules.ExponentialDecay(0.1, 7, 0.5), ks.ExponentialDecay(0.1, 7, 0.5)),
        (schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True), ks.ExponentialDecay(0.1, 7, 0.5, staircase=True)),
        (schedules.InverseTimeDecay(0.2, 3, 0.7), ks.InverseTimeDecay(0.2, 3, 0.7)),
        (schedules.InverseTimeDecay(0.2, 3, 0.7, staircase=True), ks.InverseTimeDecay(0.2, 3, 0.7, staircase=True)),
        (schedules.PiecewiseConstantDecay([5, 12], [1.0, 0.5, 0.1]),
         ks.PiecewiseConstantDecay([5, 12], [1.0, 0.5, 0.1])),
        (schedules.CosineDecay(0.1, 20), ks.CosineDecay(0.1, 20)),
        (schedules.CosineDecay(0.1, 20, alpha=0.2), ks.CosineDecay(0.1, 20, alpha=0.2)),
        (schedules.CosineDecay(0.0, 20, warmup_target=0.3, warmup_steps=6),
         ks.CosineDecay(0.0, 20, warmup_target=0.3, warmup_steps=6)),
    ]


def test_schedules_match_keras_values_and_configs():
    for ours, theirs in _keras_schedules():
        for step in [0, 1, 2, 4, 5, 6, 7, 12, 13, 20, 25, 26, 40]:
            want = float(np.asarray(theirs(step)))
            # Keras evaluates schedules in float32 (its floatx) whatever the argument types: float32 rounding
            assert ours(step) == pytest.approx(want, rel=1e-5, abs=1e-9), (type(ours).__name__, step)
        assert ours.get_config() == theirs.get_config()


@pytest.mark.parametrize("sched", [schedules.ExponentialDecay(0.1, 7, 0.5), schedules.InverseTimeDecay(0.1, 1, 1.0),
                                   schedules.PiecewiseConstantDecay([1], [0.1, 0.2]), schedules.CosineDecay(0.1, 5)])
def test_schedule_negative_step_is_a_clear_error(sched):
    with pytest.raises(ValueError, match=r"step must be >= 0.*got -1"):
        sched(-1)
    with pytest.raises(TypeError, match="step must be a number"):
        sched("3")


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="1 less than the length of values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="strictly increasing"):
        schedules.PiecewiseConstantDecay([3, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        schedules.deserialize({"class_name": "Nope", "config": {}})


def test_optimizer_with_schedule_matches_keras_updates(float64):
    """Adam driven by ExponentialDecay: the same weights as Keras over several steps."""
    import keras
    w0, grads = _problem()
    ours = _run_ours(Adam(learning_rate=schedules.ExponentialDecay(0.05, 2, 0.3)), w0, grads)
    kopt = keras.optimizers.Adam(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.3))
    kvars = {k: keras.Variable(v.copy(), dtype="float64") for k, v in w0.items()}
    names = list(w0)
    for step in grads:
        kopt.apply([keras.ops.convert_to_tensor(step[k]) for k in names], [kvars[k] for k in names])
    for k in names:
        assert rel_error(ours[k], keras.ops.convert_to_numpy(kvars[k])) < TOL


def test_schedule_survives_config_state_and_model_file(tmp_path):
    import rnnlab
    from rnnlab.layers import Dense
    sched = schedules.PiecewiseConstantDecay([2], [0.1, 0.01])
    opt = SGD(learning_rate=sched, momentum=0.5)
    cfg = optimizers.serialize(opt)
    assert cfg["config"]["learning_rate"] == {"class_name": "PiecewiseConstantDecay", "config": sched.get_config()}
    again = optimizers.get(cfg)
    assert again._lr_schedule == sched
    model = rnnlab.Sequential([Dense(2, input_shape=(3,))])
    model.compile(optimizer=opt, loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    model.save(tmp_path / "m.npz")
    loaded = rnnlab.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.iterations == 3
    assert isinstance(loaded.optimizer._lr_schedule, schedules.PiecewiseConstantDecay)
    assert loaded.optimizer.learning_rate == pytest.approx(0.01)
    state = model.optimizer.get_state()
    assert state["learning_rate_schedule"].dtype == np.uint8
    fresh = SGD(learning_rate=0.5, momentum=0.5)            # a plain rate: the state brings the schedule back
    fresh.set_state(state)
    assert fresh.iterations == 3 and fresh.learning_rate == pytest.approx(0.01)
    assert fresh._lr_schedule == sched
    bad = dict(state, learning_rate_schedule=np.frombuffer(b"{nope", np.uint8))
    with pytest.raises(ValueError, match="'learning_rate_schedule' is not a saved schedule"):
        SGD(momentum=0.5).set_state(bad)


def test_lr_attribute_is_keras2_alias_of_learning_rate():
    opt = Adam(0.01)
    with pytest.warns(DeprecationWarning, match=r"Adam\.lr is deprecated"):
        assert opt.lr == 0.01
    with pytest.warns(DeprecationWarning):
        opt.lr = 0.5
    assert opt.learning_rate == 0.5
