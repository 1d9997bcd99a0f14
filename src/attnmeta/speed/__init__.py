"""The speed harness (``attnmeta bench speed``) and the peer libraries' MAML steps it
times side by side; ``benchmarks/`` holds the scripts and results that use it.

Why it is part of the installed package and not of ``benchmarks/``: it backs a CLI verb,
``attnmeta bench speed``, which a person runs on their own machine to see how attnmeta's
MAML step compares there (a speed table is only true of the machine it was measured on,
:mod:`attnmeta.machine`), and ``benchmarks/`` is not installed, so a pip-installed
``attnmeta`` could not import it from there. It is also the timing code the tests check
(``tests/speed``: FLOP counts, peak measurement, the convolution bound) and that
``benchmarks/paths.py`` and ``benchmarks/maml_strategies.py`` import, so one copy serves
all three. It costs nothing to those who never benchmark: nothing in ``attnmeta`` imports it
but the ``bench speed`` command, when run, and the peer libraries (higher, torchopt,
learn2learn) are imported only when their step is built (the ``bench`` extra installs
them). What stays in ``benchmarks/`` is what is not a product: one-off scripts and the
results they wrote.
"""
