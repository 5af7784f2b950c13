"""The conformance suite for the plain PaiNN backbone and MuSE(PaiNN) with one and two coarse levels."""


from muse_ff.testing.conformance import SMALL_PAINN, ModelConformance


class TestPaiNN(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": []}


class TestMuSEOneLevel(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [{}]}

    def test_hessian_keeps_the_icosahedral_group_of_c60(self, model):
        """C60 (I, 60 rotations: four- and fivefold degenerate modes) in the default suite for one model; every
        other model runs it under ``-m slow``."""
        self.test_hessian_keeps_the_point_group(model, "C60")


class TestMuSETwoLevels(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}, {"ratio": 4}]}


class TestMuSEWithinComponent(ModelConformance):
    """Coarse edges only inside each covalent component (``levels[k].edges``)."""

    config = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4, "edges": "within-component"},
                                                  {"ratio": 4, "edges": "within-component"}]}
