"""Checks of attributors ``attributor(model, inputs, target, **kwargs) -> Tensor``: output shape and dtype,
Captum's target and input conventions, batch of N equals N singles, determinism under a seed, the model
(and the input) left exactly as they were, also when the model raises, and clear errors on bad targets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.checks import check
from xai_plugins.conformance.common import (
    InjectedFailure,
    assert_restored,
    expect_clear_error,
    failing_forward,
    forward,
    last_leaf,
)
from xai_plugins.conformance.fixtures import Example, call_kwargs, examples_for, seeded, tolerance
from xai_plugins.conformance.results import CheckFailure, CheckSkipped
from xai_plugins.conformance.state import relative_difference, snapshot
from xai_plugins.registry import Component

DEFAULT_TOLERANCE = 1e-4
DETERMINISM_TOLERANCE = 1e-6
SEED = 1234


def example(component: Component) -> tuple[Example, nn.Module, torch.Tensor, int]:
    """The first example model, its input batch and its number of classes."""
    ex = examples_for(component)[0]
    model, x = ex.model(), ex.inputs()
    out = forward(model, x)
    if out.dim() != 2:
        raise CheckSkipped(f"the example model {ex.label} outputs shape {tuple(out.shape)}, not (batch, classes); "
                           "pass example_model= a classifier")
    return ex, model, x, out.shape[1]


def attribute(component: Component, model: nn.Module, inputs: Any, target: Any, seed: int = SEED) -> Any:
    """Call the attributor with the suite's seed and the component's ``example_kwargs``."""
    with seeded(seed):
        return component.load()(model, inputs, target, **call_kwargs(component))


def _as_tensor(result: Any, inputs: torch.Tensor, how: str) -> torch.Tensor:
    if not isinstance(result, torch.Tensor):
        raise CheckFailure(f"{how} returned {type(result).__name__}, not a torch.Tensor")
    if result.shape != inputs.shape:
        raise CheckFailure(f"{how} returned shape {tuple(result.shape)}; it must have the input's shape "
                           f"{tuple(inputs.shape)}")
    return result


def _targets(n: int, classes: int) -> list[int]:
    return [(3 * i + 1) % classes for i in range(n)]


@check("output", "attributor")
def check_output(component: Component) -> str:
    """Returns a finite tensor with the input's shape and dtype."""
    ex, model, x, classes = example(component)
    result = _as_tensor(attribute(component, model, x, 1 % classes), x, "attributor(model, inputs, int)")
    if result.dtype != x.dtype:
        raise CheckFailure(f"returned dtype {result.dtype}; it must be the input's dtype {x.dtype}")
    bad = (~torch.isfinite(result)).sum().item()
    if bad:
        raise CheckFailure(f"{bad} of {result.numel()} attribution values are not finite (NaN or inf)")
    if result.requires_grad:
        raise CheckFailure("the attribution still requires grad; return a detached tensor")
    return f"shape {tuple(result.shape)}, dtype {result.dtype}, finite on {ex.label}"


@check("targets", "attributor")
def check_targets(component: Component) -> tuple[str, float, float]:
    """Accepts Captum's target forms: an int (same class for the batch), a list and a tensor of per-sample
    classes, all giving the same attributions."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    _, model, x, classes = example(component)
    n, t = x.shape[0], 1 % classes
    forms: dict[str, Any] = {"int": t, "list": [t] * n, "tensor": torch.full((n,), t, dtype=torch.long)}
    results = {}
    for name, target in forms.items():
        try:
            results[name] = _as_tensor(attribute(component, model, x, target), x, f"target as {name}")
        except CheckFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - the unsupported form is the finding
            raise CheckFailure(f"target as {name} ({target!r}) is not accepted: {type(exc).__name__}: {exc}") from exc
    per_sample = _targets(n, classes)
    as_list = attribute(component, model, x, per_sample)
    as_tensor = attribute(component, model, x, torch.tensor(per_sample))
    worst = max(relative_difference(results["int"], results["list"]),
                relative_difference(results["int"], results["tensor"]),
                relative_difference(as_list, as_tensor))
    if not worst <= tol:
        raise CheckFailure(f"int, list and tensor targets give different attributions: {worst:.3g} relative "
                           f"(tolerance {tol:g})", worst, tol)
    return f"int, list and tensor targets agree ({worst:.2g} relative)", worst, tol


@check("tuple_inputs", "attributor")
def check_tuple_inputs(component: Component) -> tuple[str, float, float]:
    """Accepts Captum's tuple form ``(inputs,)`` and returns a 1-tuple equal to the tensor result."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    _, model, x, classes = example(component)
    plain = attribute(component, model, x, 1 % classes)
    try:
        result = attribute(component, model, (x,), 1 % classes)
    except Exception as exc:  # noqa: BLE001 - the unsupported form is the finding
        raise CheckFailure(f"inputs as a 1-tuple (Captum's convention) are not accepted: "
                           f"{type(exc).__name__}: {exc}") from exc
    if not (isinstance(result, tuple) and len(result) == 1):
        raise CheckFailure(f"inputs given as a 1-tuple must give a 1-tuple back (Captum's convention), got "
                           f"{type(result).__name__}")
    rel = relative_difference(plain, _as_tensor(result[0], x, "tuple input"))
    if not rel <= tol:
        raise CheckFailure(f"tuple and tensor inputs give different attributions ({rel:.3g} relative)", rel, tol)
    return f"1-tuple in, 1-tuple out, equal to the tensor result ({rel:.2g})", rel, tol


