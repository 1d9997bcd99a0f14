"""What the learners that adapt by gradient steps share: MAML, Reptile, policy-gradient MAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.learners.base import MetaLearner, Params
from attnmeta.learners.inner_loop import inner_sgd
from attnmeta.learners.registry import LearnerOptions
from attnmeta.models.capabilities import has_patch_attention
from attnmeta.settings import setting
from attnmeta.tasks.episode import Episode

__all__ = ["GradientLearner", "GradientOptions", "Strategy"]

Strategy = Literal["loop", "vmap", "compiled"]


@dataclass
class GradientOptions(LearnerOptions):
    """The keys of every learner that adapts by gradient steps (MAML, Reptile)."""

    inner_lr: float = setting(0.4, above=0.0, at_most=1e6)
    inner_steps: int = setting(1, at_least=0, at_most=1000)  # 0: the pretrained baseline
    eval_steps: int = setting(3, at_least=0, at_most=10_000)


class GradientLearner(MetaLearner):
    """Base of the learners that adapt a model to a task by gradient steps on its support
    set, as a pure function of the parameters (``torch.func.functional_call``).

    It holds the model and the inner loop's settings, splits the model's parameters into
    the adapted ones and the rest (ANIL), gives each adapted parameter its step size (fixed,
    or learned: Meta-SGD), and evaluates the one way all of them do: adapt on the support
    set (:meth:`adapt`, first order), predict the query set at the adapted parameters
    (:meth:`forward_with`, :meth:`predict`, :meth:`predict_batch`). Subclasses implement
    ``training_step``: how the meta-parameters learn from the adapted ones.

    Kernels (:mod:`attnmeta.kernels`): :meth:`adapt` is first order on one task, so every
    fast kernel is exact there and it declares nothing; :meth:`predict_batch` with
    ``strategy="vmap"`` declares ``vmap``.

    Args:
        model: maps a task's inputs ``[n, *x_shape]`` to predictions ``[n, *y_shape]``.
        inner_lr: step size of the inner loop (the initial value if learned).
        inner_steps: gradient steps per task at meta-training time (and :meth:`adapt`'s
            default).
        loss_fn: ``loss_fn(predictions, targets) -> scalar``; cross-entropy by default.
        eval_steps: inner steps of :meth:`predict` / :meth:`predict_batch` /
            :meth:`attention_maps` when they are given no ``steps``; default ``inner_steps``.
        learn_inner_lr: Meta-SGD (Li et al., 2017): a learnable step size per parameter
            element, meta-trained with the model.
        adapt_only: ANIL (Raghu et al., ICLR 2020): names (or name prefixes) of the
            parameters to adapt, e.g. ``["head."]``; the others stay at the meta-parameters.
        strategy: how several tasks' inner loops run: ``"loop"`` one task after another,
            ``"vmap"`` all tasks at once with ``torch.vmap``; a subclass may declare more in
            ``strategies`` (MAML: ``"compiled"``). Evaluation runs ``"compiled"`` as ``"loop"``.
    """

    adapts_by_gradient: ClassVar[bool] = True
    needs_head: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        inner_steps: int = 1,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        *,
        eval_steps: int | None = None,
        learn_inner_lr: bool = False,
        adapt_only: Sequence[str] | None = None,
        strategy: Strategy = "loop",
    ) -> None:
        super().__init__()
        if strategy not in self.strategies:
            raise ValueError(f"strategy={strategy!r}: expected one of {list(self.strategies)} "
                             f"for {type(self).__name__}")
        if inner_steps < 0:
            raise ValueError(f"inner_steps={inner_steps}: expected >= 0")
        if eval_steps is not None and eval_steps < 0:
            raise ValueError(f"eval_steps={eval_steps}: expected >= 0")
        self.model = model
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.eval_steps = inner_steps if eval_steps is None else eval_steps
        self.loss_fn = loss_fn
        self.strategy = strategy
        names = [name for name, _ in model.named_parameters()]
        if adapt_only is None:
            self.adapted_names = names
        else:
            self.adapted_names = [n for n in names if any(n.startswith(p) for p in adapt_only)]
            if not self.adapted_names:
                raise ValueError(
                    f"adapt_only={list(adapt_only)} matches none of the model's parameters {names}"
                )
        # ParameterDict keys may not contain '.', so Meta-SGD step sizes use '/' in their keys.
        self.inner_lrs = nn.ParameterDict(
            {
                name.replace(".", "/"): nn.Parameter(torch.full_like(p, inner_lr))
                for name, p in model.named_parameters()
                if name in self.adapted_names
            }
            if learn_inner_lr
            else {}
        )

    # -- the functional pieces -------------------------------------------------------------
    def _split_params(self) -> tuple[Params, dict[str, Tensor]]:
        """(parameters to adapt, everything else the model needs: other params, buffers)."""
        adapted = set(self.adapted_names)
        params = {n: p for n, p in self.model.named_parameters() if n in adapted}
        frozen = {n: p for n, p in self.model.named_parameters() if n not in adapted}
        frozen.update(dict(self.model.named_buffers()))
        return params, frozen

    def _step_sizes(self) -> dict[str, Tensor | float]:
        """Step size of each adapted parameter: a float, or its Meta-SGD tensor."""
        if len(self.inner_lrs):
            return {n: self.inner_lrs[n.replace(".", "/")] for n in self.adapted_names}
        return {n: self.inner_lr for n in self.adapted_names}

    def _descend(self, params: Params, frozen: dict[str, Tensor], support_x: Tensor,
                 support_y: Tensor, steps: int, on_step: Callable[[int], None] | None = None
                 ) -> Params:
        """``steps`` first-order steps on one support set from detached ``params``: SGD
        (Reptile overrides this with Adam)."""
        lrs = {n: lr.detach() if isinstance(lr, Tensor) else lr
               for n, lr in self._step_sizes().items()}
        return inner_sgd(self.model, params, frozen, support_x, support_y, self.loss_fn,
                         lrs, steps, first_order=True, under_vmap=self.strategy == "vmap",
                         on_step=on_step)

    def _task_start(self, params: Params, frozen: dict[str, Tensor], support_x: Tensor,
                    support_y: Tensor) -> Params:
        """The adapted parameters a task's inner loop starts from (given the support set):
        the meta-parameters themselves here; MAML's Proto-MAML option sets its head."""
        return params

    # -- evaluation ------------------------------------------------------------------------
    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
              on_step: Callable[[int], None] | None = None) -> Params:
        """Parameters adapted to one task's support set by ``steps`` inner steps (default
        ``inner_steps``), detached from the meta-parameters; ``on_step(k)`` after step k.

        Returns the full parameter-and-buffer dict for :meth:`forward_with`.
        """
        params, frozen = self._split_params()
        params = {n: p.detach() for n, p in params.items()}
        frozen = {n: t.detach() for n, t in frozen.items()}
        steps = self.inner_steps if steps is None else steps
        with torch.no_grad():
            params = self._task_start(params, frozen, support_x, support_y)
        return {**frozen, **self._descend(params, frozen, support_x, support_y, steps, on_step)}

    def forward_with(self, params: Params, x: Tensor) -> Tensor:
        """The model's output at the given (e.g. adapted) parameters."""
        return functional_call(self.model, params, (x,))

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                steps: int | None = None) -> Tensor:
        """Query predictions ``[Q, ...]`` after ``steps`` inner steps (default
        ``eval_steps``) on the support set ``[S, ...]``."""
        steps = self.eval_steps if steps is None else steps
        with torch.no_grad():
            return self.forward_with(self.adapt(support_x, support_y, steps), query_x)

    def predict_batch(self, batch: Episode, steps: int | None = None) -> Tensor:
        """Query predictions ``[T, Q, ...]`` of every task, each adapted on its own support
        set by ``steps`` (default ``eval_steps``)."""
        steps = self.eval_steps if steps is None else steps
        if self.strategy != "vmap":
            return super().predict_batch(batch, steps=steps)
        per_task = torch.vmap(lambda sx, sy, qx: self.predict(sx, sy, qx, steps=steps))
        with kernels.differentiable(vmap=True):
            return per_task(batch.support_x, batch.support_y, batch.query_x)

    # -- a task fitted once (attnmeta.fewshot): the adapted parameters are what it keeps --
    def fit_task(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
        """The parameters (and buffers) adapted by ``steps`` inner steps (default
        ``eval_steps``, as :meth:`predict`) on the support set ``[S, ...]``."""
        steps = self.eval_steps if steps is None else steps
        report = None if on_step is None else (lambda done: on_step(done, steps))
        return self.adapt(support_x, support_y, steps, report)

    def predict_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.forward_with(dict(task), query_x)

    def explain_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> dict[str, Tensor]:
        if not self.attention_map_names():
            return {}
        with torch.no_grad():
            _, weights = functional_call(self.model, dict(task), (query_x,),
                                         {"need_weights": True})
        return {"patch_attention": self.model.patch_attention(weights)}

    def backbone(self) -> nn.Module:
        return self.model

    def attention_map_names(self) -> tuple[str, ...]:
        """``("patch_attention",)`` over a model whose class declares it
        (:func:`~attnmeta.models.capabilities.has_patch_attention`), else ``()``."""
        return ("patch_attention",) if has_patch_attention(self.model) else ()

    def attention_maps(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                       steps: int | None = None) -> dict[str, Tensor]:
        """``{"patch_attention": [Q, g, g]}`` at the parameters adapted by ``steps`` (default
        ``eval_steps``), for a model that returns attention: ``forward(x, need_weights=True)
        -> (out, weights)`` and ``patch_attention(weights) -> [n, g, g]``, as
        :class:`~attnmeta.models.VisionTransformer` does (its ``[CLS]`` token's attention
        over the image patches in the last block)."""
        if not self.attention_map_names():
            return super().attention_maps(support_x, support_y, query_x, steps)
        # The adapted model is the one that predicts, so its attention is the one to draw.
        adapted = self.adapt(support_x, support_y, self.eval_steps if steps is None else steps)
        with torch.no_grad():
            _, weights = functional_call(self.model, adapted, (query_x,), {"need_weights": True})
        return {"patch_attention": self.model.patch_attention(weights)}
