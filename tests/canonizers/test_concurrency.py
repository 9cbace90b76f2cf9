"""Threads: one canonizer instance refuses a second concurrent apply; one model refuses a second canonizer."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from tests.support.batchnorm import randomize_batchnorm
from tests.support.canonizers import assert_restored
from xai_plugins.canonizers import canonizers_for
from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import merge_preceding
from xai_plugins.conformance.state import snapshot

tvm = pytest.importorskip("torchvision.models")


def _in_thread(function) -> BaseException | None:
    """Run ``function`` in another thread; the exception it raised, or ``None``."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return raised[0] if raised else None


class _Paused(Canonizer):
    """Merges the first conv/BN pair, then waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def canonize(self, model: nn.Module) -> None:
        merge_preceding(self, (model, "0"), (model, "1"))
        self.inside.set()
        assert self.release.wait(timeout=60)


def _small() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), seed=1)


def test_one_instance_refuses_an_apply_from_a_second_thread_while_applying_and_while_applied() -> None:
    model, other = _small(), _small()
    before, other_before = snapshot(model), snapshot(other)
    canonizer = _Paused()
    applied, finish = threading.Event(), threading.Event()

    def apply_and_stay() -> None:
        canonizer.apply(model)
        applied.set()
        finish.wait(timeout=60)

    first = threading.Thread(target=apply_and_stay)
    first.start()
    assert canonizer.inside.wait(timeout=60)
    for target in (model, other):
        error = _in_thread(lambda target=target: canonizer.apply(target))
        assert isinstance(error, RuntimeError)
        assert "is being applied in another thread at the same time" in str(error) and "copy()" in str(error)
    canonizer.release.set()
    assert applied.wait(timeout=60)
    for target in (model, other):  # applied by the running first thread: the instance still belongs to it
        error = _in_thread(lambda target=target: canonizer.apply(target))
        assert isinstance(error, RuntimeError) and "is applied to a model by another thread" in str(error)
    assert_restored(other_before, other)
    finish.set()
    first.join(timeout=60)
    error = _in_thread(lambda: canonizer.apply(other))  # the first thread has ended: one model per instance
    assert isinstance(error, RuntimeError) and "already applied to another model" in str(error)
    canonizer.remove()
    assert_restored(before, model)
    assert _in_thread(lambda: (canonizer.apply(other), canonizer.remove())) is None  # free again
    assert_restored(other_before, other)


def test_threads_sharing_one_instance_get_an_error_or_a_correct_result() -> None:
    """Many threads applying one shared instance to their own models: each either fails with the clear error
    or canonizes its model exactly, and every model is restored."""
    torch.manual_seed(0)
    models = [randomize_batchnorm(tvm.resnet18(num_classes=3), seed=i) for i in range(4)]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        references = [model(x) for model in models]
    befores = [snapshot(model) for model in models]
    shared = canonizers_for(models[0])[0]
    barrier = threading.Barrier(len(models))
    outcomes: list[str] = [""] * len(models)

    def work(index: int) -> None:
        barrier.wait()
        try:
            shared.apply(models[index])
        except RuntimeError as exc:
            assert "another thread" in str(exc) or "already applied to another model" in str(exc), str(exc)
            outcomes[index] = "refused"
            return
        try:
            with torch.no_grad():
                change = (models[index](x) - references[index]).abs().max() / references[index].abs().max()
            outcomes[index] = "exact" if change <= 1e-5 else f"wrong {change:.1e}"
        finally:
            shared.remove()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(outcomes) <= {"exact", "refused"} and "exact" in outcomes, outcomes
    for before, model in zip(befores, models):
        assert_restored(before, model)


def test_one_model_canonized_twice_at_once_is_refused_with_the_clear_error() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(tvm.resnet18(num_classes=3), seed=0)
    before = snapshot(model)
    first = canonizers_for(model)[0]
    first.apply(model)
    canonized = snapshot(model)
    error = _in_thread(lambda: canonizers_for(model)[0].apply(model))
    assert isinstance(error, RuntimeError) and "already canonized by ResNetCanonizer" in str(error)
    assert_restored(canonized, model)
    first.remove()
    assert_restored(before, model)

    barrier = threading.Barrier(2)
    instances = [canonizers_for(model)[0] for _ in range(2)]
    errors: list[BaseException | None] = [None, None]

    def race(index: int) -> None:
        barrier.wait()
        try:
            instances[index].apply(model)
        except RuntimeError as exc:
            errors[index] = exc

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(error is None for error in errors) == 1  # exactly one wins, the other gets the clear error
    loser = next(error for error in errors if error is not None)
    assert "already canonized by ResNetCanonizer" in str(loser) or "is being canonized by ResNetCanonizer() in " \
        "another thread" in str(loser), str(loser)
    for instance in instances:
        instance.remove()
    assert_restored(before, model)
