"""Checks and helpers shared by every family: metadata, clear errors, state restored, nothing downloaded."""

from __future__ import annotations

import contextlib
import os
import re
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.checks import check
from xai_plugins.conformance.fixtures import examples_for
from xai_plugins.conformance.results import CheckFailure, CheckSkipped
from xai_plugins.conformance.state import diff_states, snapshot, summarize
from xai_plugins.registry import Component

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_TYPE_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
MAX_SUMMARY = 120


class InjectedFailure(RuntimeError):
    """The error the suite raises inside a component's work to test that it cleans up."""


@check("metadata", "canonizer", "model", "attributor", "initializer", order=0)
def check_metadata(component: Component) -> str:
    """Summary, paper, model types, docstring and the suite's ``extra`` keys are complete and well formed."""
    problems = []
    if "\n" in component.summary or len(component.summary) > MAX_SUMMARY:
        problems.append(f"summary must be one line of at most {MAX_SUMMARY} characters "
                        f"(has {len(component.summary)} characters)")
    if not _YEAR.search(component.paper):
        problems.append(f"paper {component.paper!r} has no year; cite as 'Authors, Title, Venue Year'")
    bad_types = [t for t in component.model_types if not isinstance(t, str) or not _TYPE_NAME.match(t)]
    if bad_types:
        problems.append(f"model_types must be dotted class names like 'torchvision.models.ResNet', got {bad_types}")
    try:
        obj = component.load()
    except Exception as exc:  # noqa: BLE001 - the message is the result
        raise CheckFailure(f"the component does not import: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        problems.append(f"the registered object {obj!r} is not callable (register a class or a factory)")
    if not (getattr(obj, "__doc__", None) or "").strip():
        problems.append("the component has no docstring ('xai-plugins info' shows it to users)")
    problems += _extra_problems(component.extra)
    if component.kind in ("canonizer", "attributor") and not problems:
        try:
            examples_for(component)
        except CheckSkipped as exc:
            problems.append(str(exc))
    if problems:
        raise CheckFailure("; ".join(problems))
    return "summary, paper, model_types, docstring and extra keys complete"


def _extra_problems(extra: dict[str, Any]) -> list[str]:
    problems = []
    shape = extra.get("example_input_shape")
    if shape is not None and not (isinstance(shape, (tuple, list)) and len(shape) >= 2
                                  and all(isinstance(s, int) and s > 0 for s in shape)):
        problems.append(f"example_input_shape must be a tuple of positive ints like (2, 3, 32, 32), got {shape!r}")
    channels = extra.get("input_channels")
    if channels is not None and not (isinstance(channels, int) and channels > 0):
        problems.append(f"input_channels must be a positive int, got {channels!r}")
    for key in ("example_kwargs", "example_model_kwargs"):
        if key in extra and not isinstance(extra[key], dict):
            problems.append(f"{key} must be a dict of keyword arguments, got {type(extra[key]).__name__}")
    tol = extra.get("tolerance")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 <= tol < 1):
        problems.append(f"tolerance must be a number in [0, 1), got {tol!r}")
    spec = extra.get("example_model")
    if spec is not None and not callable(spec) and not (isinstance(spec, str) and ":" in spec):
        problems.append(f"example_model must be 'package.module:factory', 'model:NAME' or a callable, got {spec!r}")
    for key in ("explanation_mode", "fixer"):
        value = extra.get(key)
        if value is not None and not callable(value) and not (isinstance(value, str) and ":" in value):
            problems.append(f"{key} must be 'package.module:attribute' or a callable, got {value!r}")
    return problems


def raised_inside_torch(exc: BaseException) -> str | None:
    """``file:line`` of the raising frame if the error came out of torch's own Python code, else None."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    if os.path.abspath(last.filename).startswith(_TORCH_DIR):
        return f"{os.path.relpath(last.filename, os.path.dirname(_TORCH_DIR.rstrip(os.sep)))}:{last.lineno}"
    return None


def expect_clear_error(call: Callable[[], Any], what: str, keywords: tuple[str, ...]) -> str:
    """Run ``call``, which must reject bad input ``what`` with an error raised by the component itself whose
    message names the problem (contains one of ``keywords``). Returns a description for the result."""
    try:
        call()
    except InjectedFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is what is checked
        inside = raised_inside_torch(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if inside:
            raise CheckFailure(f"{what}: a bare {type(exc).__name__} came from inside torch ({inside}): "
                               f"{message!r}; validate the input and raise an error that names the problem and the "
                               "fix") from exc
        if not any(k.lower() in str(exc).lower() for k in keywords):
            raise CheckFailure(f"{what}: the {type(exc).__name__} message {message!r} does not name the problem "
                               f"(expected it to mention {' or '.join(repr(k) for k in keywords)})") from exc
        return f"{what}: {type(exc).__name__}: {message}"
    raise CheckFailure(f"{what}: no error was raised; the bad input was silently accepted")


def assert_restored(model: nn.Module, before: Any, when: str) -> None:
    """Fail with the differences if ``model`` no longer matches the snapshot ``before``."""
    lines = diff_states(before, snapshot(model))
    if lines:
        raise CheckFailure(f"{when}, the model was not restored: {summarize(lines)}", measured=float(len(lines)))


def last_leaf(model: nn.Module) -> nn.Module:
    """The last registered leaf module (the one that runs last in most models), or the model itself."""
    leaves = [m for m in model.modules() if not list(m.children())]
    return leaves[-1] if leaves else model


@contextlib.contextmanager
def failing_forward(model: nn.Module) -> Iterator[None]:
    """Make the model's forward raise :class:`InjectedFailure` (from a hook on its last leaf module)."""
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        raise InjectedFailure("conformance suite: injected failure inside the model's forward")

    handle = last_leaf(model).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def no_downloads() -> Iterator[list[str]]:
    """Turn any attempt to download (torch.hub, urllib) into an error, and record the URLs tried."""
    tried: list[str] = []

    def refuse(url: Any, *args: Any, **kwargs: Any) -> Any:
        tried.append(str(getattr(url, "full_url", url)))
        raise InjectedFailure(f"conformance suite: downloads are not allowed (tried {tried[-1]})")

    saved = (torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file, urllib.request.urlopen)
    torch.hub.load_state_dict_from_url = refuse
    torch.hub.download_url_to_file = refuse
    urllib.request.urlopen = refuse
    try:
        yield tried
    finally:
        torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file, urllib.request.urlopen = saved


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output on ``x`` without autograd."""
    with torch.no_grad():
        return model(x)
