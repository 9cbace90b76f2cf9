"""``canonizers_for(model)``: pick the canonizers for a model by its type.

Candidates are the built-in canonizers of :mod:`xai_plugins.canonizers.families` (matched by class, without
importing torchvision: a torchvision model can only exist if torchvision is already imported) and the
canonizers plugins registered with ``model_types`` (``"package.module.Class"``, or the public path of a class
such as ``"torchvision.models.ResNet"``). The rules, in order:

1. The most derived class of the model's type that any candidate declares wins.
2. Declarations of container types (``torch.nn.Module``, ``nn.Sequential``, ``nn.ModuleList``,
   ``nn.ModuleDict``) never match: they would capture every model (or every wrapper) without knowing its data
   flow. A model that only such a canonizer would take gets the unsupported-model error, which names it.
3. Several candidates for the same class: the built-in one wins, then the plugin whose name sorts first
   (then the component name); a :class:`CanonizerConflictWarning` names every one of them.
4. A model whose own type matches nothing but which contains recognised submodules (a wrapper such as
   ``nn.Sequential(Normalize(), resnet)``) gets one :class:`SubmoduleCanonizer` per outermost recognised
   submodule.
5. Any other model gets the graph canonizer (:class:`~xai_plugins.canonizers.graph.GraphCanonizer`) if it can
   canonize it; the unsupported-model error then also says why it cannot.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.families import BUILTIN_CANONIZERS, BuiltinCanonizer

__all__ = ["CanonizerConflictWarning", "SubmoduleCanonizer", "canonizers_for", "families"]

BUILTIN_PLUGIN = "canonizers"
"""The name under which the built-in canonizer plugin registers (see ``pyproject.toml``)."""

CONTAINER_TYPES: tuple[type[nn.Module], ...] = (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict)
"""Classes a canonizer may not be selected by (rule 2 of the module documentation)."""


class CanonizerConflictWarning(UserWarning):
    """Several canonizers declare the same model type; the one picked is named in the message."""


def families() -> tuple[BuiltinCanonizer, ...]:
    """The built-in model families ``canonizers_for`` recognises, in matching order (also as ``FAMILIES``)."""
    return tuple(entry for entry in BUILTIN_CANONIZERS if entry.model_type and entry.default)


def __getattr__(name: str) -> Any:
    if name == "FAMILIES":
        return families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class _Candidate:
    """A canonizer that declares ``declared`` (dotted type names); ``make`` builds an instance."""

    name: str
    plugin: str
    declared: tuple[str, ...]
    make: Callable[[], Canonizer]
    builtin: BuiltinCanonizer | None = None

    def matches(self, cls: type) -> bool:
        if self.builtin is not None:
            return self.builtin.model_class() is cls
        return any(_matches(declared, cls) for declared in self.declared)

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (self.builtin is None, self.plugin, self.name)


def _matches(declared: str, cls: type) -> bool:
    """Whether the dotted name ``declared`` names ``cls``: its full path, or a package prefix of its module
    plus its name (``torchvision.models.ResNet`` names ``torchvision.models.resnet.ResNet``)."""
    full = f"{cls.__module__}.{cls.__qualname__}"
    if declared == full:
        return True
    prefix, _, name = declared.rpartition(".")
    return name == cls.__qualname__ and bool(prefix) and cls.__module__.startswith(prefix + ".")


def _generic(declared: str) -> bool:
    return any(_matches(declared, cls) for cls in CONTAINER_TYPES)


def _candidates() -> list[_Candidate]:
    from xai_plugins import list_components

    found = [_Candidate(entry.name, BUILTIN_PLUGIN, (entry.model_type,), _loader(entry.load), entry)
             for entry in families()]
    targets = {entry.target for entry in BUILTIN_CANONIZERS}
    for component in list_components("canonizer"):
        if not component.model_types or _target(component.target) in targets:
            continue
        found.append(_Candidate(component.name, component.plugin or "?", tuple(component.model_types),
                                _loader(component.load)))
    return found


def _target(target: Any) -> str:
    """A component's target as its import string (a loaded component holds the object)."""
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _loader(load: Callable[[], Any]) -> Callable[[], Canonizer]:
    return lambda: load()()


