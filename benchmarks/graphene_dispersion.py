"""The graphene benchmark with a fourth contestant: MuSE(PaiNN) with the coarse dispersion term on both levels.

Models already trained in OUTPUT_DIR/graphene with the same configuration and data are reused, so after
``muse bench graphene --output-dir OUT`` only the new contestant trains:

    python benchmarks/graphene_dispersion.py --output-dir OUT
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", default="bench_out")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--mode", choices=["quick", "default", "full"], default="default")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import muse_ff.bench.common as common
    from muse_ff.bench import graphene

    common.MODELS = {**common.MODELS, "MuSE(PaiNN)+C6": {"levels": [{"dispersion": True}, {"dispersion": True}]}}
    with common.torch_threads(args.threads):
        graphene.run(Path(args.output_dir) / "graphene", mode=args.mode, data_dir=Path(args.data_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
