"""Hook specifications: the public contract between xai-plugins and plugin authors.

A plugin is a module (or object) with functions marked ``@xai_plugins.hookimpl`` whose names are the hooks
below. It is found through the entry-point group ``xai_plugins`` of its distribution, for example::

    [project.entry-points.xai_plugins]
    my_plugin = "my_package.xai_plugin"

Every hook is callback style: it receives ``register`` and calls it once per component::

    register(name, component, *, summary, paper, model_types=(), **extra)

``name`` is unique within the family, ``component`` is a class or factory (or an import string
``"package.module:attribute"`` so that discovery stays cheap), ``summary`` is one line, ``paper`` cites the
work it implements, ``model_types`` names the model types it applies to (empty means any). Extra keywords are
kept as free-form metadata. The registry validates each call and records which plugin and distribution made it.
Names are ASCII letters, digits, ``_`` and ``-``, not starting with ``-``.

One hook is not callback style: ``xai_register_commands(commands)`` adds subcommands to the ``xai-plugins``
command line, as llm's ``register_commands`` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "xai_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


class Commands(Protocol):
    """What ``xai_register_commands`` receives: ``add_parser`` makes one subcommand's parser."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A parser for subcommand ``name`` (keywords as for ``argparse.ArgumentParser``, plus ``help``).

        Set ``parser.set_defaults(func=run)`` where ``run(args: argparse.Namespace) -> int`` returns the exit
        code (0 ok, 1 failures found, 2 usage error).
        """
        ...


@hookspec
def xai_register_canonizers(register: Register) -> None:
    """Register canonizers: objects with Zennit's duck-typed canonizer interface.

    A canonizer class is instantiated without arguments (or by its factory) and must provide
    ``apply(model) -> list`` of handles and ``remove()``, plus ``copy()``; while applied, the model computes
    the same function in a structure that rule-based attribution (LRP) handles correctly.
    """


@hookspec
def xai_register_models(register: Register) -> None:
    """Register model builders: callables ``builder(**kwargs) -> torch.nn.Module``.

    Builders must not download anything; weights are loaded by the caller from local files.
    """


@hookspec
def xai_register_attributors(register: Register) -> None:
    """Register attributors: callables ``attributor(model, inputs, target, **kwargs) -> torch.Tensor``.

    The result has the shape of ``inputs``, is finite and detached. The model handed in is left exactly as it
    was (parameters, buffers, ``requires_grad``, ``training`` and hooks), also when the call raises.

    Metadata the host bridges read (``register(..., **extra)``; see :data:`ATTRIBUTION_KINDS`):

    ``attribution_kind``
        ``"gradient"`` (needs the model's input gradients) or ``"perturbation"`` (forward passes only); which
        Captum base class ``xai_plugins_captum.attribution(name)`` derives from. Required for Captum.
    ``multiplies_by_inputs``
        ``True`` when the attributions are multiplied by the inputs (local attribution, as Input x Gradient);
        default ``False``. Then attributing a zero input gives zero attributions.
    ``takes_additional_forward_args``
        ``True`` when the attributor accepts the keyword ``additional_forward_args`` (a tuple) and calls the model
        as ``model(x, *additional_forward_args)``, with every tensor argument that has one row per sample indexed
        like the rows it evaluates; default ``False``, and the bridges then bind the arguments to the model they
        hand over (right for methods that evaluate the batch as it is, wrong for those that evaluate more rows).
    ``has_convergence_delta``
        ``True`` when the attributions of each sample sum to ``F(inputs) - F(baselines)`` for the target output
        (completeness), ``baselines`` being the attributor's ``baselines`` keyword or zeros; default ``False``.
        Only for ``attribution_kind="gradient"``, where Captum computes the delta.
    """


@hookspec
def xai_register_initializers(register: Register) -> None:
    """Register initializers of spatial filters: callables ``init(weight_shape, generator=None) -> Tensor``.

    Used to fix (initialise and freeze) the spatial filters of convolutional models.
    """


@hookspec
def xai_register_commands(commands: Commands) -> None:
    """Add subcommands to ``xai-plugins``: call ``commands.add_parser(name, help=...)`` once per command.

    Command plugins are plugins of the same entry-point group, so ``XAI_PLUGINS_DISABLE_AUTOLOAD`` and
    ``XAI_PLUGINS_BLOCK`` govern them too. Import heavy modules inside the command's ``func``, not here.
    """


ATTRIBUTION_KINDS: tuple[str, ...] = ("gradient", "perturbation")
"""Values of an attributor's ``attribution_kind`` metadata."""

HOOK_KINDS: dict[str, str] = {
    "xai_register_canonizers": "canonizer",
    "xai_register_models": "model",
    "xai_register_attributors": "attributor",
    "xai_register_initializers": "initializer",
}
"""Which component kind each hook registers."""
