"""Threads on Captum's path (issue 22): ``xai_plugins_captum.canonized`` and Captum's ``LRP`` on one model from two
threads, and one canonizer instance shared by two threads' ``canonized`` blocks.

The overlaps are forced with events (the first thread waits at a chosen point until the second has tried), so
every run exercises them. At each point the second block is refused with the core's clear error before it reads
or changes the model, the first thread's attributions are bitwise those of a run alone, and every model is
restored exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from tests.canonizers.test_captum_canonized import assert_same_full, full_snapshot
from tests.support.batchnorm import randomize_batchnorm
from tests.support.canonizers import _resnet
from xai_plugins.canonizers.graph import GraphCanonizer
from xai_plugins.canonizers.torchvision_models import ResNetCanonizer

pytest.importorskip("captum")
from captum.attr import LRP  # noqa: E402

from xai_plugins_captum import canonized  # noqa: E402
from xai_plugins_captum.canonizers import CANONIZED_RULES, PassRule  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

HELD = "is being canonized by a xai_plugins_captum.canonized() block in another thread"
WAIT = 60


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(_resnet(), seed=seed)


def _image(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _alone(model: nn.Module, x: torch.Tensor, target: int = 1, canonizers: list | None = None) -> torch.Tensor:
    with canonized(model, canonizers):
        return LRP(model).attribute(x, target=target).detach()


class _PausedResNet(ResNetCanonizer):
    """The ResNet canonizer that, once it has changed the model, waits inside ``apply`` for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def canonize(self, model: nn.Module) -> None:
        super().canonize(model)
        self.inside.set()
        assert self.release.wait(WAIT)

    def copy(self) -> _PausedResNet:
        return _PausedResNet()


