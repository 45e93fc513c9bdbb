"""Synthetic source/target domains for the demo (``nnunet-rc make-synthetic``): see :mod:`.generate`."""
from nnunet_rc.synthetic.generate import (DOMAINS, TARGET_DOMAINS, SyntheticBenchmark, appearance_rng,
                                          dataset_name, make_case, render, write_benchmark)

__all__ = ["DOMAINS", "TARGET_DOMAINS", "SyntheticBenchmark", "appearance_rng", "dataset_name", "make_case",
           "render", "write_benchmark"]
