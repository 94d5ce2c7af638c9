"""`run_retrain`: train an architecture from scratch with timm's parts and write a model run.

The paper retrains searched networks without the supernet's weights (DNA, sec. 4). The run
directory holds the model run (`model.pt`, `arch.json`, see `dnatool.nn.model_run`), `manifest.json`,
`checkpoint.pt` (rewritten atomically after every epoch; `resume=True` continues from it, also
after a SIGKILL) and `curves.csv` / `curves.png`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnatool.arch.spec import ArchSpec
from dnatool.config import to_dict
from dnatool.data import set_epoch
from dnatool.errors import BadInput
from dnatool.retrain.curves import write_curves
from dnatool.retrain.data import (
    Loaders,
    build_loaders,
    build_mixup,
    loader_state,
    restore_loader_state,
)
from dnatool.retrain.distill import RetrainLoss, load_teacher
from dnatool.retrain.loop import Trainer, evaluate, train_one_epoch
from dnatool.retrain.recipe import RetrainRecipe
from dnatool.utils import distributed as dist
from dnatool.utils import io, runs
from dnatool.utils.events import Report
from dnatool.utils.locks import locked

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KIND = "retrain-state"


STAGE = runs.Stage("retrain", (CHECKPOINT_FILE, "model.pt"), "a retrain run")


def _inputs(recipe: RetrainRecipe) -> dict[str, Path]:
    """What a retrain reads (its data, a teacher's weights); files are hashed and checked on resume."""
    found = {}
    for role, name in {"data": recipe.data, "teacher": recipe.teacher}.items():
        path = Path(name) if name else None
        if path is not None and path.is_dir() and (path / "model.pt").is_file():
            path = path / "model.pt"  # a teacher given as a model run
        if path is not None:
            found[role] = path  # a built-in data set is recorded by name; files are hashed
    return found


def _silent(event: str, **fields: Any) -> None:
    return None


@locked("out")  # one writer per model run directory
def run_retrain(
    arch: ArchSpec,
    recipe: RetrainRecipe,
    out: str | Path,
    report: Report = _silent,
    resume: bool = False,
) -> dict[str, Any]:
    """Retrain `arch` on `recipe.data`; returns the metrics (top1 / top5 in percent, epochs, ...).

    The arch's class count and resolution follow the data and the recipe; under `torchrun` every
    process trains its shard and rank 0 writes the files.
    """
    out = Path(out)
    STAGE.open(out, recipe, _inputs(recipe), resume)
    if resume and runs.is_finished(out) and (out / "model.pt").is_file():
        metrics = _recorded(out)
        done, wanted = metrics["epochs"], recipe.stop_after or recipe.epochs
        if done == wanted:
            report("log", message=f"{out} finished {done}/{wanted} epochs already, reused")
            return metrics
        if done > wanted:
            raise BadInput(f"{out} has trained {done} epochs already, more than {wanted}")
        # a run stopped by stop_after continues from its last checkpoint
    info = dist.setup()
    report = report if info.is_main else _silent
    try:
        return _retrain(arch, recipe, out, report, resume, info)
    finally:
        dist.teardown(info)


def _recorded(out: Path) -> dict[str, Any]:
    """A finished run's metrics as it recorded them: resuming it again rewrites nothing, so the
    model file keeps its bytes (runs that took it as their teacher check its sha256)."""
    metrics = io.load_checkpoint(out / "model.pt", "model")["metrics"]
    return {**metrics, "run": str(out), "rank": 0}


def _retrain(
    arch: ArchSpec,
    recipe: RetrainRecipe,
    out: Path,
    report: Report,
    resume: bool,
    info: dist.ProcessInfo,
) -> dict[str, Any]:
    from timm.utils import random_seed

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    random_seed(recipe.seed, info.rank)  # torch's, numpy's (timm's Mixup) and Python's
    resolution = recipe.resolution or arch.resolution
    loaders = build_loaders(recipe, resolution, info.rank, info.world)
    arch = arch.replace(num_classes=loaders.splits.num_classes, resolution=resolution)
    model, trainer = _build_trainer(arch, recipe, loaders, info)
    start, rows = 0, []
    state_path = out / CHECKPOINT_FILE
    if resume and state_path.is_file():
        start, rows = _restore(state_path, arch, recipe, model, trainer, loaders)
        report("log", message=f"resuming {out} after epoch {start}/{recipe.epochs}")
    if info.is_main:
        STAGE.start(out, {**to_dict(recipe), "arch": arch.to_dict()}, _inputs(recipe))
    _train_epochs(model, trainer, loaders, recipe, out, report, start, rows, arch)
    return _finish(out, model, trainer, arch, recipe, loaders, rows, info)


def initial_weights(arch: ArchSpec, recipe: RetrainRecipe, rank: int = 0) -> dict[str, Any]:
    """The weights a run starts from under `recipe.init_seed` (`seed`'s own when None), drawn
    without moving the process's generator, so everything else the run draws stays `seed`'s."""
    from dnatool.nn.timm_adapter import build_model

    state = torch.get_rng_state()
    try:
        torch.manual_seed((recipe.seed if recipe.init_seed is None else recipe.init_seed) + rank)
        twin = build_model(arch, drop_rate=recipe.drop_rate, drop_path_rate=recipe.drop_path_rate)
    finally:
        torch.set_rng_state(state)
    return twin.state_dict()


def _build_trainer(
    arch: ArchSpec, recipe: RetrainRecipe, loaders: Loaders, info: dist.ProcessInfo
) -> tuple[nn.Module, Trainer]:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    from dnatool.nn.timm_adapter import build_model

    cuda = info.device.type == "cuda"
    model = build_model(arch, drop_rate=recipe.drop_rate, drop_path_rate=recipe.drop_path_rate)
    if recipe.init_seed is not None:
        model.load_state_dict(initial_weights(arch, recipe, info.rank))
    if recipe.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = recipe.bn_momentum
    # NHWC on any device the recipe asks it for: oneDNN's CPU kernels train this repo's MBConv
    # networks 1.6x faster in it (docs/ranking.md), as cuDNN's do on GPUs.
    channels_last = recipe.channels_last
    model = model.to(
        info.device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    ema = (
        ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup)
        if recipe.model_ema
        else None
    )
    global_batch = loaders.train.batch_size * info.world
    optimizer = create_optimizer_v2(
        model,
        recipe.opt,
        lr=recipe.scaled_lr(global_batch),
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        eps=recipe.opt_eps,
    )
    scheduler, _ = create_scheduler_v2(
        optimizer,
        recipe.sched,
        num_epochs=recipe.epochs,
        decay_epochs=recipe.decay_epochs,
        decay_rate=recipe.decay_rate,
        min_lr=recipe.min_lr,
        warmup_lr=recipe.warmup_lr,
        warmup_epochs=recipe.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=len(loaders.train),
    )
    teacher = _teacher(recipe, arch, info) if recipe.teacher else None
    scaler = torch.amp.GradScaler("cuda") if recipe.amp and cuda else None
    trained = dist.wrap(model, info)
    if recipe.compile:  # the training step only: evaluation and checkpoints use the plain module
        trained = torch.compile(trained, mode=recipe.compile)
    trainer = Trainer(
        trained,
        RetrainLoss(recipe, teacher),
        optimizer,
        scheduler,
        info,
        ema=ema,
        mixup=build_mixup(recipe, arch.num_classes),
        scaler=scaler,
        clip_grad=recipe.clip_grad,
        channels_last=channels_last,
    )
    return model, trainer


def _teacher(recipe: RetrainRecipe, arch: ArchSpec, info: dist.ProcessInfo) -> nn.Module:
    """Loaded without touching the seeded generators (building a model draws from them), so
    a teacher with `kd_alpha` 0 trains exactly the network trained without one."""
    cuda = [info.device] if info.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return load_teacher(recipe.teacher or "", arch.num_classes, info.device)


def _train_epochs(
    model: nn.Module,
    trainer: Trainer,
    loaders: Loaders,
    recipe: RetrainRecipe,
    out: Path,
    report: Report,
    start: int,
    rows: list[dict[str, Any]],
    arch: ArchSpec,
) -> None:
    per_epoch = len(loaders.train)
    last = recipe.stop_after or recipe.epochs
    report("start", task="retrain", total=last * per_epoch, done=start * per_epoch)
    for epoch in range(start, last):
        if loaders.sampler is not None:
            loaders.sampler.set_epoch(epoch)
        set_epoch(loaders.splits.train, epoch)
        began = time.perf_counter()

        def step(loss: float, lr: float, epoch: int = epoch) -> None:
            report(
                "advance", task="retrain", status=f"epoch {epoch + 1} loss {loss:.3f} lr {lr:.2g}"
            )

        train_loss = train_one_epoch(trainer, loaders.train, epoch, step)
        row = {
            "epoch": epoch + 1,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            **_validate(model, trainer, loaders),
            "seconds": time.perf_counter() - began,
        }
        rows.append(row)
        if trainer.info.is_main:
            _save_state(out, arch, recipe, model, trainer, loaders, rows)
            write_curves(out, rows)
        dist.barrier(trainer.info)
        report("log", message=_epoch_line(row, recipe.epochs))


def _validate(model: nn.Module, trainer: Trainer, loaders: Loaders) -> dict[str, Any]:
    """The raw model's figures, and the EMA's top-1 when there is an EMA (the reported model)."""
    figures = evaluate(model, loaders.val, trainer.info, trainer.channels_last, trainer.amp)
    figures["ema_top1"] = None
    if trainer.ema is not None:
        ema = evaluate(
            trainer.ema.module, loaders.val, trainer.info, trainer.channels_last, trainer.amp
        )
        figures.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_val_loss=ema["val_loss"])
    return figures


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    ema = f"  EMA top-1 {row['ema_top1']:.2f}%" if row.get("ema_top1") is not None else ""
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
        f"top-1 {row['top1']:.2f}%  top-5 {row['top5']:.2f}%{ema}  ({row['seconds']:.1f}s)"
    )


