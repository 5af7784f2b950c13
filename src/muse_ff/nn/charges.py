"""Total charge and spin as model inputs: charge groups, and an embedding every level can read.

**Charge groups** (:func:`charge_groups`). The charge a frame carries must be placed on its covalent
components: a neutral frame of two molecules has two neutral molecules (no charge may move between them
however far apart they are), an ion keeps its charge. Each component's total charge comes from, in order:

1. the per-atom formal charges (ASE ``initial_charges``, ``Graph.atom_charge``) summed over the component,
   when any atom of the frame has one;
2. the frame's total charge (``info['charge']``), when the frame is neutral (every component neutral) or
   has a single component;
3. otherwise (a charged frame of several molecules that does not say which one is charged) the frame's
   components form **one group together** whose total is the frame's charge: the learned charges then
   decide where it goes, as in SO3LR's one-charge-per-frame convention. This is ambiguous input; a
   :class:`ChargeAmbiguityWarning` says so once per frame batch. Set ``initial_charges`` to avoid it.

**Embedding** (:class:`ChargeSpinEmbedding`). The group charge ``Q_g`` and the frame's unpaired electrons
``S_b`` are shared out over atoms with learned per-element weights (a softmax within the group or frame,
``a_i = exp(w_Zi) / sum_j exp(w_Zj)``, as in SpookyNet: O. T. Unke et al., Nat. Commun. 12, 7273 (2021)),
and ``W [a_i Q_g, a'_i S_b]`` (no bias) is added to each atom's species embedding. A neutral closed-shell
structure gets exactly the embedding it has without the option. Coarse levels see the charge through the
atom features they pool; the physical long-range term (:mod:`muse_ff.nn.physical`) conserves ``Q_g`` per
group exactly.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from muse_ff.nn.pooling import _normalise  # softmax within groups


class ChargeAmbiguityWarning(UserWarning):
    """A charged frame of several covalent components without per-atom formal charges."""


def charge_groups(component: torch.Tensor, ptr: torch.Tensor, charge: torch.Tensor | None,
                  atom_charge: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(charge_group [N] int64, group_charge [G] float64)`` of a batch (rules in the module docstring).

    Args:
        component: [N] covalent component of each atom, global over the batch (each frame's a contiguous
            range, as :func:`~muse_ff.data.atoms.collate` numbers them).
        ptr: [B + 1] frame offsets.
        charge: [B] total charge of each frame (``None``: all neutral).
        atom_charge: [N] formal charges (``None``: none given).
    """
    comp = component.detach().cpu().numpy().astype(np.int64)
    bounds = ptr.detach().cpu().numpy().astype(np.int64)
    total = np.zeros(len(bounds) - 1) if charge is None else charge.detach().cpu().double().numpy()
    formal = None if atom_charge is None else atom_charge.detach().cpu().double().numpy()
    group = np.empty_like(comp)
    values, ambiguous = [], []
    for b in range(len(bounds) - 1):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if hi == lo:
            continue
        _, local = np.unique(comp[lo:hi], return_inverse=True)
        count = int(local.max()) + 1
        base = len(values)
        if formal is not None and np.any(formal[lo:hi] != 0):
            group[lo:hi] = base + local
            values.extend(np.bincount(local, weights=formal[lo:hi], minlength=count).tolist())
        elif total[b] == 0 or count == 1:
            group[lo:hi] = base + local
            values.extend([float(total[b])] if count == 1 else [0.0] * count)
        else:
            group[lo:hi] = base
            values.append(float(total[b]))
            ambiguous.append(b)
    if ambiguous:
        warnings.warn(
            f"{len(ambiguous)} charged frame(s) of several covalent components (first: frame {ambiguous[0]}, "
            f"charge {total[ambiguous[0]]:g} e) do not say which component carries the charge: their components "
            f"share it as one group. Set per-atom formal charges (atoms.set_initial_charges) to fix it per "
            f"molecule", ChargeAmbiguityWarning, stacklevel=3)
    device = component.device
    return (torch.as_tensor(group, dtype=torch.int64, device=device),
            torch.tensor(values, dtype=torch.float64, device=device))


class ChargeSpinEmbedding(nn.Module):
    """``[N, features]`` contribution of group charges and frame spins to the atoms' embeddings.

    Args:
        species: number of elements of the model.
        features: width of the species embedding it is added to.
    """

    def __init__(self, species: int, features: int):
        super().__init__()
        self.charge_logit = nn.Parameter(torch.zeros(species))
        self.spin_logit = nn.Parameter(torch.zeros(species))
        self.linear = nn.Linear(2, features, bias=False)

    def forward(self, species_index: torch.Tensor, charge_group: torch.Tensor, group_charge: torch.Tensor,
                batch: torch.Tensor, spin: torch.Tensor | None) -> torch.Tensor:
        dtype = self.linear.weight.dtype
        a = _normalise(self.charge_logit[species_index], charge_group, int(group_charge.numel()))
        q = a * group_charge.to(dtype)[charge_group]
        if spin is None:
            s = torch.zeros_like(q)
        else:
            s = _normalise(self.spin_logit[species_index], batch, int(spin.numel())) * spin.to(dtype)[batch]
        return self.linear(torch.stack([q, s], dim=-1))