def _select(model: nn.Module, candidates: list[_Candidate]) -> _Candidate | None:
    for cls in type(model).__mro__:
        if cls in CONTAINER_TYPES or cls is object:
            continue
        matching = sorted((c for c in candidates if c.matches(cls)), key=lambda c: c.sort_key)
        if len(matching) > 1:
            names = ", ".join(f"{c.name!r} of plugin {c.plugin!r}" for c in matching)
            warnings.warn(f"several canonizers declare {cls.__module__}.{cls.__qualname__}: {names}; "
                          f"canonizers_for picks {matching[0].name!r} (built-in first, then by plugin name). "
                          "Use another one explicitly, e.g. xai_plugins.get('canonizer', NAME)(), or block a "
                          "plugin with XAI_PLUGINS_BLOCK", CanonizerConflictWarning, stacklevel=3)
        if matching:
            return matching[0]
    return None


def _recognised_inside(model: nn.Module, candidates: list[_Candidate], prefix: str = ""
                       ) -> list[tuple[str, _Candidate]]:
    """``(qualified name, candidate)`` of the outermost submodules some candidate canonizes."""
    found = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        candidate = _select(child, candidates)
        if candidate is not None:
            found.append((path, candidate))
        else:
            found.extend(_recognised_inside(child, candidates, path + "."))
    return found


class SubmoduleCanonizer(Canonizer):
    """Applies ``canonizer`` to the submodule at ``path`` of the model it is applied to (for wrappers such as
    ``nn.Sequential(Normalize(), resnet)``, whose own type no canonizer knows). Atomic and exactly reverted
    like any canonizer."""

    eval_mode_only = False  # the inner canonizer warns about training mode itself

    def __init__(self, path: str, canonizer: Canonizer) -> None:
        super().__init__()
        self.path = path
        self.canonizer = canonizer

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {self.canonizer!r})"

    def copy(self) -> SubmoduleCanonizer:
        return type(self)(self.path, self.canonizer.copy())

    @property
    def applied(self) -> bool:
        return self.canonizer.applied

    def canonize(self, model: nn.Module) -> None:
        try:
            submodule = model.get_submodule(self.path)
        except AttributeError:
            raise ValueError(f"{self!r}: {type(model).__name__} has no submodule {self.path!r}") from None
        self.canonizer.apply(submodule)

    def _unwind(self) -> None:
        self.canonizer.remove()
        super()._unwind()


def _unsupported_message(model: nn.Module, candidates: list[_Candidate]) -> str:
    known = "; ".join(f"{entry.label} ({entry.model_type})" for entry in families())
    cls = type(model)
    generic = [f"{c.name!r} of plugin {c.plugin!r} declares {', '.join(d for d in c.declared if _generic(d))}"
               for c in candidates if any(_generic(d) for d in c.declared)]
    ignored = (f" Ignored as too generic (a canonizer must name the model classes whose data flow it knows): "
               f"{'; '.join(generic)}.") if generic else ""
    return (
        f"no canonizer is known for {cls.__module__}.{cls.__qualname__} or any of its submodules. Supported "
        f"families: {known}.{ignored} For BatchNorm merging alone try "
        "xai_plugins.canonizers.MergeBatchNorm(). To support this model, write a canonizer (subclass "
        "xai_plugins.canonizers.Canonizer) and register it from a plugin: '@xai_plugins.hookimpl def "
        "xai_register_canonizers(register): register(\"my_model\", MyCanonizer, summary=..., paper=..., "
        "model_types=(\"my_package.MyModel\",))' with the plugin module listed under the entry-point group "
        "'xai_plugins'; canonizers_for then picks it by model type"
    )


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """Fresh canonizer instances that canonize ``model`` (a list, as Zennit's ``Composite`` expects), chosen
    by the rules in the module documentation.

    Raises ``TypeError`` for something that is not a module and ``ValueError`` listing the supported
    families and how to register a canonizer when neither the model nor any submodule is recognised.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"canonizers_for expects a torch.nn.Module, got {type(model).__name__}")
    candidates = _candidates()
    chosen = _select(model, candidates)
    if chosen is not None:
        return [chosen.make()]
    inside = _recognised_inside(model, candidates)
    if inside:
        return [SubmoduleCanonizer(path, candidate.make()) for path, candidate in inside]
    # no hand-written family: the graph canonizer, if it can canonize the model (xai_plugins.canonizers.graph)
    from xai_plugins.canonizers.graph import graph_canonizer_for

    canonizer, reason = graph_canonizer_for(model)
    if canonizer is not None:
        return [canonizer]
    raise ValueError(f"{_unsupported_message(model, candidates)}. The graph canonizer cannot canonize it either: "
                     f"{reason}")