def _save_state(
    out: Path,
    arch: ArchSpec,
    recipe: RetrainRecipe,
    model: nn.Module,
    trainer: Trainer,
    loaders: Loaders,
    rows: list[dict[str, Any]],
) -> None:
    """Everything needed to continue after this epoch as if never stopped, in one atomic file."""
    payload = {
        "epoch": rows[-1]["epoch"],
        "rows": rows,
        "arch": arch.to_dict(),
        "recipe": to_dict(recipe),
        "model": model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "loader_rng": loader_state(loaders),
        "ema": trainer.ema.module.state_dict() if trainer.ema is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
    }
    io.save_checkpoint(out / CHECKPOINT_FILE, CHECKPOINT_KIND, payload)


def _restore(
    path: Path,
    arch: ArchSpec,
    recipe: RetrainRecipe,
    model: nn.Module,
    trainer: Trainer,
    loaders: Loaders,
) -> tuple[int, list[dict[str, Any]]]:
    from timm.utils import random_seed

    state = io.load_checkpoint(path, CHECKPOINT_KIND)
    if state["arch"] != arch.to_dict():
        raise BadInput(f"{path} was written for another architecture; use another --out")
    model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.ema is not None and state["ema"] is not None:
        trainer.ema.module.load_state_dict(state["ema"])
    if trainer.scaler is not None and state["scaler"] is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    if trainer.info.is_main:
        torch.set_rng_state(state["rng"])
    else:  # the checkpoint holds rank 0's generator; other ranks keep their own streams
        random_seed(recipe.seed + 1000 * int(state["epoch"]), trainer.info.rank)
    restore_loader_state(loaders, state["loader_rng"])
    return int(state["epoch"]), list(state["rows"])