@check("batch_equals_singles", "attributor")
def check_batch_equals_singles(component: Component) -> tuple[str, float, float]:
    """A batch of N with per-sample targets equals N single-sample calls (same seed) within the tolerance."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    _, model, x, classes = example(component)
    targets = _targets(x.shape[0], classes)
    batch = _as_tensor(attribute(component, model, x, targets), x, "the batch call")
    worst, where = 0.0, 0
    for i, t in enumerate(targets):
        single = _as_tensor(attribute(component, model, x[i:i + 1], t), x[i:i + 1], f"single call {i}")
        rel = relative_difference(single, batch[i:i + 1])
        if rel >= worst:
            worst, where = rel, i
    if not worst <= tol:
        raise CheckFailure(f"the batch differs from single-sample calls: sample {where} differs by {worst:.3g} of "
                           f"its max |attribution| (tolerance {tol:g})", worst, tol)
    return f"batch of {len(targets)} equals singles ({worst:.2g} relative)", worst, tol


@check("deterministic", "attributor")
def check_deterministic(component: Component) -> tuple[str, float, float]:
    """Two calls under the same seed give the same attributions."""
    _, model, x, classes = example(component)
    targets = _targets(x.shape[0], classes)
    first = attribute(component, model, x, targets)
    second = attribute(component, model, x, targets)
    rel = relative_difference(first, second)
    if not rel <= DETERMINISM_TOLERANCE:
        raise CheckFailure(f"two calls under the same seed differ by {rel:.3g} relative "
                           f"(tolerance {DETERMINISM_TOLERANCE:g})", rel, DETERMINISM_TOLERANCE)
    return f"same seed, same attributions ({rel:.2g} relative)", rel, DETERMINISM_TOLERANCE


def _prepare_user_model(model: nn.Module, training: bool) -> Any:
    """Give the model what a user's model may have: a frozen parameter, a stored .grad and a user hook."""
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 0.5)
    handle = last_leaf(model).register_forward_hook(lambda m, a, o: None)
    model.train(training)
    return handle


@check("restores_model", "attributor")
def check_restores_model(component: Component) -> str:
    """The model is left exactly as it was (parameters and buffers bitwise, requires_grad, .grad, training
    mode of every module, hooks, attributes), in eval and in training mode, and the input is not modified."""
    _, model, x, classes = example(component)
    for training in (False, True):
        _prepare_user_model(model, training)
        before = snapshot(model)
        x_before = x.clone()
        attribute(component, model, x, _targets(x.shape[0], classes))
        assert_restored(model, before, f"after a call on a model in {'training' if training else 'eval'} mode")
        if not torch.equal(x, x_before) or x.requires_grad:
            raise CheckFailure("the input tensor was modified (values or requires_grad); work on a copy")
    return "model (eval and training mode) and input unchanged"


@check("restores_on_error", "attributor")
def check_restores_on_error(component: Component) -> str:
    """When the model raises inside the call, the error propagates and the model is still restored."""
    _, model, x, classes = example(component)
    _prepare_user_model(model, False)
    with failing_forward(model):
        before = snapshot(model)
        try:
            attribute(component, model, x, _targets(x.shape[0], classes))
        except Exception as exc:  # noqa: BLE001 - any error raised out of the failing forward is fine
            if not isinstance(exc, InjectedFailure) and not _caused_by_injection(exc):
                raise CheckFailure(f"the model's error was replaced by an unrelated {type(exc).__name__}: {exc}"
                                   ) from exc
        else:
            raise CheckFailure("the model's forward raised but the attributor returned normally; let the error "
                               "propagate")
        assert_restored(model, before, "after the model raised during the call")
    return "model restored after its forward raised"


def _caused_by_injection(exc: BaseException) -> bool:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, InjectedFailure) or "injected failure" in str(link):
            return True
        link = link.__cause__ or link.__context__
    return False


@check("clear_errors", "attributor")
def check_clear_errors(component: Component) -> str:
    """A target out of range is rejected with an error that names the target, and the model is untouched."""
    _, model, x, classes = example(component)
    before = snapshot(model)
    message = expect_clear_error(lambda: attribute(component, model, x, classes + 3),
                                 f"target {classes + 3} for a model with {classes} classes", ("target",))
    assert_restored(model, before, "after rejecting a bad target")
    return message


