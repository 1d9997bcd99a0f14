#!/usr/bin/env bash
# learn2learn 0.2.0 (the newest release) ships only an sdist whose Cython-generated C files
# do not compile on Python 3.11 (they include longintrepr.h). Regenerating them with
# Cython 3 works; --no-deps keeps its requirements (gym, torchvision, ...) out: the speed
# harness imports learn2learn.algorithms with stand-ins for torchvision and gym.
# Usage: bash benchmarks/install_learn2learn.sh [python]   (default: .venv/bin/python)
set -euo pipefail
python=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip install --quiet "cython>=3" requests scipy
"$python" -m pip download --quiet --no-deps --no-binary :all: learn2learn==0.2.0 -d "$work"
tar -xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
for source in "$work"/learn2learn-0.2.0/learn2learn/data/*.pyx; do
    "$python" -m cython -3 "$source" > /dev/null  # (Cython 3.3 has no --quiet)
done
"$python" -m pip install --quiet --no-deps --no-build-isolation "$work"/learn2learn-0.2.0
"$python" -c "from attnmeta.speed.peers import learn2learn_maml; print('learn2learn ready')"
