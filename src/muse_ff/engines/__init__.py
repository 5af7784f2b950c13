"""MD engines running an exported MuSE model (:mod:`muse_ff.export`): :mod:`muse_ff.engines.openmm`.

i-PI needs no code here: its metatomic driver (``i-pi-py_driver -m metatomic``) loads the metatomic export
(tests/engines/test_ipi.py).
"""