def _finish(
    out: Path,
    model: nn.Module,
    trainer: Trainer,
    arch: ArchSpec,
    recipe: RetrainRecipe,
    loaders: Loaders,
    rows: list[dict[str, Any]],
    info: dist.ProcessInfo,
) -> dict[str, Any]:
    """Write the model run: the EMA weights when the recipe keeps an EMA (what the paper reports)."""
    from dnatool.nn.model_run import save_model_run
    from dnatool.nn.timm_adapter import count_params

    last = rows[-1]
    use_ema = trainer.ema is not None
    final = trainer.ema.module if use_ema else model
    metrics = {
        "top1": last["ema_top1"] if use_ema else last["top1"],
        "top5": last["ema_top5"] if use_ema else last["top5"],
        "val_loss": last["ema_val_loss"] if use_ema else last["val_loss"],
        "raw_top1": last["top1"],
        "ema": use_ema,
        "epochs": last["epoch"],
        "params": count_params(final),
        "resolution": arch.resolution,
        "data": recipe.data,
        "val_images": len(loaders.splits.val),
        "train_seconds": sum(r["seconds"] for r in rows),
        "teacher": recipe.teacher,
        "world_size": info.world,
        "device": info.device.type,
        "amp": trainer.amp,
        "channels_last": trainer.channels_last,
        "compile": recipe.compile,
    }
    if info.is_main:
        save_model_run(out, final, arch, loaders.splits.preprocess, metrics)
        outputs = ["model.pt", "arch.json", CHECKPOINT_FILE, *write_curves(out, rows)]
        runs.finish_run(out, outputs, {k: metrics[k] for k in ("top1", "top5", "epochs", "params")})
    dist.barrier(info)
    return {**metrics, "run": str(out), "rank": info.rank}
