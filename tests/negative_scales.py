"""Does a quantized file hold negative group scales (grid = q3_k | q6_k with
grid_search: llama.cpp's sub-block scales d * sc of either sign, src/ksearch.h)?
Prints how many of its layers hold some, and whether every scale is finite
and nonzero; exit 1 when none is negative or any is 0 / not finite.
  negative_scales.py FILE.h5"""
import sys

import h5py
import numpy as np


def main(path):
    with h5py.File(path, "r") as f:
        layers = f["layers"]
        names = sorted(layers)
        neg = [n for n in names if (layers[n]["scales"][...] < 0).any()]
        bad = [n for n in names if not np.isfinite(layers[n]["scales"][...]).all() or (layers[n]["scales"][...] == 0).any()]
    name = path.rsplit("/", 1)[-1]
    print("negative_scales %s: %d of %d layers hold negative sub-block scales; zero or non-finite scales: %s"
          % (name, len(neg), len(names), "none" if not bad else ", ".join(bad)))
    return 0 if neg and not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
