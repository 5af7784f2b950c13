"""Every backbone passes ``torch.jit.script`` (what metatomic / LAMMPS exports need, issue #17) and the scripted
module gives the eager numbers: outputs and gradients w.r.t. the edge vectors (float64, to 1e-12), with and
without input vectors and edge weights (a backbone at level 0 and at a coarse level), also after a
``torch.jit.save`` / ``torch.jit.load`` round trip.

The MACE cases are skipped when mace-torch is not installed.
"""

import importlib.util
import os

import pytest
import torch

from muse_ff.nn.backbones import BACKBONES, BackboneOutput

TOL = 1e-12
IN_FEATURES, CUTOFF = 5, 4.0
_MACE = {"num_channels": 4, "max_L": 1, "max_ell": 2, "correlation": 2, "num_interactions": 2,
         "num_radial_basis": 4, "radial_mlp": [8]}
#: case -> (backbone name, settings, whether it takes input vectors in the cases)
CASES = {
    "painn": ("painn", {"features": 8, "layers": 2, "num_basis": 4}, True),
    "so3krates": ("so3krates", {"features": 8, "heads": 2, "degrees": [1, 2], "layers": 2, "num_basis": 4}, True),
    # no l = 1 degree: no vectors out (and none in); no residual MLPs (nn.Identity in their place)
    "so3krates-no-l1": ("so3krates", {"features": 6, "heads": 3, "degrees": [2, 3], "layers": 1, "num_basis": 4,
                                      "residual_mlp": False}, False),
    "mace": ("mace", _MACE, True),
    # invariant MACE, a first layer without the residual (its sc is None, the second layer's a tensor)
    "mace-invariant": ("mace", {**_MACE, "max_L": 0, "vector_output": False,
                                "interaction_first": "RealAgnosticInteractionBlock"}, False),
}
PARAMS = [(case, nv) for case, (_, _, vec) in CASES.items() for nv in ((0, 3) if vec else (0,))]
_HAS_MACE = importlib.util.find_spec("mace") is not None
_VAR = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _param_id(p):
    return f"{p[0]}-vec{p[1]}"


def _build(name: str, hparams: dict, vector_in: int):
    if name == "mace":
        if not _HAS_MACE:
            pytest.skip("mace-torch is not installed")
        saved = os.environ.get(_VAR)
        try:  # importing mace sets a variable for the whole process: give it back (as tests/nn/test_mace.py)
            from muse_ff.nn.backbones.mace import import_mace
            import_mace()
        finally:
            if saved is None:
                os.environ.pop(_VAR, None)
            else:
                os.environ[_VAR] = saved
    torch.manual_seed(0)
    return BACKBONES[name](IN_FEATURES, CUTOFF, vector_in_features=vector_in, **hparams).to(torch.float64).eval()


_MODULES: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: these graphs are tiny, and on a busy machine more threads only wait on each other
    (several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=PARAMS, ids=_param_id)
def modules(request):
    """(case, vector_in_features, eager module, scripted module), each built and scripted once."""
    key = request.param
    if key not in _MODULES:
        name, hparams, _ = CASES[key[0]]
        eager = _build(name, hparams, key[1])
        _MODULES[key] = (eager, torch.jit.script(eager))
    return (*key, *_MODULES[key])


def _graph(vector_in: int, full: bool):
    """7 nodes in a 3 Å box (some pairs beyond the 4 Å cutoff), every ordered pair an edge, float64.

    ``full``: with edge weights and (for a backbone with a vector input) node vectors, as at a coarse level;
    otherwise neither, as at level 0 (a vector input then starts from zeros).
    """
    g = torch.Generator().manual_seed(1)
    n = 7
    pos = 3.0 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    edge_index = torch.stack([i[keep], j[keep]])
    edge_vectors = pos[edge_index[1]] - pos[edge_index[0]]
    x = torch.randn(n, IN_FEATURES, generator=g, dtype=torch.float64)
    node_vectors = torch.randn(n, 3, vector_in, generator=g, dtype=torch.float64) if vector_in and full else None
    edge_weights = torch.rand(edge_index.shape[1], generator=g, dtype=torch.float64) if full else None
    return x, edge_index, edge_vectors, node_vectors, edge_weights


def _run(module, graph):
    """(scalars, vectors or None, d f / d edge_vectors) with f a scalar function of both outputs."""
    x, edge_index, edge_vectors, node_vectors, edge_weights = graph
    edge_vectors = edge_vectors.clone().requires_grad_(True)
    out = module(x, edge_index, edge_vectors, node_vectors, edge_weights=edge_weights)
    assert out.scalars.shape == (x.shape[0], module.out_features)
    if module.vector_features:
        assert out.vectors is not None and out.vectors.shape == (x.shape[0], 3, module.vector_features)
    else:
        assert out.vectors is None
    f = (out.scalars * torch.linspace(-1.0, 1.0, out.scalars.shape[1], dtype=torch.float64)).sum()
    if out.vectors is not None:
        f = f + out.vectors.pow(2).sum() + out.vectors[:, 0].sum()
    (grad,) = torch.autograd.grad(f, edge_vectors)
    return out.scalars.detach(), None if out.vectors is None else out.vectors.detach(), grad


def _assert_same(got, want):
    """Outputs equal to 1e-12 (in practice bit for bit); gradients to 1e-12 relative or absolute (TorchScript's
    autodiff may sum the same terms in another order)."""
    for a, b, what, rtol in zip(got, want, ("scalars", "vectors", "d/d edge_vectors"), (0.0, 0.0, TOL)):
        if b is None:
            assert a is None, what
        else:
            assert a is not None and a.shape == b.shape, what
            torch.testing.assert_close(a, b, rtol=rtol, atol=TOL, msg=what)


@pytest.mark.parametrize("full", [False, True], ids=["level0", "coarse"])
def test_scripted_equals_eager(modules, full):
    case, vector_in, eager, scripted = modules
    graph = _graph(vector_in, full)
    want = _run(eager, graph)
    assert want[2].abs().max() > 0  # the gradient is not trivially zero
    for _ in range(2):  # the second call runs the graph the profiling executor optimised after the first
        _assert_same(_run(scripted, graph), want)


def test_output_type_and_stray_vectors(modules):
    """Eager and scripted return a BackboneOutput (``.scalars`` / ``.vectors``); node vectors given to a
    backbone built without a vector input are ignored, as in eager mode."""
    case, vector_in, eager, scripted = modules
    x, edge_index, edge_vectors, _, _ = _graph(vector_in, False)
    with torch.no_grad():
        out = eager(x, edge_index, edge_vectors)
        assert isinstance(out, BackboneOutput)
        got = scripted(x, edge_index, edge_vectors)
        assert got.scalars.shape == out.scalars.shape and (got.vectors is None) == (out.vectors is None)
        if vector_in == 0 and CASES[case][2]:
            stray = torch.ones(x.shape[0], 3, 2, dtype=torch.float64)
            torch.testing.assert_close(scripted(x, edge_index, edge_vectors, stray).scalars, out.scalars,
                                       rtol=0.0, atol=TOL)


def test_save_load_round_trip(modules, tmp_path):
    case, vector_in, eager, scripted = modules
    path = tmp_path / "backbone.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    graph = _graph(vector_in, True)
    _assert_same(_run(loaded, graph), _run(eager, graph))
    # every parameter and buffer comes back (a loaded module also lists the non-persistent buffers)
    state = loaded.state_dict()
    for key, value in eager.state_dict().items():
        assert torch.equal(state[key], value), key
