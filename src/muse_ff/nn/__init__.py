"""Neural-network building blocks: radial functions, backbones, heads and the MuSE model."""
