"""Remove the least important channels with torch-pruning and rebuild a stock `UNet2DModel` of the new widths.

Every torch-pruning group of the UNet (one channel space and all parameter slices coupled to it)
is cut to `WidthPlan.new_width` of its width, in whole units: contiguous GroupNorm groups for
convolution streams, whole heads for attention (to_q/to_k/to_v/to_out move together). A unit's
score is the sum of the parameter scores over all slices of its channels. The time embedding MLP
keeps its width (`time_embedding_dim` pins it in the new config); the output conv keeps its
channels. torch-pruning performs the surgery; the result is then loaded, strictly, into a fresh
`UNet2DModel` built from the new config, so a mismatch anywhere is an error, not a silent model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from scanner.compress.plan import WidthPlan, width_plan
from scanner.compress.timeembed import fold_time_embedding, timestep_features
from scanner.repair.channels import index_slices, root_name, trace

KEPT_ROOTS = ("conv_out", "time_embedding.linear_1", "time_embedding.linear_2")


def unit_scores(per_index: dict[int, list], scores: dict[int, torch.Tensor], unit: int) -> torch.Tensor:
    """Sum of the parameter scores over every slice of each unit of `unit` consecutive channels."""
    n = len(per_index)
    channel = torch.zeros(n, dtype=torch.float64)
    for idx, slices in per_index.items():
        channel[idx] = sum(float(scores[id(p)].select(dim, i).sum()) for p, dim, i in slices)
    return channel.view(n // unit, unit).sum(1)


def prune_unet(unet: torch.nn.Module, scores: dict[str, torch.Tensor], *, sparsity: float,
               num_train_timesteps: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(a compressed copy of `unet`, the plan: widths, which units went, their scores); `unet` is untouched.

    `scores` maps parameter names to per-element importance (same shapes); higher means keep.
    """
    import torch_pruning as tp
    from diffusers import UNet2DModel

    plan = width_plan(dict(unet.config), sparsity)
    model = copy.deepcopy(unet).cpu().float()
    by_id = {id(p): scores[n].detach().cpu().double() for n, p in model.named_parameters() if n in scores}
    missing = [n for n, _ in model.named_parameters() if n not in scores]
    if missing:
        raise ValueError(f"no importance for {len(missing)} parameters, e.g. {missing[0]}")
    graph, groups = trace(model)
    head_dim = unet.config.attention_head_dim
    cuts, record = [], []
    for group in groups:
        name = root_name(group)
        if name in KEPT_ROOTS:
            continue
        module = group[0].dep.target.module
        per_index = index_slices(graph, group)
        width = len(per_index)
        attention = name.endswith(".to_v") and head_dim is not None
        unit = head_dim if attention else width // plan.norm_groups
        if width % plan.norm_groups or width % unit:
            raise ValueError(f"{name}: {width} channels do not split into {plan.norm_groups} groups")
        keep = plan.new_width(width) // unit
        score = unit_scores(per_index, by_id, unit)
        kept = sorted(torch.argsort(score, descending=True, stable=True)[:keep].tolist())
        gone = [u for u in range(len(score)) if u not in kept]
        idxs = [u * unit + j for u in gone for j in range(unit)]
        fn = tp.prune_linear_out_channels if isinstance(module, torch.nn.Linear) else tp.prune_conv_out_channels
        cuts.append((module, fn, idxs))
        record.append({"group": name, "width": width, "unit": unit, "kept_units": kept, "removed_units": gone,
                       "removed_scores": [float(score[u]) for u in gone], "kept_score_share":
                       float(score[kept].sum() / score.sum()) if float(score.sum()) > 0 else None})
    for module, fn, idxs in cuts:
        graph.get_pruning_group(module, fn, idxs).prune()
    compressed, time_error = _rebuild(unet, model, plan, num_train_timesteps, UNet2DModel)
    return compressed, {**_plan_record(plan, record), "time_embedding_error": time_error}


def _rebuild(original, pruned, plan: WidthPlan, num_train_timesteps: int, cls) -> tuple[torch.nn.Module, float]:
    config = {k: v for k, v in dict(original.config).items() if not k.startswith("_")}
    time_dim = original.time_embedding.linear_1.out_features
    config.update(block_out_channels=list(plan.new_widths), norm_num_groups=plan.norm_groups - plan.removed_groups,
                  time_embedding_dim=time_dim)
    state = pruned.state_dict()
    if config.get("attn_norm_num_groups") is not None:
        config["attn_norm_num_groups"] = config["norm_num_groups"]
    if plan.new_widths[0] != plan.widths[0]:
        table, weight, error = fold_time_embedding(timestep_features(original, num_train_timesteps),
                                                   original.time_embedding.linear_1.weight.detach().cpu(),
                                                   plan.new_widths[0])
        config.update(time_embedding_type="learned", num_train_timesteps=num_train_timesteps)
        state["time_proj.weight"] = table
        state["time_embedding.linear_1.weight"] = weight
    else:
        error = 0.0
    model = cls.from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the pruned weights do not fit a UNet2DModel of widths {list(plan.new_widths)}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return model.eval(), error


def _plan_record(plan: WidthPlan, groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"widths": list(plan.widths), "new_widths": list(plan.new_widths), "norm_groups": plan.norm_groups,
            "removed_groups": plan.removed_groups, "channel_sparsity": plan.sparsity, "groups": groups}
