"""One prediction as a JSON-ready record, the shape both ``attnmeta serve`` answers and
``attnmeta predict --json`` prints one a line::

    {"input": NAME, "label": CLASS or null, "probability": P, "top_k": [[CLASS, P], ...]}

``label`` is null where the query is rejected ("none of these classes": ``reject_below``,
or a text run's out-of-scope threshold); ``probability`` is the top class's either way.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from attnmeta.fewshot.classifier import FewShotClassifier
from attnmeta.fewshot.inputs import InputError

__all__ = ["prediction_records", "checked_top_k", "DEFAULT_TOP_K"]

DEFAULT_TOP_K = 3


def checked_top_k(class_names: Sequence[str], top_k: int | None,
                  name: str = "--top-k") -> int:
    """``top_k``, or min(:data:`DEFAULT_TOP_K`, classes) for None; more classes than were
    fitted (or fewer than 1) is an :class:`InputError` naming both. ``name``: what the
    caller's user calls it: a command-line flag (``--top-k 5: ...``) or an API field
    (``top_k is 5: ...``)."""
    count = len(class_names)
    top_k = min(DEFAULT_TOP_K, count) if top_k is None else top_k
    if not 1 <= top_k <= count:
        given = f"{name} {top_k}" if name.startswith("-") else f"{name} is {top_k}"
        raise InputError(f"{given}: expected 1 to {count}, the number of fitted "
                         f"classes ({', '.join(class_names)})")
    return top_k


def prediction_records(model: FewShotClassifier, logits: Tensor, names: Sequence[str],
                       top_k: int | None = None, reject_below: float | None = None,
                       top_k_name: str = "--top-k") -> list[dict[str, Any]]:
    """A record per row of ``logits [Q, N]`` (over ``model.class_names``), named by
    ``names``: the label (None if rejected), its probability and the ``top_k`` classes
    (default min(:data:`DEFAULT_TOP_K`, N); more than N is an :class:`InputError` naming
    ``top_k_name``: see :func:`checked_top_k`)."""
    top_k = checked_top_k(model.class_names, top_k, top_k_name)
    probabilities = torch.softmax(logits.float(), dim=-1)
    rejected = model.rejected(logits, reject_below)
    records = []
    for name, row, is_rejected in zip(names, probabilities, rejected):
        values, indices = row.topk(top_k)
        best = [[model.class_names[int(i)], round(float(v), 6)] for v, i in zip(values, indices)]
        records.append({"input": str(name), "label": None if is_rejected else best[0][0],
                        "probability": best[0][1], "top_k": best})
    return records