class _Pause:
    """A forward hook that waits for ``release`` on the ``at``-th forward call of its module (LRP's first call is
    the plain forward, its second the hooked relevance pass)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.inside.set()
            assert self.release.wait(WAIT)


class _First(threading.Thread):
    """Runs ``work`` (a canonized block) in its own thread, keeping its result or exception."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__()
        self.work, self.result, self.error = work, None, None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def finish(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def _refused(model: nn.Module, **kwargs: Any) -> str:
    """Try a ``canonized`` block on ``model`` in this thread; the error message (the block must not run)."""
    with pytest.raises(RuntimeError) as info:
        with canonized(model, **kwargs):
            pytest.fail("a second canonized() block ran while another thread held the model")
    return str(info.value)


def _second_blocks_are_refused(model: nn.Module) -> None:
    """Every way of opening a second block, and a core canonizer's apply, is refused; the model is untouched."""
    state = full_snapshot(model)
    for kwargs in ({}, {"canonizers": []}, {"canonizers": [ResNetCanonizer()]}):
        message = _refused(model, **kwargs)
        assert message.startswith(f"ResNet {HELD}; a model can be canonized by one canonizer at a time"), message
    fresh = ResNetCanonizer()
    with pytest.raises(RuntimeError, match=HELD.replace("(", r"\(").replace(")", r"\)")):
        fresh.apply(model)
    assert not fresh.applied
    assert_same_full(state, full_snapshot(model))


def test_a_block_in_another_thread_is_refused_while_the_first_is_applying() -> None:
    model, x = _model(), _image()
    reference, before = _alone(model, x), full_snapshot(model)
    paused = _PausedResNet()

    def work() -> torch.Tensor:
        with canonized(model, [paused]):
            return LRP(model).attribute(x, target=1).detach()

    first = _First(work)
    first.start()
    assert paused.inside.wait(WAIT)
    _second_blocks_are_refused(model)
    paused.release.set()
    assert torch.equal(first.finish(), reference)
    assert_same_full(before, full_snapshot(model))


@pytest.mark.parametrize("graph", [False, True], ids=["family", "graph"])
def test_a_block_in_another_thread_is_refused_between_and_during_lrp_calls(graph: bool) -> None:
    """The pause is a forward hook on the stage ``layer3``, which fires under the family canonizer and under
    ``GraphCanonizer`` alike (both keep the stage a called module)."""
    model, x = _model(1), _image(2)
    # verify=False: the probe verification's forward passes would count as calls of layer3
    canonizers = [GraphCanonizer(input_shape=(1, 3, 32, 32), verify=False)] if graph else None
    reference, before = _alone(model, x, canonizers=canonizers), full_snapshot(model)
    between, go_on = threading.Event(), threading.Event()
    during = _Pause(at=4)  # the second LRP call's relevance pass
    hook = model.layer3.register_forward_hook(during)

    def work() -> tuple[torch.Tensor, torch.Tensor]:
        with canonized(model, canonizers):
            first_call = LRP(model).attribute(x, target=1).detach()
            between.set()
            assert go_on.wait(WAIT)
            return first_call, LRP(model).attribute(x, target=1).detach()

    try:
        first = _First(work)
        first.start()
        assert between.wait(WAIT)
        _second_blocks_are_refused(model)
        go_on.set()
        assert during.inside.wait(WAIT)
        _second_blocks_are_refused(model)
        during.release.set()
        first_call, second_call = first.finish()
    finally:
        hook.remove()
    assert torch.equal(first_call, reference) and torch.equal(second_call, reference)
    assert during.calls == 4
    assert_same_full(before, full_snapshot(model))
    assert torch.equal(_alone(model, x, canonizers=canonizers), reference)  # free again once the first block ended


def test_one_canonizer_instance_shared_by_two_threads_blocks() -> None:
    model, other, x = _model(2), _model(3), _image(3)
    reference, other_reference = _alone(model, x), _alone(other, x)
    before, other_before = full_snapshot(model), full_snapshot(other)
    paused = _PausedResNet()
    inside, go_on = threading.Event(), threading.Event()

    def work() -> torch.Tensor:
        with canonized(model, [paused]):
            inside.set()
            assert go_on.wait(WAIT)
            return LRP(model).attribute(x, target=1).detach()

    first = _First(work)
    first.start()
    assert paused.inside.wait(WAIT)  # the shared instance is being applied
    assert "is being applied in another thread at the same time" in _refused(other, canonizers=[paused])
    assert_same_full(other_before, full_snapshot(other))
    paused.release.set()
    assert inside.wait(WAIT)  # the shared instance is applied to the first thread's model
    assert "is applied to a model by another thread" in _refused(other, canonizers=[paused])
    assert_same_full(other_before, full_snapshot(other))
    go_on.set()
    assert torch.equal(first.finish(), reference)
    assert_same_full(before, full_snapshot(model))
    paused.release.set()
    with canonized(other, [paused]):  # removed by the first block: usable again, in this thread
        assert torch.equal(LRP(other).attribute(x, target=1).detach(), other_reference)
    assert_same_full(other_before, full_snapshot(other))


def test_threads_started_together_get_the_result_or_the_clear_error() -> None:
    """No forced order: two threads open a block on one model at the same moment, a few times. Each gets the
    attribution of a run alone or the clear error, one always succeeds, and the model is restored."""
    model, x = _model(4), _image(4)
    reference, before = _alone(model, x), full_snapshot(model)
    for _ in range(3):
        barrier = threading.Barrier(2)
        outcomes: list[str] = ["", ""]

        def race(index: int, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                with canonized(model):
                    attribution = LRP(model).attribute(x, target=1).detach()
                outcomes[index] = "exact" if torch.equal(attribution, reference) else "wrong"
            except RuntimeError as exc:
                refused = HELD in str(exc) or "already canonized by" in str(exc)
                outcomes[index] = "refused" if refused else f"unclear: {exc}"

        threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert set(outcomes) <= {"exact", "refused"} and "exact" in outcomes, outcomes
        assert_same_full(before, full_snapshot(model))


def test_the_refusal_comes_before_the_model_is_read() -> None:
    """The refusal comes before ``canonizers_for`` reads the model: a model no canonizer knows is refused with the
    same error, not with the unsupported-model error."""
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    inside, go_on = threading.Event(), threading.Event()

    def work() -> None:
        with canonized(model, canonizers=[], rules={**CANONIZED_RULES, nn.LayerNorm: PassRule}):
            inside.set()
            assert go_on.wait(WAIT)

    first = _First(work)
    first.start()
    assert inside.wait(WAIT)
    assert _refused(model).startswith(f"Sequential {HELD}")
    go_on.set()
    first.finish()
    with pytest.raises(ValueError, match="no canonizer is known"):
        with canonized(model):
            pass
