"""`run_retrain` on the built-in digits: accuracy, saved files, exact resume, distillation (issue 6)."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.retrain.recipe import RetrainRecipe, load_retrain_recipe

STATED_TOP1 = 90.0  # recipes/retrain-tiny.yaml promises this on the digits validation split


def tiny_arch(seed: int = 0):
    space = load_space("tiny")
    return space.to_arch(space.sample(np.random.default_rng(seed)), name=f"random{seed}")


def two_epoch_recipe() -> RetrainRecipe:
    return dataclasses.replace(load_retrain_recipe("retrain-tiny"), epochs=2)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Two epochs of the tiny recipe (a few seconds): files, reload, resume and KD use it."""
    from dnatool.retrain.train import run_retrain

    out = tmp_path_factory.mktemp("retrain") / "run"
    events = []
    metrics = run_retrain(
        tiny_arch(1),
        two_epoch_recipe(),
        out,
        report=lambda event, **fields: events.append((event, fields)),
    )
    return out, metrics, events


@pytest.mark.slow
def test_tiny_recipe_reaches_stated_accuracy(tmp_path):
    """The demo's retrain: a random `tiny` net, the shipped recipe (about 20-50 s on one CPU)."""
    from dnatool.retrain.train import run_retrain

    metrics = run_retrain(tiny_arch(0), load_retrain_recipe("retrain-tiny"), tmp_path / "run")
    assert metrics["top1"] >= STATED_TOP1, metrics
    assert metrics["epochs"] == load_retrain_recipe("retrain-tiny").epochs
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100


def test_model_run_reloads_and_reproduces_its_top1(short_run):
    """The saved weights are the reported model: re-evaluating them gives the same top-1."""
    from dnatool.data.datasets import load_splits
    from dnatool.nn.model_run import load_model

    out, metrics, _ = short_run
    loaded = load_model(out)
    assert loaded.trained and loaded.arch.num_classes == 10 and loaded.arch.resolution == 32
    assert loaded.preprocess["resolution"] == 32 and len(loaded.preprocess["mean"]) == 3
    splits = load_splits("digits", 32, augment=False)
    images = torch.stack([splits.val[i][0] for i in range(len(splits.val))])
    labels = torch.tensor([splits.val[i][1] for i in range(len(splits.val))])
    with torch.no_grad():
        predicted = loaded.model.eval()(images).argmax(-1)
    assert int((predicted == labels).sum()) == round(metrics["top1"] * len(labels) / 100)


def test_run_files_manifest_and_curves(short_run):
    from dnatool.utils import io, runs

    out, metrics, events = short_run
    manifest = runs.read_manifest(out)
    assert manifest["stage"] == "retrain" and manifest["finished"]
    assert manifest["results"]["top1"] == metrics["top1"]
    assert metrics["amp"] is False and metrics["channels_last"] is False  # the tiny recipe's
    assert {"model.pt", "arch.json", "checkpoint.pt", "curves.csv", "curves.png"} <= set(
        manifest["outputs"]
    )
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs"] + 1))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert io.load_checkpoint(out / "checkpoint.pt", "retrain-state")["epoch"] == metrics["epochs"]
    assert ("start", {"task": "retrain", "total": events[0][1]["total"], "done": 0}) == events[0]
    assert sum(1 for e, _ in events if e == "advance") == events[0][1]["total"]


class Interrupt(Exception):
    pass


def _stop_after_first_epoch(event, **fields):
    if event == "log" and fields["message"].startswith("epoch 1/"):
        raise Interrupt


def test_interrupted_run_resumes_to_the_same_weights(short_run, tmp_path):
    """Stopped after epoch 1 and resumed, a run ends bit-identical to one never stopped."""
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    recipe, arch = two_epoch_recipe(), tiny_arch(1)
    straight_dir, straight, _ = short_run
    with pytest.raises(Interrupt):
        run_retrain(arch, recipe, tmp_path / "b", report=_stop_after_first_epoch)
    assert not (tmp_path / "b" / "model.pt").exists()
    with pytest.raises(BadInput, match="--resume"):
        run_retrain(arch, recipe, tmp_path / "b")
    resumed = run_retrain(arch, recipe, tmp_path / "b", resume=True)
    assert resumed["epochs"] == straight["epochs"] == 2
    assert resumed["top1"] == straight["top1"] and resumed["val_loss"] == straight["val_loss"]
    a = io.load_checkpoint(straight_dir / "model.pt", "model")["state_dict"]
    b = io.load_checkpoint(tmp_path / "b" / "model.pt", "model")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(BadInput, match="different recipe"):
        run_retrain(arch, dataclasses.replace(recipe, lr=0.01), tmp_path / "b", resume=True)
    # resuming a finished run rewrites nothing (runs distilled from it check its sha256) and
    # returns what it recorded; the compile mode is an execution detail a resume may change
    digest = io.file_sha256(tmp_path / "b" / "model.pt")
    again = run_retrain(
        arch, dataclasses.replace(recipe, compile="default"), tmp_path / "b", resume=True
    )
    assert io.file_sha256(tmp_path / "b" / "model.pt") == digest
    assert {k: again[k] for k in resumed if k != "run"} == {
        k: resumed[k] for k in resumed if k != "run"
    }


