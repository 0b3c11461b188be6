"""Short repair fine-tune: Diff-Cleanse's dual loss on the model's own samples, plus an unlearning term.

No clean training set is needed: the clean images x0 are the *original* model's own samples
(plain DDIM from plain noise; the backdoor does not fire there). Per step:

    denoise  = ||eps_theta(x_t) - eps||^2                  x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t uniform
    distill  = ||eps_theta(x_t) - eps_orig(x_t)||^2        the original, unpruned model as teacher
    unlearn  = ||eps_theta(x~_t) - eps_orig(x_t) - (x~_t - x_t) / sqrt(1 - ab_t)||^2,   t >= unlearn_from * T
               (by default only the part along eps_orig(x~_t) minus that target: see `unlearn_across` below)

where x~_t is the same point moved along the *inverted* backdoor chain (scanner/sampling/chain.py:
x~_t = sqrt(ab_t) x0 + c_t m + sqrt(1 - ab_t) gamma eps). The unlearning target is what a
clean model does with an unexpected shift: it passes it through as noise. The first two
terms are Diff-Cleanse's dual loss; the third is ours and uses only the scan's trigger.
With `anchor` (default) the distillation also covers the clean twin x_t of every unlearning
input (same x0, noise and t), so the pair pins down the *difference* the shift makes and leaves
the clean response where the teacher has it. With `ema` (default 0.95) the fine-tune ends on an
exponential moving average of its weights, not on its last noisy step. Over 3 seeds on two
benchmark and four fixture models the two together cut the Frechet change and its spread across
seeds (docs/repair.md, "Seeds, and the anchored, averaged fine-tune"); the anchor costs the student
one more batch per unlearning step.

With `unlearn_across` = 0 (default) the unlearning residual counts only along the backdoor's direction:
per input, the direction in which the teacher's own answer departs from the pass-through target. The
student may answer a shifted input in any other way; it may not move towards what the backdoor does.
The pass-through target is only a guess at a clean model's answer, and forcing all of it rewrote the
clean function: over 200 steps the full residual (`unlearn_across = 1`) cost bd-box10 +92 % in Frechet
distance against +47 % along the direction, vd-box8 +62 % against +16 % (docs/repair.md, sixth run).
Along the direction, 400 steps (the default) kept vd-box10's backdoor silent where the whole residual
let it back. It costs the teacher one more batch per step. Along the direction the term needs less weight
than the whole residual did: at 0.3 (the default) bd-box10 lost +7 % where 1.0 lost +23 %, vd-box8 +10 %
against +13 %, bd-box12 +10 % against +15 %, all three silent (docs/repair.md, seventh run). Those are repair
seed 0; on seeds 1 and 2 the same defaults cost bd-box10 +18 % and +24 % (eighth run).

Defaults come from trials on two benchmark models (docs/repair.md): distillation alone lets a
VillanDiffusion backdoor come back (true-trigger ASR 0.78 after pruning had cut it), unlearning
at every t costs quality, and the denoising term on self-generated samples costs quality too,
so it is off (weight 0) by default. Pruned channels are re-zeroed after every optimiser step.

The trojan chain (TrojDiff) is fine-tuned in stages (`distill_first`): distillation alone, then the
inverted trigger's ASR, and the unlearning stint only if it still fires. On TrojDiff's under-noised
chain the pass-through target is a poor picture of a clean model, and unlearning moved the samples
far from the original's (per-pixel MSE 0.08 against 0.02 with distillation alone on tj-checker6),
while pruning plus distillation already silenced the trigger. On the shift chain the backdoor
came back under distillation alone (VillanDiffusion ASR 0.6 to 0.9; BadDiffusion bd-box12 0.09,
which the inverted trigger did not see), so there unlearning always runs. Trials: docs/repair.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from scanner.detect.target import chain_arguments
from scanner.repair.channels import Channel, zero_channels
from scanner.sampling import NoiseSchedule
from scanner.sampling.chain import CHAINS, chain_coefficients


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    steps: int = 400
    batch: int = 16
    lr: float = 5e-4
    unlearn_weight: float = 0.3  # along the backdoor's direction (docs/repair.md, seventh run)
    denoise_weight: float = 0.0  # Diff-Cleanse's denoising term; on self-generated samples it cost quality (docs/repair.md)
    unlearn_from: float = 0.5  # unlearning only at t >= unlearn_from * T, where the trigger dominates
    cosine: bool = False  # decay the learning rate to 0 over the steps (scanner/compress/recover.py does)
    distill_first: tuple[str, ...] = ("trojan",)  # chains whose fine-tune distils first and unlearns only if still needed
    unlearn_above: float = 0.05  # distill_first: the inverted-trigger ASR after distilling that starts the unlearning stint
    ema: float = 0.95  # > 0: end on a moving average of the weights, decay min(ema, k / (k + 1)) at step k
    anchor: bool = True  # also distil on the clean twins of the unlearning inputs (same x0, noise and t)
    unlearn_across: float = 0.0  # weight of the unlearning residual across the teacher's backdoor direction (1: all of it)

    def unlearning_step_evals(self) -> int:
        """UNet evaluations of one step with the unlearning term: the teacher on 2 batches (3 when
        directed), the student on 2 (3 when anchored)."""
        return (4 + int(self.anchor) + int(self.unlearn_across < 1.0)) * self.batch

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1:
            raise ValueError(f"need steps >= 0 and batch >= 1, got {self.steps}, {self.batch}")
        if self.lr <= 0 or min(self.unlearn_weight, self.denoise_weight) < 0:
            raise ValueError(f"need lr > 0 and weights >= 0, got {self.lr}, {self.unlearn_weight}, {self.denoise_weight}")
        object.__setattr__(self, "distill_first", tuple(self.distill_first))  # a TOML list
        if not set(self.distill_first) <= set(CHAINS):
            raise ValueError(f"`distill_first` must name chains among {list(CHAINS)}, got {list(self.distill_first)}")
        if not 0.0 <= self.unlearn_above < 1.0:
            raise ValueError(f"`unlearn_above` must be in [0, 1), got {self.unlearn_above}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"`ema` must be in [0, 1), got {self.ema}")
        if not 0.0 <= self.unlearn_across <= 1.0:
            raise ValueError(f"`unlearn_across` must be in [0, 1], got {self.unlearn_across}")
        if not 0.0 <= self.unlearn_from < 1.0:
            raise ValueError(f"`unlearn_from` must be in [0, 1), got {self.unlearn_from}")


def finetune(unet: torch.nn.Module, teacher: torch.nn.Module, schedule: NoiseSchedule, clean: torch.Tensor, *,
             hypothesis: str, trigger: torch.Tensor, gamma: float, pruned: list[Channel], config: FinetuneConfig,
             generator: torch.Generator) -> dict[str, float]:
    """Fine-tune the pruned `unet` in place on `clean` images (N, C, H, W), distilling from `teacher` (the
    original, unpruned model); returns UNet evaluations and final losses."""
    if config.steps == 0:
        return {"unet_evals": 0.0, "backward_evals": 0.0}
    device = next(unet.parameters()).device
    args = chain_arguments(hypothesis, trigger.to(device), gamma)
    kappa = args.get("kappa", 1.0)
    T = schedule.num_timesteps
    coeff = torch.stack([chain_coefficients(schedule, t, args["chain"], kappa)[0] for t in range(T)]).to(device)
    unet.train().requires_grad_(True)
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps) if config.cosine else None
    n, evals, backward = config.batch, 0, 0
    average = [p.detach().clone() for p in unet.parameters()] if config.ema else None
    low = int(config.unlearn_from * T)
    directed = config.unlearn_across < 1.0 and config.unlearn_weight > 0
    for step in range(config.steps):
        x0 = clean[torch.randint(0, len(clean), (2 * n,), generator=generator)].to(device)
        t = torch.cat([torch.randint(0, T, (n,), generator=generator), torch.randint(low, T, (n,), generator=generator)])
        ab = schedule.alpha_bar(t).to(device).view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x_clean = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # (2n, C, H, W): n for the dual loss, n for unlearning
        x_trig = x_clean[n:] + coeff[t[n:]].view(-1, 1, 1, 1) * args["shift"] + (1 - ab[n:]).sqrt() * (args["gamma"] - 1) * eps[n:]
        t = t.to(device)
        taught = torch.cat([x_clean, x_trig]) if directed else x_clean  # directed: the teacher's own shifted answers too
        with torch.no_grad():
            teach = teacher(taught, torch.cat([t, t[n:]])[:len(taught)]).sample
        anchored = config.anchor and config.unlearn_weight > 0
        inputs = [x_clean if anchored else x_clean[:n], x_trig]
        out = unet(torch.cat(inputs), torch.cat([t, t[n:]]) if anchored else t).sample
        clean_out, trig_out = out[:len(inputs[0])], out[len(inputs[0]):]
        evals, backward = evals + len(teach) + len(out), backward + len(out)  # teacher 2n or 3n; student 2n or 3n
        denoise = (clean_out[:n] - eps[:n]).pow(2).mean()
        distill = (clean_out - teach[:len(clean_out)]).pow(2).mean()
        passed = teach[n:2 * n] + (x_trig - x_clean[n:]) / (1 - ab[n:]).sqrt()  # a clean model's answer: the shift as noise
        unlearn = _unlearn_loss(trig_out - passed, teach[2 * n:] - passed if directed else None, config.unlearn_across)
        loss = config.denoise_weight * denoise + distill + config.unlearn_weight * unlearn
        opt.zero_grad()
        loss.backward()
        opt.step()
        if decay is not None:
            decay.step()
        zero_channels(pruned)
        if average is not None:
            with torch.no_grad():
                keep = min(config.ema, step / (step + 1))  # a plain mean until `ema`: short runs keep their steps
                for a, p in zip(average, unet.parameters()):
                    a.lerp_(p, 1.0 - keep)
    if average is not None:
        with torch.no_grad():
            for p, a in zip(unet.parameters(), average):
                p.copy_(a)
    unet.eval().requires_grad_(False)
    return {"unet_evals": float(evals), "backward_evals": float(backward),
            "denoise": float(denoise.detach()), "distill": float(distill.detach()), "unlearn": float(unlearn.detach())}


def _unlearn_loss(residual: torch.Tensor, backdoor: torch.Tensor | None, across: float) -> torch.Tensor:
    """Mean squared `residual` (student minus pass-through target). With `backdoor` (the teacher's own
    departure from that target), its part along the backdoor's direction counts fully and the rest by `across`."""
    if backdoor is None:
        return residual.pow(2).mean()
    r, u = residual.flatten(1), torch.nn.functional.normalize(backdoor.flatten(1), dim=1)
    along = (r * u).sum(1).pow(2)
    return (along + across * (r.pow(2).sum(1) - along)).mean() / r.shape[1]


