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
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "xai_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


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

    The result has the shape of ``inputs``. The model handed in is left exactly as it was (parameters,
    buffers, ``requires_grad``, ``training`` and hooks), also when the call raises.
    """


@hookspec
def xai_register_initializers(register: Register) -> None:
    """Register initializers of spatial filters: callables ``init(weight_shape, generator=None) -> Tensor``.

    Used to fix (initialise and freeze) the spatial filters of convolutional models.
    """


HOOK_KINDS: dict[str, str] = {
    "xai_register_canonizers": "canonizer",
    "xai_register_models": "model",
    "xai_register_attributors": "attributor",
    "xai_register_initializers": "initializer",
}
"""Which component kind each hook registers."""
