"""Training-step speed of a truth architecture on this device: eager against torch.compile.

Run by `benchmarks/gpu/ranking_truth.sh` before the truth (it also fills the compile cache), or
alone: `python benchmarks/gpu/step_speed.py PLAN.json [ARCH_INDEX] [MODE]`. Prints one JSON line
with milliseconds per AdamW step at the truth recipe's batch (64, channels-last, random images)
and the compile time; exits 1 when the compiled step fails, so the caller trains eagerly.
"""

from __future__ import annotations

import json
import sys
import time

import torch


def _steps(step, n: int, sync) -> float:
    for _ in range(5):
        step()
    sync()
    began = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - began) / n * 1000


def main() -> int:
    from dnatool.arch.spec import ArchSpec
    from dnatool.nn.timm_adapter import build_model

    plan = json.loads(open(sys.argv[1], encoding="utf-8").read())
    index = int(sys.argv[2]) if len(sys.argv) > 2 else len(plan["archs"]) - 1
    mode = sys.argv[3] if len(sys.argv) > 3 else "reduce-overhead"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    arch = ArchSpec.from_dict(plan["archs"][index]["arch"]).replace(num_classes=10)
    images = torch.randn(64, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (64,), device=device)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    for name in ("eager", mode):
        model = build_model(arch, drop_rate=0.1).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        net = model if name == "eager" else torch.compile(model, mode=mode)

        def step(net=net, optimizer=optimizer) -> None:
            loss = torch.nn.functional.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            float(loss.detach())  # the training loop reads every loss

        began = time.perf_counter()
        try:
            step()
            sync()
        except Exception as error:  # noqa: BLE001 - reported, and the caller trains eagerly
            result[f"{name}_error"] = f"{type(error).__name__}: {error}"[:400]
            print(json.dumps(result), flush=True)
            return 1
        result[f"{name}_first_step_s"] = round(time.perf_counter() - began, 2)
        result[f"{name}_ms_per_step"] = round(_steps(step, 100, sync), 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
