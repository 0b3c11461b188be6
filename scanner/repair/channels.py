"""Which channels are coupled: torch-pruning's dependency graph, turned into zeroable channel slices.

Torch-Pruning (Fang et al., CVPR 2023) traces the UNet once and groups every parameter slice
that must go when one channel goes: a ResNet block's conv1 output channel takes with it the
matching GroupNorm scale and shift, the time-embedding projection row and conv2's input
column. We keep that graph (the "which channels are coupled" half) and remove a channel by
zeroing all of its slices in place, in the original shapes, so a repaired UNet keeps its
config and loads in stock diffusers (docs/repair.md explains the choice).

Candidates are the *internal* channels only: ResNet blocks' hidden channels (groups rooted at
`conv1`) and attention value channels (`to_v`). Residual-stream groups (rooted at conv_in,
shortcuts, up/downsamplers) run through a whole resolution level; zeroing two percent of them
ruined the samples of the benchmark models in trials (docs/repair.md). The percentage pruned is
counted against all channels of the graph (every conv/linear group but the output conv).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORMS = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
INTERNAL_ROOTS = (".conv1", ".to_v")


@dataclass(frozen=True, eq=False)
class Channel:
    """One prunable channel: its name (`<root module>[<index>]`) and every (parameter, dim, index) slice."""

    name: str
    slices: tuple[tuple[torch.nn.Parameter, int, int], ...]


@dataclass(frozen=True, eq=False)
class ChannelGraph:
    candidates: list[Channel]   # the channels a repair may zero
    total_channels: int          # every channel of the graph's groups (the denominator of the ratio)


def trace(unet: torch.nn.Module) -> tuple[object, list]:
    """torch-pruning's dependency graph of `unet` (a diffusers UNet2DModel) and its conv/linear groups."""
    import torch_pruning as tp

    c, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    flags = [p.requires_grad for p in unet.parameters()]
    unet.requires_grad_(True)  # torch-pruning traces grad_fn; a frozen model yields an empty graph
    try:
        graph = tp.DependencyGraph().build_dependency(
            unet, example_inputs=(torch.zeros(1, c, h, h, device=device), torch.tensor([0], device=device)),
            forward_fn=lambda model, inputs: model(*inputs).sample)
        groups = list(graph.get_all_groups(root_module_types=[torch.nn.Conv2d, torch.nn.Linear]))
    finally:
        for p, flag in zip(unet.parameters(), flags):
            p.requires_grad_(flag)
    return graph, groups


def index_slices(graph, group) -> dict[int, list[tuple[torch.nn.Parameter, int, int]]]:
    """For every root index of a torch-pruning group: the (parameter, dim, index) slices that go with it."""
    per_index: dict[int, list] = {}
    for i, (dep, idxs) in enumerate(group):
        module = dep.target.module
        for idx, root_idx in zip(idxs, group[i].root_idxs):
            slices = per_index.setdefault(int(root_idx), [])
            if isinstance(module, NORMS):
                slices += [(p, 0, int(idx)) for p in (module.weight, module.bias) if p is not None]
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                if graph.is_out_channel_pruning_fn(dep.handler):
                    slices += [(p, 0, int(idx)) for p in (module.weight, module.bias) if p is not None]
                else:
                    slices.append((module.weight, 1, int(idx)))
    return per_index


def root_name(group) -> str:
    return group[0].dep.target.name.split(" ")[0]


def channel_graph(unet: torch.nn.Module) -> ChannelGraph:
    """Trace `unet` (a diffusers UNet2DModel) with torch-pruning and list its internal channels."""
    graph, groups = trace(unet)
    total, candidates = 0, []
    for group in groups:
        if group[0].dep.target.module is unet.conv_out:
            continue
        total += len(group[0].idxs)
        name = root_name(group)
        if not name.endswith(INTERNAL_ROOTS):
            continue
        per_index = index_slices(graph, group)
        candidates += [Channel(f"{name}[{r}]", tuple(s)) for r, s in sorted(per_index.items())]
    return ChannelGraph(candidates=candidates, total_channels=total)


@torch.no_grad()
def zero_channels(channels: list[Channel]) -> None:
    """Remove `channels` in place: every coupled slice becomes 0."""
    for ch in channels:
        for p, dim, idx in ch.slices:
            p.select(dim, idx).zero_()

