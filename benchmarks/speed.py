"""MAML meta-training speed side by side with learn2learn, higher, torchopt and a plain
loop; MFU against the peak measured in the same run; ProtoNets/FEAT episodes per second.

    python benchmarks/speed.py [options of `attnmeta bench speed`]

Peers: ``pip install -e '.[bench]'`` and ``bash benchmarks/install_learn2learn.sh``
(see ``benchmarks/README.md``). Writes ``benchmarks/results/speed.{json,md}``.
"""

import sys

from attnmeta.cli import main

if __name__ == "__main__":
    sys.argv = ["attnmeta", "bench", "speed", *sys.argv[1:]]  # recorded as the CLI command
    main()