def test_stop_after_trains_the_start_of_the_full_schedule_and_resumes_to_its_end(tmp_path):
    """`stop_after=1` of a 2-epoch cosine recipe is the first epoch of that schedule (its
    learning rate half-way down, not decayed to zero as a 1-epoch schedule's would be); resumed
    without it, the run ends bit-identical to one never stopped; asked to stop earlier than it
    already has, it is refused in one line."""
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    recipe = dataclasses.replace(two_epoch_recipe(), sched="cosine", warmup_epochs=0)
    arch = tiny_arch(1)
    straight = run_retrain(arch, recipe, tmp_path / "a")
    pilot = run_retrain(arch, dataclasses.replace(recipe, stop_after=1), tmp_path / "p")
    rows = [list(csv.DictReader((tmp_path / d / "curves.csv").open())) for d in ("a", "p")]
    assert pilot["epochs"] == 1 and len(rows[1]) == 1
    assert rows[1][0] == {**rows[0][0], "seconds": rows[1][0]["seconds"]}
    assert float(rows[1][0]["lr"]) == pytest.approx(recipe.lr / 2, rel=0.05)
    resumed = run_retrain(arch, recipe, tmp_path / "p", resume=True)
    assert resumed["epochs"] == 2 and resumed["top1"] == straight["top1"]
    a = io.load_checkpoint(tmp_path / "a" / "model.pt", "model")["state_dict"]
    b = io.load_checkpoint(tmp_path / "p" / "model.pt", "model")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(BadInput, match="has trained 2 epochs already, more than 1"):
        run_retrain(arch, dataclasses.replace(recipe, stop_after=1), tmp_path / "p", resume=True)


