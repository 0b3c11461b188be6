"""Continual learning on scikit-learn's digits: SPP (as released), SPP+ (ours), EWC, MAS, fine-tune, joint.

    .venv/bin/python benchmarks/spp_continual.py            # both streams, 3 seeds (one torch thread)

Streams (8x8 digits, 64 inputs in [0, 1]; per class 60 % train, 20 % validation, 20 % test):
  split     Split-Digits-5, task-incremental: tasks {0,1} {2,3} {4,5} {6,7} {8,9}, a 2-way head each;
            only the shared trunk is anchored (as in SPP's code).
  permuted  Permuted-Digits-5, domain-incremental: all 10 classes, task t applies its own fixed pixel
            permutation (task 0: none); one shared head, anchored with the trunk.
Model: MLP 64-128-128 (ReLU) + head(s); Adam 1e-3, 10 epochs per task, batch 32. After each task
the method scores importance on 256 of that task's training inputs (the same random subset for
every method) and adds it to the running total (sum, as SPP's split/5-dataset scripts). lambda is chosen per method and seed on the validation
split (end-of-stream mean validation accuracy) from LAMBDAS; the test split is read once, at the end.
ACC: mean final test accuracy over tasks. BWT: mean over tasks < 5 of a[5,i] - a[i,i].
Forgetting: mean over tasks < 5 of max_{l<5} a[l,i] - a[5,i].
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scanner.spp import (TrainConfig, accumulate, ewc_importance, mas_importance, spp_importance,  # noqa: E402
                         spp_plus_importance, train_task)

LAMBDAS = (1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4)  # each method's scale differs: MAS's Omega is large
IMPORTANCE_SAMPLES = 256
METHODS = ("fine-tune", "joint", "EWC", "MAS", "SPP", "SPP+")
TASKS = 5


@dataclass
class Task:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


class Net(nn.Module):
    def __init__(self, heads: int, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(128, classes) for _ in range(heads))

    def logits(self, t: int):
        head = self.heads[t if len(self.heads) > 1 else 0]
        return lambda x: head(self.trunk(x))


def make_stream(kind: str, seed: int) -> list[Task]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=0.6, stratify=y, random_state=seed)
    va, te = train_test_split(rest, train_size=0.5, stratify=y[rest], random_state=seed)
    rng = np.random.default_rng(1000 + seed)
    tasks = []
    for t in range(TASKS):
        if kind == "split":
            pair = (2 * t, 2 * t + 1)
            pick = lambda s: s[np.isin(y[s], pair)]  # noqa: E731
            part = lambda s: (torch.from_numpy(x[pick(s)]), torch.from_numpy((y[pick(s)] == pair[1]).astype(np.int64)))  # noqa: E731
        else:
            perm = np.arange(64) if t == 0 else rng.permutation(64)
            part = lambda s, perm=perm: (torch.from_numpy(x[s][:, perm].copy()), torch.from_numpy(y[s]))  # noqa: E731
        tasks.append(Task(train=part(tr), val=part(va), test=part(te)))
    return tasks


def accuracy(net: Net, t: int, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((net.logits(t)(data[0]).argmax(1) == data[1]).float().mean())


def importance(method: str, net: Net, t: int, task: Task, anchored, seed: int):
    pick = torch.randperm(len(task.train[1]), generator=torch.Generator().manual_seed(seed))[:IMPORTANCE_SAMPLES]
    x, y = task.train[0][pick], task.train[1][pick]
    if method == "EWC":
        return ewc_importance(anchored(), net.logits(t), x, y)
    if method == "MAS":
        return mas_importance(anchored(), net.logits(t), x)
    if method == "SPP":  # the released formula: entropy summed over minibatches of 32
        return spp_importance(anchored(), net.logits(t), x.split(32), reduction="sum")
    return spp_plus_importance(anchored(), net.logits(t), x)


def run(kind: str, method: str, lam: float, seed: int, split: str) -> np.ndarray:
    """Accuracy matrix a[l, i] (after task l, on task i) on `split` ("val" or "test")."""
    tasks = make_stream(kind, seed)
    torch.manual_seed(seed)
    net = Net(TASKS if kind == "split" else 1, 2 if kind == "split" else 10)
    cfg = lambda t: TrainConfig(epochs=10, batch=32, lr=1e-3, seed=100 * seed + t)  # noqa: E731
    anchored = lambda: [(n, p) for n, p in net.named_parameters() if n.startswith("trunk.") or kind == "permuted"]  # noqa: E731
    acc = np.zeros((TASKS, TASKS))
    if method == "joint":  # the upper bound: every task's data at once
        train_joint(net, tasks, cfg(0), kind)
        for i in range(TASKS):
            acc[:, i] = accuracy(net, i, getattr(tasks[i], split))
        return acc
    omega = None
    for t, task in enumerate(tasks):
        train_task(net, net.logits(t), *task.train, config=cfg(t), omega=omega, lam=lam)
        for i in range(TASKS):
            acc[t, i] = accuracy(net, i, getattr(tasks[i], split))
        if method != "fine-tune":
            omega = accumulate(omega, importance(method, net, t, task, anchored, 100 * seed + t), mode="sum")
    return acc


def train_joint(net: Net, tasks: list[Task], cfg: TrainConfig, kind: str) -> None:
    x = torch.cat([t.train[0] for t in tasks])
    y = torch.cat([t.train[1] for t in tasks])
    tid = torch.cat([torch.full((len(t.train[1]),), i) for i, t in enumerate(tasks)])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs * 2):  # as many steps per sample as the sequence gives the last task, twice
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch):
            h = net.trunk(x[idx])
            logits = (torch.stack([head(h) for head in net.heads], 1)[torch.arange(len(idx)), tid[idx]]
                      if kind == "split" else net.heads[0](h))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def summary(acc: np.ndarray) -> tuple[float, float, float]:
    final = acc[-1]
    bwt = float(np.mean([final[i] - acc[i, i] for i in range(TASKS - 1)]))
    forget = float(np.mean([acc[:-1, i].max() - final[i] for i in range(TASKS - 1)]))
    return float(final.mean()), bwt, forget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--streams", default="split,permuted")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    for kind in args.streams.split(","):
        print(f"\n## {kind}\n")
        rows, matrices = [], {}
        for method in METHODS:
            results, lams = [], []
            for seed in range(args.seeds):
                grid = LAMBDAS if method not in ("fine-tune", "joint") else (0.0,)
                lam = max(grid, key=lambda g: run(kind, method, g, seed, "val")[-1].mean()) if len(grid) > 1 else 0.0
                lams.append(lam)
                results.append(run(kind, method, lam, seed, "test"))
            matrices[method] = np.mean(results, 0)
            stats = [summary(a) for a in results]
            acc, bwt, fgt = (statistics.mean(s[k] for s in stats) for k in range(3))
            sd = statistics.stdev(s[0] for s in stats) if len(stats) > 1 else 0.0
            rows.append((method, lams, acc, sd, bwt, fgt))
            print(f"  {method}: ACC {acc:.3f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        print("| method | lambda per seed (validation) | ACC (mean ± sd) | BWT | forgetting |")
        print("|---|---|---|---|---|")
        for method, lams, acc, sd, bwt, fgt in rows:
            lam_text = ", ".join(f"{v:g}" for v in lams) if method not in ("fine-tune", "joint") else "-"
            print(f"| {method} | {lam_text} | {acc:.3f} ± {sd:.3f} | {bwt:+.3f} | {fgt:.3f} |")
        for method in METHODS:
            print(f"\n{kind} / {method}: test accuracy after task l (rows) on task i (columns), mean of {args.seeds} seeds")
            for row in matrices[method]:
                print("  " + " ".join(f"{v:.2f}" for v in row))
    print(f"\n{time.perf_counter() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
