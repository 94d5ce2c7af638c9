"""`dnatool.arch` never imports torch or timm: arch files, spaces and scaling work without them.

Checked in a fresh interpreter where importing torch, torchvision or timm raises, so a module-level
import anywhere under `dnatool/arch/` (including modules added later) fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "torchvision", "timm")

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = {blocked!r}

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} imported by dnatool.arch")
            return None

    sys.meta_path.insert(0, Refuse())

    import numpy as np

    import dnatool.arch

    names = [m.name for m in pkgutil.walk_packages(dnatool.arch.__path__, "dnatool.arch.")]
    for required in ("spec", "resolve", "scale", "space"):
        assert "dnatool.arch." + required in names, names
    for name in names:
        importlib.import_module(name)

    from dnatool.arch.resolve import resolve_arch
    from dnatool.arch.scale import scale_to
    from dnatool.arch.space import list_spaces, load_space
    from dnatool.arch.spec import ArchSpec, parse_block

    b0 = resolve_arch("efficientnet_b0")
    assert ArchSpec.from_dict(b0.to_dict()) == b0
    assert parse_block("ir_r2_k3_s2_e6_c24_se0.25").out == 24
    assert scale_to(b0, "b2").resolution == 260
    spaces = list_spaces()
    assert spaces
    for name in spaces:
        space = load_space(name)
        space.to_arch(space.sample(np.random.default_rng(0)))
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
    print("LOADED", loaded, "MODULES", len(names), "SPACES", len(spaces))
    """
).format(blocked=BLOCKED)


def test_arch_package_works_without_torch_or_timm():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