def test_init_seed_changes_the_initial_weights_and_nothing_else(tmp_path):
    """`init_seed` draws the starting weights as `seed=init_seed` would and leaves everything
    else `seed`'s: a run with init_seed equal to its seed is the plain run, bit for bit; one with
    another init_seed starts from that seed's weights and ends elsewhere."""
    from dnatool.nn.timm_adapter import build_model
    from dnatool.retrain.train import initial_weights, run_retrain
    from dnatool.utils import io

    recipe = dataclasses.replace(two_epoch_recipe(), epochs=1)
    arch = tiny_arch(2).replace(num_classes=10)
    torch.manual_seed(1)
    seed1 = build_model(arch, drop_rate=recipe.drop_rate).state_dict()
    torch.manual_seed(7)
    before = torch.get_rng_state()
    drawn = initial_weights(arch, dataclasses.replace(recipe, init_seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(seed1[k], drawn[k]) for k in seed1)

    plain = run_retrain(tiny_arch(2), recipe, tmp_path / "plain")
    same = run_retrain(tiny_arch(2), dataclasses.replace(recipe, init_seed=0), tmp_path / "same")
    run_retrain(tiny_arch(2), dataclasses.replace(recipe, init_seed=1), tmp_path / "other")
    weights = {
        name: io.load_checkpoint(tmp_path / name / "model.pt", "model")["state_dict"]
        for name in ("plain", "same", "other")
    }
    assert same["top1"] == plain["top1"]
    assert all(torch.equal(weights["plain"][k], weights["same"][k]) for k in weights["plain"])
    assert not all(torch.equal(weights["plain"][k], weights["other"][k]) for k in weights["plain"])


def test_distillation_from_a_model_run(short_run, tmp_path):
    from dnatool.retrain.distill import RetrainLoss, kd_loss, load_teacher

    teacher_dir = short_run[0]
    logits = torch.randn(4, 10)
    assert float(kd_loss(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(logits, torch.randn(4, 10), 2.0)) > 0
    teacher = load_teacher(str(teacher_dir), 10, torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    recipe = dataclasses.replace(
        load_retrain_recipe("retrain-tiny"), teacher=str(teacher_dir), kd_alpha=1.0
    )
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    with torch.no_grad():
        pure_kd = RetrainLoss(recipe, teacher)(images, teacher(images), targets)
    assert float(pure_kd) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(BadInput, match="classes"):
        load_teacher(str(teacher_dir), 5, torch.device("cpu"))
    with pytest.raises(BadInput, match="timm model name"):
        load_teacher("no_such_timm_model_xyz", 10, torch.device("cpu"))


def test_distillation_changes_training_and_alpha_zero_does_not(short_run, tmp_path):
    """Same seed, one epoch: the KD term moves the weights; with kd_alpha 0 the teacher is inert."""
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    teacher = str(short_run[0])
    base = dataclasses.replace(load_retrain_recipe("retrain-tiny"), epochs=1)
    runs = {
        "plain": base,
        "kd": dataclasses.replace(base, teacher=teacher, kd_alpha=0.5, kd_temperature=2.0),
        "alpha0": dataclasses.replace(base, teacher=teacher, kd_alpha=0.0),
    }
    weights, metrics = {}, {}
    for name, recipe in runs.items():
        metrics[name] = run_retrain(tiny_arch(2), recipe, tmp_path / name)
        weights[name] = io.load_checkpoint(tmp_path / name / "model.pt", "model")["state_dict"]
    assert metrics["kd"]["teacher"] == teacher and metrics["plain"]["teacher"] is None
    assert all(torch.equal(weights["alpha0"][k], weights["plain"][k]) for k in weights["plain"])
    assert not all(torch.equal(weights["kd"][k], weights["plain"][k]) for k in weights["plain"])


def test_recipes_load_and_scale_the_learning_rate():
    paper = load_retrain_recipe("retrain-imagenet")
    assert paper.opt == "rmsproptf" and paper.decay_epochs == 2.4 and paper.decay_rate == 0.97
    assert (
        paper.ema_decay == 0.9999 and paper.label_smoothing == 0.1 and paper.drop_path_rate == 0.2
    )
    assert paper.epochs == 350 and paper.auto_augment.startswith("rand")
    assert paper.scaled_lr(4096) == pytest.approx(0.256)
    assert paper.scaled_lr(8 * 128) == pytest.approx(0.064)
    assert load_retrain_recipe("retrain-imagenet", ("lr=0.1",)).scaled_lr(64) == 0.1


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size=3", "even"),
        ("opt=adamx", "unknown opt"),
        ("epochs=0", "epochs"),
        ("lr_bse=1", "did you mean 'lr_base'"),
        ("kd_alpha=2", "kd_alpha"),
        ("stop_after=9", "stop_after must be between 1 and epochs"),
        ("lr=fast", "recipe key 'lr' must be a number, got 'fast'"),
        ("epochs=[3", "is not valid YAML"),
    ],
)
def test_bad_recipe_values_are_bad_input(override, message):
    with pytest.raises(BadInput, match=message):
        load_retrain_recipe("retrain-tiny", (override,))


def test_a_float_key_takes_the_exponent_form_yaml_reads_as_a_string():
    assert load_retrain_recipe("retrain-tiny", ("lr=1e-3", "min_lr=0")).lr == 0.001


def test_imagenet_recipe_drives_the_papers_optimizer_and_schedule():
    """recipes/retrain-imagenet.yaml as timm builds it: TF RMSprop, 0.256 per 4096, x0.97 / 2.4 ep."""
    from timm.optim import RMSpropTF

    from dnatool.config import RECIPES_DIR
    from dnatool.retrain.train import _build_trainer
    from dnatool.utils.distributed import ProcessInfo

    recipe = load_retrain_recipe(str(RECIPES_DIR / "retrain-imagenet.yaml"), ("warmup_epochs=0",))
    loaders = type("Loaders", (), {"train": _Batches(batch_size=4096, batches=100)})()
    arch = tiny_arch(0).replace(num_classes=10)
    _, trainer = _build_trainer(arch, recipe, loaders, ProcessInfo(0, 1, 0, torch.device("cpu")))
    assert isinstance(trainer.optimizer, RMSpropTF) and trainer.ema is not None
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.256)  # one global batch of 4096 images
    assert (group["alpha"], group["momentum"], group["eps"]) == (0.9, 0.9, 1e-3)
    assert trainer.ema.decay == 0.9999 and recipe.epochs == 350
    for update, expected in ((239, 0.256), (240, 0.256 * 0.97), (480, 0.256 * 0.97**2)):
        trainer.scheduler.step_update(num_updates=update)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


