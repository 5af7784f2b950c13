"""Graph.frames() splits a batch in one pass and gives exactly what frame(b) gives."""

import numpy as np
import torch
from ase.build import bulk, molecule

from muse_ff.data.atoms import collate, frame_graph


def test_frames_equal_frame_by_frame():
    si = bulk("Si", "diamond", a=5.43)
    water = molecule("H2O")
    water.cell, water.pbc = np.eye(3) * 8.0, True
    batch = collate([frame_graph(a, 4.0) for a in (molecule("CH3CH2OH"), si, water, molecule("C6H6"))])
    split = batch.frames()
    assert len(split) == batch.num_frames
    for b, sub in enumerate(split):
        ref = batch.frame(b)
        for name in ("positions", "species", "cell", "pbc", "batch", "ptr", "edge_index", "shifts"):
            assert torch.equal(getattr(sub, name), getattr(ref, name)), name


def test_topology_of_a_batch_is_that_of_its_frames():
    from muse_ff import build_model

    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "levels": [{"ratio": 4}]})
    frames = [frame_graph(a, model.cutoff) for a in (molecule("CH3CH2OH"), molecule("C6H6"), molecule("H2O"))]
    together = model.prepare(collate(frames))
    apart = collate([model.prepare(g) for g in frames])
    for name in together.coarse[0]._fields:
        assert torch.equal(getattr(together.coarse[0], name), getattr(apart.coarse[0], name)), name
    assert torch.equal(together.component, apart.component)
