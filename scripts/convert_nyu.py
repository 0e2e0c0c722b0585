"""Convert NYU Depth v2's labelled set to the NYU layout (images/, depth/, label40/, label13/, train/val.txt).

    uv run scripts/convert_nyu.py --mat data/downloads/nyu_depth_v2_labeled.mat \\
        --splits data/downloads/splits.mat --out data/nyuv2

See :mod:`multitask_vision.datasets.converters.nyu_mat` for the formats and the class maps.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from multitask_vision.datasets.converters.nyu_mat import convert_nyu_mat  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mat", required=True, help="nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    parser.add_argument("--splits", default=None, help="splits.mat (default: beside --mat)")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/nyuv2")
    parser.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    parser.add_argument(
        "--depth-key",
        default="depths",
        choices=("depths", "rawDepths"),
        help="in-painted depths (default) or the raw ones with Kinect holes as 0",
    )
    parser.add_argument(
        "--log-every", type=int, default=100, help="progress every N images (0: summary only)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        convert_nyu_mat(
            args.mat,
            args.out,
            args.splits,
            overwrite=args.overwrite,
            depth_key=args.depth_key,
            log_every=args.log_every,
        )
    except (OSError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