class _Batches(list):
    """Stands in for a DataLoader where only its batch size and length matter."""

    def __init__(self, batch_size: int, batches: int) -> None:
        super().__init__(range(batches))
        self.batch_size = batch_size


def _image_folder(root, per_class=14, size=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 4)):
        for label, channel in (("red", 0), ("blue", 2)):
            (root / split / label).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                pixels[..., channel] += 160
                Image.fromarray(pixels).save(root / split / label / f"{index}.png")
    return root


def test_image_folder_with_randaugment_mixup_and_cutmix(tmp_path):
    from timm.data.auto_augment import RandAugment

    from dnatool.nn.model_run import load_model
    from dnatool.retrain.data import build_loaders, build_mixup
    from dnatool.retrain.train import run_retrain

    root = _image_folder(tmp_path / "images")
    recipe = load_retrain_recipe(
        "retrain-imagenet",
        (
            f"data={root}",
            "resolution=32",
            "epochs=1",
            "batch_size=4",
            "mixup=0.2",
            "cutmix=1.0",
            "reprob=0.25",
            "workers=0",
            "warmup_epochs=0",
            "ema_decay=0.9",
        ),
    )
    loaders = build_loaders(recipe, 32)
    transform = loaders.splits.train.dataset.transform
    assert any(isinstance(t, RandAugment) for t in transform.transforms)
    assert build_mixup(recipe, 2) is not None and len(loaders.train) == 2  # 2 x 4 left after rating
    metrics = run_retrain(tiny_arch(0), recipe, tmp_path / "run")
    assert metrics["val_images"] == 8 and metrics["epochs"] == 1
    loaded = load_model(tmp_path / "run")
    assert loaded.arch.num_classes == 2 and loaded.preprocess["crop_pct"] == 0.875
    assert loaded.preprocess["mean"] == [0.485, 0.456, 0.406]


def test_image_folder_runs_repeat_from_their_seed_and_resume_exactly(tmp_path):
    """On an ImageFolder, whose random crops, RandAugment and interpolation draw from Python's
    `random` and mixup from numpy's: two runs of one seed end bit-identical, a run stopped after
    epoch 1 and resumed ends as they do, and another seed ends elsewhere."""
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    root = _image_folder(tmp_path / "images")
    options = (f"data={root}", "resolution=32", "epochs=2", "batch_size=4", "mixup=0.2")
    options += ("cutmix=1.0", "reprob=0.25", "workers=0", "warmup_epochs=0", "model_ema=false")
    recipe = load_retrain_recipe("retrain-imagenet", options)
    arch = tiny_arch(0)
    run_retrain(arch, recipe, tmp_path / "a")
    run_retrain(arch, recipe, tmp_path / "b")
    with pytest.raises(Interrupt):
        run_retrain(arch, recipe, tmp_path / "c", report=_stop_after_first_epoch)
    run_retrain(arch, recipe, tmp_path / "c", resume=True)
    run_retrain(arch, dataclasses.replace(recipe, seed=1), tmp_path / "d")
    weights = {
        run: io.load_checkpoint(tmp_path / run / "model.pt", "model")["state_dict"]
        for run in "abcd"
    }
    a = weights["a"]
    assert all(torch.equal(a[k], weights["b"][k]) for k in a)
    assert all(torch.equal(a[k], weights["c"][k]) for k in a)
    assert not all(torch.equal(a[k], weights["d"][k]) for k in a)


def test_image_folder_augmentation_is_a_function_of_seed_epoch_and_index(tmp_path):
    import random

    from dnatool.data import load_splits, set_epoch

    root = _image_folder(tmp_path / "images")
    train = load_splits(str(root), 32, rate_per_class=2, seed=0, augment=True).train
    random.seed(5)
    expected = [random.random() for _ in range(3)]
    random.seed(5)
    first = train[0][0]
    assert torch.equal(first, train[0][0])  # the same sample, epoch and seed: the same crop
    assert [random.random() for _ in range(3)] == expected  # Python's generator left alone
    set_epoch(train, 1)
    assert not torch.equal(first, train[0][0])
    other = load_splits(str(root), 32, rate_per_class=2, seed=1, augment=True).train
    assert not torch.equal(first, other[0][0])


