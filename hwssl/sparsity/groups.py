"""Where SSL's groups live in a model, and how per-group strengths map onto them.

Group types (Wen et al. 2016), on a conv weight W of shape (F, C, kh, kw),
i.e. the lowered matrix of F rows and C*kh*kw columns:

* ``filter``  – one row W[f]            (removes an output channel)
* ``channel`` – the kh*kw columns W[:, c] (removes an input channel)
* ``shape``   – one column W[:, c, i, j] (removes a filter-shape fibre)
* ``depth``   – every weight of a residual branch (removes a block)

Residual coupling: filters that feed a residual add (stems, the second conv of
each block, shortcut convs) are *not* grouped, so stage widths never change.
Filter and channel groups act only inside a block (conv1's filters = conv2's
input channels), plus conv1's input channels, which are realised as a channel
gather from the untouched residual stream. Shape groups apply to every 3x3+
conv. The depth group of a block holds both conv weights and both BatchNorm
affine parameters of the branch, so a zeroed branch outputs exactly zero.

BatchNorm: a conv followed by BatchNorm computes the same function at any scale of a filter, so
the loss gradient of a filter row is orthogonal to it and cannot resist the penalty: every
filter shrinks at the same rate, however much the net needs it, until it is too small for
BatchNorm's epsilon and drops out at once. ``ConvSite.bn`` names that BatchNorm;
``GroupLasso(filter_bn=True)`` (``ssl.filter_bn``) puts its scale and shift of the channel into
the filter group, so shrinking the group shrinks what the channel contributes and the loss
pushes back on the filters the net needs (the network-slimming view of a channel).

MobileNetV2 (see :func:`_mobilenet_sites`): the hidden (expanded) channel ``h`` of a block
is one *coupled* filter group spanning expand row ``h``, depthwise filter ``h`` and projection
input column ``h`` (:class:`CoupledSite`); a zeroed group leaves nothing the projection reads,
so the channel goes without constant folding. The expand conv's input channels are channel
groups (a gather from the residual stream), the head conv's rows are filter groups (their
constants fold into the classifier), identity blocks get depth groups (all three convs and
BatchNorm affine parameters), and shape groups exist only on the stem, the one k x k conv
that is not depthwise. Stream widths (block outputs) never change.

Strength keys are ``<type>`` (every site of that type), ``<type>.<stage>``
(e.g. ``depth.stage2``) or ``<type>.<layer>`` (e.g. ``shape.conv1``,
``filter.layer2.1.conv1``); the most specific key wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from torch import nn

GROUP_TYPES = ("filter", "channel", "shape", "depth")


@dataclass
class ConvSite:
    """A conv layer open to SSL and which of its group types may be removed."""

    name: str
    stage: str
    conv: nn.Conv2d
    types: tuple[str, ...]
    bn: nn.BatchNorm2d | None = None   # the BatchNorm that normalises this conv's output channels


@dataclass
class DepthSite:
    """A residual block whose whole branch may be removed."""

    name: str
    stage: str
    params: list[nn.Parameter] = field(default_factory=list)


@dataclass
class CoupledSite:
    """Filter groups spanning several tensors: group ``g`` is slice ``g`` along ``dim`` of every
    member tensor (MobileNetV2's hidden channels: expand rows, depthwise filters, projection
    columns)."""

    name: str
    stage: str
    members: list[tuple[nn.Parameter, int]]
    group_type: str = "filter"


@dataclass
class SSLSites:
    convs: list[ConvSite]
    blocks: list[DepthSite]
    coupled: list[CoupledSite] = field(default_factory=list)

    def scopes(self, group_type: str) -> tuple[list[str], list[str]]:
        """(layer/block names, stage names) that a strength of this type may target."""
        if group_type == "depth":
            names = [b.name for b in self.blocks]
            stages = sorted({b.stage for b in self.blocks})
        else:
            sites = [s for s in self.convs if group_type in s.types]
            sites += [c for c in self.coupled if c.group_type == group_type]
            names = [s.name for s in sites]
            stages = sorted({s.stage for s in sites if s.stage})
        return names, stages


class StrengthError(ValueError):
    """A strength key or value that does not fit the model; ``key`` names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def ssl_sites(model: nn.Module) -> SSLSites:
    """The SSL sites of a dense zoo model (built by :func:`hwssl.models.build_model`)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise TypeError("ssl_sites needs a model built from a spec (hwssl.models.build_model)")
    if spec["family"] == "plain":
        convs = []
        first = True
        for layer in spec["layers"]:
            if layer["kind"] != "conv":
                continue
            unit = getattr(model.body, layer["name"])
            types = ("filter", "shape") if first else ("filter", "channel", "shape")
            convs.append(ConvSite(layer["name"], "", unit.conv, types, unit.bn))
            first = False
        return SSLSites(convs, [])
    if spec["family"] == "resnet":
        convs = []
        if spec["stem"]["kernel"] > 1:
            convs.append(ConvSite("conv1", "stem", model.conv1, ("shape",)))
        blocks = []
        for s, layer in enumerate(model.stages):
            stage = f"stage{s + 1}"
            for b, block in enumerate(layer):
                prefix = f"layer{s + 1}.{b}"
                if not hasattr(block, "conv1"):
                    continue  # already removed
                convs.append(ConvSite(f"{prefix}.conv1", stage, block.conv1, ("filter", "channel", "shape"),
                                      block.bn1))
                convs.append(ConvSite(f"{prefix}.conv2", stage, block.conv2, ("channel", "shape")))
                params = [block.conv1.weight, block.conv2.weight, block.bn1.weight, block.bn1.bias,
                          block.bn2.weight, block.bn2.bias]
                blocks.append(DepthSite(prefix, stage, params))
        return SSLSites(convs, blocks)
    if spec["family"] == "mobilenetv2":
        return _mobilenet_sites(model)
    raise ValueError(f"unknown model family {spec['family']!r}")


def _mobilenet_sites(model: nn.Module) -> SSLSites:
    """MobileNetV2's groups (see the module docstring). Depthwise and projection convs are listed
    with no group types of their own, so sparsity statistics still report them."""
    convs = [ConvSite("stem", "stem", model.stem.conv, ("shape",) if model.spec["stem"]["kernel"] > 1 else ())]
    blocks, coupled = [], []
    for i, (bspec, block) in enumerate(zip(model.spec["blocks"], model.blocks)):
        if bspec["removed"]:
            continue
        name, stage = f"blocks.{i}", f"stage{bspec['stage']}"
        if block.expand is not None:
            convs.append(ConvSite(f"{name}.expand", stage, block.expand.conv, ("channel",)))
            coupled.append(CoupledSite(name, stage, [(block.expand.conv.weight, 0), (block.dw.conv.weight, 0),
                                                     (block.project.conv.weight, 1)]))
        convs.append(ConvSite(f"{name}.dw", stage, block.dw.conv, ()))
        convs.append(ConvSite(f"{name}.project", stage, block.project.conv, ()))
        if bspec["residual"]:
            units = [u for u in (block.expand, block.dw, block.project) if u is not None]
            params = [u.conv.weight for u in units] + [p for u in units for p in (u.bn.weight, u.bn.bias)]
            blocks.append(DepthSite(name, stage, params))
    convs.append(ConvSite("head", "head", model.head.conv, ("filter",), model.head.bn))
    return SSLSites(convs, blocks, coupled)


def parse_strength_key(key: str) -> tuple[str, str]:
    group_type, _, scope = key.partition(".")
    if group_type not in GROUP_TYPES:
        raise StrengthError(key, f"unknown group type {group_type!r}; expected one of {list(GROUP_TYPES)}")
    return group_type, scope


def validate_strength_keys(sites: SSLSites, strengths: Mapping[str, float]) -> None:
    for key, value in strengths.items():
        group_type, scope = parse_strength_key(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0 <= value < float("inf")):
            raise StrengthError(key, f"expected a non-negative number, got {value!r}")
        names, stages = sites.scopes(group_type)
        if not names and value > 0:
            raise StrengthError(key, f"this model has no {group_type} groups")
        if key != group_type and scope not in names and scope not in stages:  # "filter." too
            raise StrengthError(key, f"unknown scope {scope!r} for {group_type} groups; expected one of "
                                     f"{stages + names}")


def resolve_strengths(sites: SSLSites, strengths: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """{type: {site name: lambda}} for every site with a non-zero strength (most specific key wins)."""
    validate_strength_keys(sites, strengths)
    out: dict[str, dict[str, float]] = {t: {} for t in GROUP_TYPES}

    def pick(group_type: str, name: str, stage: str) -> float:
        for key in (f"{group_type}.{name}", f"{group_type}.{stage}" if stage else None, group_type):
            if key is not None and key in strengths:
                return float(strengths[key])
        return 0.0

    for site in sites.convs:
        for group_type in site.types:
            lam = pick(group_type, site.name, site.stage)
            if lam > 0:
                out[group_type][site.name] = lam
    for site in sites.coupled:
        lam = pick(site.group_type, site.name, site.stage)
        if lam > 0:
            out[site.group_type][site.name] = lam
    for block in sites.blocks:
        lam = pick("depth", block.name, block.stage)
        if lam > 0:
            out["depth"][block.name] = lam
    return out
