"""Every built-in family canonizer against a plain ``GraphCanonizer`` on the same models, in one run.

For each family both cover (the small models of ``tests.support.canonizers.FAMILY_BUILDERS``, 32-pixel inputs) and
each BatchNorm state of ``--draws`` (calibrated draws of the suite's randomiser, seeds 0, 1, …) it prints:

- ``places``: whether the explicit modules are the same types under the same parents, ``calls``: whether the
  forward calls the same modules with bitwise the same parameters and buffers, ``form``: whether both have the
  architecture's canonical form;
- ``out``: the relative output difference of the two canonical models;
- ``zennit`` / ``captum``: the relative difference of their relevance (``EpsilonPlusFlat(zero_params='bias')``
  through the Zennit adapter; Captum ``LRP`` inside ``canonized()``), and Σ relevance / logit of the family
  canonizer in each host;
- ``verify``: whether ``GraphCanonizer()`` with its probe verification accepts the model.

Run: ``python benchmarks/compare_family_presets.py [--draws 3] [--families resnet densenet ...]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.batchnorm import BatchNormDraw, apply  # noqa: E402
from tests.support.canonical_forms import (  # noqa: E402
    canonical,
    captum_relevance,
    relative,
    zennit_relevance,
)
from tests.support.canonizers import FAMILY_BUILDERS  # noqa: E402
from xai_plugins.canonizers import canonizers_for  # noqa: E402
from xai_plugins.canonizers.graph import GraphCanonizer  # noqa: E402

SIZE = 32
FAMILIES = [name for name in FAMILY_BUILDERS if name != "relation_network"]


def _verdict(model: torch.nn.Module) -> str:
    canonizer = GraphCanonizer()
    try:
        canonizer.apply(model)
    except ValueError as exc:
        return type(exc).__name__
    canonizer.remove()
    return "yes"


def row(family: str, seed: int) -> str:
    torch.manual_seed(0)
    model = apply(FAMILY_BUILDERS[family]().eval(), BatchNormDraw(mode="calibrated", seed=seed),
                  input_shape=(4, 3, SIZE, SIZE))
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = model(x)
    (family_canonizer,) = canonizers_for(model)
    graph_canonizer = GraphCanonizer(verify=False)
    hand, auto = (canonical(model, canonizer.copy(), x) for canonizer in (family_canonizer, graph_canonizer))
    places = hand.layout == auto.layout
    calls = hand.calls == auto.calls
    form = not hand.problems and not auto.problems and hand.merged and auto.merged
    target = int(reference.argmax())
    logit = float(reference[0, target])
    start = torch.zeros_like(reference)
    start[0, target] = logit
    zennit = [zennit_relevance(model, c.copy(), x, start)
              for c in (family_canonizer, graph_canonizer)]
    captum = [captum_relevance(model, c.copy(), x, target) for c in (family_canonizer, graph_canonizer)]
    name = type(family_canonizer).__name__
    return (f"{family:20s} {seed:4d} {name:22s} {'yes' if places else 'NO':>6s} {'yes' if calls else 'NO':>5s} "
            f"{'yes' if form else 'NO':>4s} {relative(hand.output, auto.output):8.1e} "
            f"{relative(*zennit):8.1e} {float(zennit[0].sum()) / logit:7.4f} "
            f"{relative(*captum):8.1e} {float(captum[0].sum()) / logit:7.4f} {_verdict(model):>6s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = (f"{'family':20s} {'draw':>4s} {'family canonizer':22s} {'places':>6s} {'calls':>5s} {'form':>4s} "
              f"{'out':>8s} {'zennit':>8s} {'Σ/logit':>7s} {'captum':>8s} {'Σ/logit':>7s} {'verify':>6s}")
    print(header)
    print("-" * len(header))
    for family in args.families:
        for seed in range(args.draws):
            print(row(family, seed), flush=True)


if __name__ == "__main__":
    main()