def staged_finetune(unet: torch.nn.Module, teacher: torch.nn.Module, schedule: NoiseSchedule, clean: torch.Tensor, *,
                    asr: Callable[[], tuple[float, int]], config: FinetuneConfig, **chain) -> dict[str, float]:
    """The repair's fine-tune. For a hypothesis whose chain is not in `distill_first`: one stint with every
    term. For one that is: a distillation-only stint, then `asr()` (the inverted trigger's ASR estimate and
    the UNet evaluations it spent), and only if that is above `unlearn_above` a second stint with the
    unlearning term. `chain` are `finetune`'s other keywords, the hypothesis among them."""
    staged = chain_arguments(chain["hypothesis"], chain["trigger"], chain["gamma"])["chain"] in config.distill_first
    if not staged or config.steps == 0 or config.unlearn_weight == 0:
        return {**finetune(unet, teacher, schedule, clean, config=config, **chain), "stints": 1.0}
    first = finetune(unet, teacher, schedule, clean, config=replace(config, unlearn_weight=0.0), **chain)
    rate, evals = asr()
    if rate <= config.unlearn_above:
        return {**first, "unet_evals": first["unet_evals"] + evals, "stints": 1.0, "asr_distilled": rate}
    second = finetune(unet, teacher, schedule, clean, config=config, **chain)
    return {**second, "unet_evals": first["unet_evals"] + evals + second["unet_evals"],
            "backward_evals": first["backward_evals"] + second["backward_evals"], "stints": 2.0, "asr_distilled": rate}
