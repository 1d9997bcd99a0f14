"""The speed harness (``attnmeta bench speed``) and the peer libraries' MAML steps it
times side by side; ``benchmarks/`` holds the scripts and results that use it."""