def test_channels_last_on_cpu_trains_the_same_network(short_run, tmp_path):
    """NHWC is a layout, not a model: on the CPU (where it trains 1.6x faster) a channels-last
    run stores NHWC weights and follows the NCHW run of the same seed (kernels sum in another
    order, so the runs drift apart by float rounding only: 0.4% in epoch loss measured). Their
    top-1 is not compared: after two epochs of a tiny net it hangs on eval-time batch-norm
    statistics (val loss 11-12 in the epoch rows) and landed 16 points apart on one machine
    while the losses agreed; the saved network must compute the same in either layout."""
    from dnatool.nn.model_run import load_model
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    out, metrics, _ = short_run
    recipe = dataclasses.replace(two_epoch_recipe(), channels_last=True)
    nhwc = run_retrain(tiny_arch(1), recipe, tmp_path / "run")
    assert (nhwc["device"], nhwc["channels_last"]) == ("cpu", True)
    state = io.load_checkpoint(tmp_path / "run" / "checkpoint.pt", "retrain-state")
    stem = state["model"]["conv_stem.weight"]
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    nchw = io.load_checkpoint(out / "checkpoint.pt", "retrain-state")["rows"]
    for a, b in zip(state["rows"], nchw, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)
    model = load_model(tmp_path / "run").model.eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        as_nhwc = model(images.contiguous(memory_format=torch.channels_last))
        as_nchw = model.to(memory_format=torch.contiguous_format)(images)
    assert torch.allclose(as_nhwc, as_nchw, atol=1e-4, rtol=1e-4)
    assert min(nhwc["top1"], metrics["top1"]) > 20.0  # both learned (chance: 10%)


@pytest.mark.slow  # inductor compiles for about a minute on a cold cache
def test_compiled_training_step_keeps_plain_checkpoints_and_tracks_eager(short_run, tmp_path):
    """`compile` wraps the training step only: the checkpoint and model keep the plain module's
    keys (so every later stage loads them), the EMA tracks the network and not the wrapper, and
    the run follows the eager run of the same seed up to fused-kernel rounding."""
    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    out, metrics, _ = short_run
    recipe = dataclasses.replace(two_epoch_recipe(), compile="default")
    compiled = run_retrain(tiny_arch(1), recipe, tmp_path / "run")
    assert compiled["compile"] == "default" and metrics["compile"] is None
    state = io.load_checkpoint(tmp_path / "run" / "checkpoint.pt", "retrain-state")
    eager = io.load_checkpoint(out / "checkpoint.pt", "retrain-state")
    assert state["model"].keys() == eager["model"].keys()
    assert state["ema"].keys() == eager["ema"].keys()
    for a, b in zip(state["rows"], eager["rows"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)
    with pytest.raises(BadInput, match="unknown compile mode 'fast'"):
        dataclasses.replace(recipe, compile="fast")


@pytest.mark.gpu
def test_cuda_retrain_uses_amp_and_channels_last(tmp_path):
    """One short epoch on CUDA: float16 autocast with a GradScaler, NHWC weights, a finite loss."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import math

    from dnatool.retrain.train import run_retrain
    from dnatool.utils import io

    recipe = dataclasses.replace(
        load_retrain_recipe("retrain-tiny"), epochs=1, amp=True, channels_last=True
    )
    metrics = run_retrain(tiny_arch(0), recipe, tmp_path / "run")
    assert (metrics["device"], metrics["amp"], metrics["channels_last"]) == ("cuda", True, True)
    state = io.load_checkpoint(tmp_path / "run" / "checkpoint.pt", "retrain-state")
    assert state["scaler"] and state["scaler"]["scale"] > 0
    stem = state["model"]["conv_stem.weight"]
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    row = state["rows"][-1]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert 0 <= metrics["top1"] <= 100


def test_a_model_run_whose_arch_copies_disagree_is_refused(short_run, tmp_path):
    """export / serve read model.pt's arch, configs read arch.json: an edited copy is refused."""
    import shutil

    from dnatool.backbones.configs import backbone_for
    from dnatool.errors import BadInput
    from dnatool.nn.model_run import load_model

    out, _, _ = short_run
    run = tmp_path / "edited"
    shutil.copytree(out, run)
    arch = json.loads((run / "arch.json").read_text())
    arch["head"] = arch["head"] + 8
    (run / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(BadInput, match="hold different architectures"):
        load_model(run)
    with pytest.raises(BadInput, match="hold different architectures"):
        backbone_for(str(run))
