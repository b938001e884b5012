#!/usr/bin/env python
"""Per-layer, per-pass profile of a training step, fastcnn against the same layers in PyTorch.

Prints the table of :func:`fastcnn.bench.profile.profile_step` (method: that module's
docstring) and, with ``--json FILE``, writes the document. Examples::

    python benchmarks/profile_step.py --model resnet20 --batch 128 --threads 1,2 --target 1.5
    python benchmarks/profile_step.py --model seeds_cnn --batch 64 --target 2.0
    fastcnn bench --profile resnet20 --batch 128     # the same from the CLI
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fastcnn.bench.profile_cli import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, profile, print; returns the exit status."""
    return _main(argv, prog="profile_step.py")


if __name__ == "__main__":
    sys.exit(main())
