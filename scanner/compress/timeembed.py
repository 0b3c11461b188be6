"""A narrower first level changes the timestep features' width: fold them into a learned table.

`UNet2DModel` feeds `time_embedding.linear_1` a `block_out_channels[0]`-wide feature of the
timestep: sinusoids ("positional") or a table ("learned"). Its sinusoids of a narrower width are
not a subset of the wider ones, so after compression the model switches to "learned": a table of
`num_train_timesteps` rows, `new width` columns. Every timestep a sampler can ask for is an integer
in [0, T), so the table and linear_1 are chosen to reproduce linear_1's input projection on all of
them: the best rank-r factorisation (SVD) of A[t] = features(t) @ W1^T,

    A ~= (U_r S_r) V_r^T  ->  table = U_r S_r (T x r),  W1' = V_r (D x r),  bias unchanged.

The relative Frobenius error is reported; it is 0 when r >= rank(A).
"""

from __future__ import annotations

import torch


def timestep_features(unet: torch.nn.Module, num_train_timesteps: int) -> torch.Tensor:
    """(T, block_out_channels[0]): what `time_proj` gives for every integer timestep."""
    kind = unet.config.time_embedding_type
    with torch.no_grad():
        if kind == "learned":
            return unet.time_proj.weight.detach().float().cpu().clone()
        if kind == "positional":
            return unet.time_proj(torch.arange(num_train_timesteps)).float()
    raise ValueError(f"time_embedding_type={kind!r} is not supported")


def fold_time_embedding(features: torch.Tensor, weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(table (T, rank), new linear_1 weight (D, rank), relative error) for features (T, d), weight (D, d)."""
    if not 1 <= rank <= min(features.shape[0], weight.shape[0]):
        raise ValueError(f"rank {rank} out of range for features {tuple(features.shape)} and weight {tuple(weight.shape)}")
    a = features.double() @ weight.double().T  # (T, D)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    table = u[:, :rank] * s[:rank]
    new_weight = vh[:rank].T
    error = float(torch.linalg.norm(a - table @ new_weight.T) / torch.linalg.norm(a).clamp(min=1e-30))
    return table.float(), new_weight.float(), error
