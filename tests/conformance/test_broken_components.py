"""Deliberately broken components are caught, each with a message that says what broke and by how much."""

from __future__ import annotations

import re

import torch

from tests.conformance import components as C
from xai_plugins.conformance import FAIL, PASS, SKIP, run_checks
from xai_plugins.conformance.fixtures import examples_for


def one(kind: str, obj: object, check: str, name: str = "broken", **extra: object):
    (result,) = run_checks(C.component(kind, name, obj, **extra), only=[check])
    return result


def test_canonizer_that_changes_the_function():
    comp = C.component("canonizer", "broken", C.FunctionChangingCanonizer)
    (result,) = run_checks(comp, only=["function_unchanged"])
    ex = examples_for(comp)[0]
    model, x = ex.model(), ex.inputs()
    with torch.no_grad():
        ref = model(x)
        model.fc.weight.mul_(2)
        changed = model(x)
    expected = ((changed - ref).abs().max() / ref.abs().max()).item()
    assert result.status == FAIL
    assert abs(result.measured - expected) < 1e-5 * expected
    assert result.tolerance == 1e-5
    assert result.message == (f"the canonized model computes another function on ReferenceNet: max |output difference| "
                              f"is {result.measured:.3g} of max |output| (tolerance 1e-05)")


def test_canonizer_whose_remove_leaves_a_hook():
    result = one("canonizer", C.HookLeakingCanonizer, "remove_restores")
    assert result.status == FAIL
    assert result.message == ("after apply and canonizer.remove() on ReferenceNet, the model was not restored: "
                              "hooks on 'fc' changed: forward_hooks 0 -> 1")


def test_canonizer_that_is_not_atomic():
    result = one("canonizer", C.NonAtomicCanonizer, "atomic_apply")
    assert result.status == FAIL
    assert result.message == (
        "apply interrupted at mutation 2 of 4 (ReferenceNet.__setattr__ 'bn1') on ReferenceNet, the model was not "
        "restored: module 'conv1' was replaced (the same type, another object); parameter 'conv1.weight' changed: "
        f"max abs diff {result_number(result.message)}; parameter 'conv1.bias' was added")


def test_canonizer_that_is_not_atomic_and_writes_module_dictionaries_directly():
    result = one("canonizer", C.DirectWriteNonAtomicCanonizer, "atomic_apply")
    assert result.status == FAIL
    assert result.message == (
        "apply interrupted at mutation 2 of 4 (ReferenceNet._modules['bn1'] = Identity) on ReferenceNet, the model "
        "was not restored: module 'conv1' was replaced (the same type, another object); parameter 'conv1.weight' "
        f"changed: max abs diff {result_number(result.message)}; parameter 'conv1.bias' was added")


def test_atomic_check_interrupts_canonizers_that_edit_module_dictionaries():
    """The built-in canonizers edit ``_parameters``/``_modules``/``__dict__`` directly; the check still reaches
    them and interrupts them at several points, and each interruption leaves the model exactly as it was."""
    from xai_plugins.canonizers.batchnorm import MergeBatchNormPreceding

    result = one("canonizer", MergeBatchNormPreceding, "atomic_apply")
    assert result.status == PASS
    assert re.fullmatch(r"model unchanged after apply was interrupted at \d+ point\(s\)", result.message)
    assert int(re.search(r"(\d+) point", result.message).group(1)) >= 2


def result_number(message: str) -> str:
    return re.search(r"max abs diff ([0-9.e+-]+);", message).group(1)


def test_canonizer_that_changes_the_model_before_refusing_a_second_apply():
    result = one("canonizer", C.ChangeThenRefuseCanonizer, "idempotent")
    assert result.status == FAIL
    assert result.message == ("a refused second apply on ReferenceNet changed the canonized model: parameter "
                              f"'fc.bias' changed: max abs diff {result_number(result.message + ';')}")


