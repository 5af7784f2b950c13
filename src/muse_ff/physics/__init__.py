"""Derivatives of the energy (forces, stress, Hessians) by autograd, in one place."""

from muse_ff.physics.derivatives import (
    energy_and_derivatives,
    hessian,
    hessian_rows,
    hessian_vector_product,
    partial_hessian,
)

__all__ = ["energy_and_derivatives", "hessian", "hessian_rows", "hessian_vector_product", "partial_hessian"]
