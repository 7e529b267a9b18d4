"""``python -m lfakit ...``: the ``lfakit`` command, also as a module, which is how ``torchrun``
starts it (``torchrun --nproc-per-node 2 -m lfakit run <experiment>``)."""

import sys

from lfakit.cli import main

if __name__ == "__main__":
    sys.exit(main())