def test_canonizer_that_refuses_a_second_apply_cleanly_passes():
    result = one("canonizer", C.RefusingCanonizer, "idempotent")
    assert result.status == PASS
    assert result.message.startswith("nested apply refused (RuntimeError); double remove and re-apply safe")


def test_canonizer_whose_copy_is_itself():
    result = one("canonizer", C.NoCopyCanonizer, "interface")
    assert (result.status, result.message) == (
        FAIL, "copy() returned the same object; it must return a fresh canonizer of the same kind")


def test_canonizer_with_unclear_error():
    result = one("canonizer", C.HookLeakingCanonizer, "clear_errors")
    assert result.message == ("apply('not a model'): the AttributeError message \"'str' object has no attribute 'fc'\" "
                              "does not name the problem (expected it to mention 'nn.Module' or 'model')")


def test_attributor_that_leaves_the_model_in_training_mode():
    result = one("attributor", C.training_mode_attributor, "restores_model")
    assert result.status == FAIL
    assert result.message == ("after a call on a model in eval mode, the model was not restored: left 8 module(s) "
                              "in training mode (was eval), e.g. '<root>'")


def test_attributor_that_unfreezes_parameters():
    result = one("attributor", C.unfreezing_attributor, "restores_model")
    assert result.message == ("after a call on a model in eval mode, the model was not restored: requires_grad of "
                              "'conv1.weight' changed: False -> True")


def test_attributor_that_does_not_clean_up_on_error():
    assert one("attributor", C.no_cleanup_on_error_attributor, "restores_model").status == PASS
    result = one("attributor", C.no_cleanup_on_error_attributor, "restores_on_error")
    assert result.status == FAIL
    assert result.message.startswith("after the model raised during the call, the model was not restored: "
                                     "requires_grad of 'bn1.weight' changed: True -> False; ")


def test_attributor_with_unchecked_target():
    result = one("attributor", C.unchecked_target_attributor, "clear_errors")
    assert result.message == ("target 13 for a model with 10 classes: the IndexError message 'index 13 is out of "
                              "bounds for dimension 1 with size 10' does not name the problem (expected it to mention "
                              "'target')")


def test_attributor_whose_batch_differs_from_singles():
    result = one("attributor", C.batch_normalised_attributor, "batch_equals_singles")
    assert result.status == FAIL and result.measured > 1e-3
    assert result.message == (f"the batch differs from single-sample calls: sample 1 differs by {result.measured:.3g} "
                              "of its max |attribution| (tolerance 0.0001)")


def test_attributor_without_tuple_inputs():
    result = one("attributor", C.batch_normalised_attributor, "tuple_inputs")
    assert result.message == ("inputs as a 1-tuple (Captum's convention) are not accepted: AttributeError: 'tuple' "
                              "object has no attribute 'abs'")


def test_attributor_that_ignores_the_seed():
    result = one("attributor", C.unseeded_attributor, "deterministic")
    assert result.status == FAIL and result.measured > 1e-6
    assert result.message == (f"two calls under the same seed differ by {result.measured:.3g} relative "
                              "(tolerance 1e-06)")


def test_guided_backprop_breaks_implementation_invariance_on_functional_relu():
    result = one("attributor", C.guided_backprop, "implementation_invariance")
    assert result.status == FAIL
    assert result.message == (f"attributions differ between functionally equivalent models: functional_activation "
                              f"{result.measured:.3g} relative (tolerance 0.0001)")


def test_model_without_input_validation():
    result = one("model", C.plain_cnn, "clear_errors")
    assert re.fullmatch(
        r"an input with 4 channels instead of 3: a bare RuntimeError came from inside torch "
        r"\(torch/nn/modules/conv\.py:\d+\): 'Given groups=1, weight of size \[4, 3, 3, 3\], expected input\[2, 4, 32, "
        r"32\] to have 3 channels, but got 4 channels instead'; validate the input and raise an error that names the "
        r"problem and the fix", result.message)


def test_model_builder_that_downloads():
    result = one("model", C.downloading_builder, "builds")
    assert result.message == ("the builder tried to download https://example.invalid/weights.pth; builders must not "
                              "download, load weights from local files")


