"""Reusable test suites: :class:`~muse_ff.testing.conformance.ModelConformance`."""