class _WithArguments(nn.Module):
    """``model(x) * factor + offset``: a model that takes two extra forward arguments, a float and a tensor with
    one row per sample (which must follow the rows of whatever batch the attributor evaluates)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, factor: float, offset: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if not isinstance(offset, torch.Tensor) or offset.shape != out.shape:
            raise ValueError(f"the offset argument must have the output's shape {tuple(out.shape)}, got "
                             f"{tuple(getattr(offset, 'shape', ()))}: the extra arguments do not follow the rows")
        return out * factor + offset


def _check_additional_forward_args(component: Component, model: nn.Module, x: torch.Tensor,
                                   targets: list[int]) -> str:
    """With ``takes_additional_forward_args=True``: the attributor passes ``additional_forward_args`` to the model
    row by row, so an extra factor of 1 and a zero offset per sample give the attributions without them."""
    tol = tolerance(component, DEFAULT_TOLERANCE)
    plain = _as_tensor(attribute(component, model, x, targets), x, "attributor(model, inputs, list)")
    offset = torch.zeros_like(forward(model, x))
    try:
        with seeded(SEED):
            given = component.load()(_WithArguments(model), x, targets, additional_forward_args=(1.0, offset),
                                     **call_kwargs(component))
    except Exception as exc:  # noqa: BLE001 - reported as the breach it is
        raise CheckFailure(f"declares takes_additional_forward_args=True, but additional_forward_args=(1.0, a "
                           f"tensor with one row per sample) fails: {type(exc).__name__}: {exc}") from None
    given = _as_tensor(given, x, "attributor(model, inputs, list, additional_forward_args=...)")
    worst = relative_difference(plain, given)
    if not worst <= tol:
        raise CheckFailure(f"declares takes_additional_forward_args=True, but a factor of 1 and a zero offset "
                           f"passed as additional_forward_args change the attributions by {worst:.3g} relative "
                           f"(tolerance {tol:g})", worst, tol)
    return "additional_forward_args follow the rows"


@check("host_metadata", "attributor")
def check_host_metadata(component: Component) -> tuple[str, float, float] | str:
    """Declares what the host bridges read, and holds to it: ``attribution_kind`` is ``"gradient"`` or
    ``"perturbation"``; with ``multiplies_by_inputs=True`` a zero input gets zero attributions; with
    ``takes_additional_forward_args=True`` extra forward arguments reach the model row by row; with
    ``has_convergence_delta=True`` each sample's attributions sum to ``F(x) - F(0)`` of its target."""
    from xai_plugins.errors import HostMetadataError
    from xai_plugins.host_bridge import attributor_metadata

    try:
        meta = attributor_metadata(component, "captum")
    except HostMetadataError as exc:
        raise CheckFailure(str(exc)) from None
    said = [f"attribution_kind={meta.attribution_kind!r}"]
    _, model, x, classes = example(component)
    targets = _targets(x.shape[0], classes)
    if meta.multiplies_by_inputs:
        zero = _as_tensor(attribute(component, model, torch.zeros_like(x), targets), x, "attributor(model, 0, t)")
        if not bool((zero == 0).all()):
            raise CheckFailure("declares multiplies_by_inputs=True, but a zero input gets attributions up to "
                               f"{zero.abs().max().item():.3g}; a method that multiplies by the inputs gives 0 "
                               "there (declare multiplies_by_inputs=False otherwise)")
        said.append("zero input -> zero attributions")
    if meta.takes_additional_forward_args:
        said.append(_check_additional_forward_args(component, model, x, targets))
    if not meta.has_convergence_delta:
        return ", ".join(said)
    tol = tolerance(component, DEFAULT_TOLERANCE)
    result = _as_tensor(attribute(component, model, x, targets), x, "attributor(model, inputs, list)")
    with torch.no_grad():
        index = torch.tensor(targets)[:, None]
        end = forward(model, x).gather(1, index).squeeze(1).double()
        start = forward(model, torch.zeros_like(x)).gather(1, index).squeeze(1).double()
    sums = result.reshape(x.shape[0], -1).double().sum(dim=1)
    # relative to the outputs' size: float32 outputs carry a rounding error of that size, the gap may be tiny
    scale = torch.maximum(end.abs(), start.abs()).clamp_min(1e-12)
    worst = ((sums - (end - start)).abs() / scale).max().item()
    if not worst <= tol:
        raise CheckFailure(f"declares has_convergence_delta=True, but the attributions sum to F(x) - F(0) only "
                           f"within {worst:.3g} relative (tolerance {tol:g}); declare has_convergence_delta=False "
                           "or fix the attributor", worst, tol)
    said.append(f"sums to F(x) - F(0) within {worst:.2g} relative")
    return ", ".join(said), worst, tol
