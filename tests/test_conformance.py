"""The conformance suite for the plain PaiNN backbone and MuSE(PaiNN) with one and two coarse levels."""


from muse_ff.testing.conformance import SMALL_PAINN, ModelConformance


class TestPaiNN(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": []}


class TestMuSEOneLevel(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [{}]}


class TestMuSETwoLevels(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}, {"ratio": 4}]}