def test_initializer_that_ignores_the_generator():
    result = one("initializer", C.unseeded_normal, "seeded")
    assert result.status == FAIL
    assert re.fullmatch(r"two calls with generator seed 7 for \(8, 4, 3, 3\) differ by up to [0-9.]+", result.message)


def test_fixer_that_does_not_freeze():
    result = one("initializer", C.scaled_normal, "fixed_under_optimiser", fixer=C.forgetful_fixer)
    assert result.status == FAIL
    assert result.message == (f"fixed filters spatial.weight, depthwise.weight changed under optimiser steps (max abs "
                              f"change {result.measured:.3g}); freeze them with requires_grad_(False)")


def test_incomplete_metadata():
    result = one("attributor", C.gradient_x_input, "metadata", summary="two\nlines", paper="Someone, Something",
                 model_types=("resnet",), example_input_shape=(2, 3, 0))
    assert result.message == (
        "summary must be one line of at most 120 characters (has 9 characters); paper 'Someone, Something' has no "
        "year; cite as 'Authors, Title, Venue Year'; model_types must be dotted class names like "
        "'torchvision.models.ResNet', got ['resnet']; example_input_shape must be a tuple of positive ints like "
        "(2, 3, 32, 32), got (2, 3, 0)")


def test_model_specific_attributor_without_example_model():
    result = one("attributor", C.gradient_x_input, "metadata", model_types=("mypkg.models.MyNet",))
    assert result.message == ("no example model for model_types mypkg.models.MyNet: pass "
                              "example_model='package.module:factory' (or 'model:NAME') to register() so the suite "
                              "can build one")
    assert one("attributor", C.gradient_x_input, "output", model_types=("mypkg.models.MyNet",)).status == SKIP


def test_a_crashing_component_is_a_failure_that_says_where():
    def crash(model, inputs, target):
        """Raises."""
        raise KeyError("boom")

    result = one("attributor", crash, "output")
    assert result.status == FAIL
    assert re.fullmatch(r"raised KeyError: 'boom' at .*test_broken_components\.py:\d+", result.message)


def _row_occlusion(model, inputs, target, additional_forward_args=(), **kwargs):
    """Occlusion of each half of the features, evaluated as one batch of 2N rows; the extra arguments are passed
    as given, so tensors with N rows do not follow the 2N rows (the breach the check must catch)."""
    x = inputs.detach()
    n = x.shape[0]
    t = torch.as_tensor(target).long().reshape(-1).expand(n)
    flat = x.reshape(n, -1)
    half = flat.shape[1] // 2
    masks = torch.ones(2, flat.shape[1])
    masks[0, :half] = 0
    masks[1, half:] = 0
    rows = (flat[:, None] * masks).reshape(2 * n, *x.shape[1:])
    with torch.no_grad():
        full = model(x, *additional_forward_args).gather(1, t[:, None])
        outs = model(rows, *additional_forward_args).reshape(n, 2, -1).gather(2, t[:, None, None].expand(n, 2, 1))
    drop = (full - outs.squeeze(2))
    return (drop[:, :, None] * (1 - masks)[None]).sum(1).reshape(x.shape)


def test_attributor_whose_extra_arguments_do_not_follow_the_rows():
    result = one("attributor", _row_occlusion, "host_metadata", attribution_kind="perturbation",
                 takes_additional_forward_args=True)
    assert result.status == FAIL
    assert result.message.startswith("declares takes_additional_forward_args=True, but additional_forward_args=(1.0, "
                                     "a tensor with one row per sample) fails: ")
    assert "the extra arguments do not follow the rows" in result.message


def test_attributor_that_ignores_its_extra_arguments():
    result = one("attributor", C.gradient_x_input, "host_metadata", attribution_kind="gradient",
                 takes_additional_forward_args=True)
    assert result.status == FAIL and "additional_forward_args=(1.0, a tensor with one row per sample) fails: " \
        "TypeError" in result.message
