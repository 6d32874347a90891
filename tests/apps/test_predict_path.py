"""The path of a clip from ``videomamba predict FILE`` to logits stays short: the modules whose code
runs, outside the model's own layers and kernels and the weights route, number fewer than 12."""
import sys

import numpy as np

import videomamba as vm
from _requirements import require_module

# the model's internals and the one way in for weights: counted apart
APART = ("videomamba.layers", "videomamba.ops", "videomamba.checkpoint", "videomamba.models.config",
         "videomamba.models.registry")


def test_predict_crosses_few_modules(tmp_path, capsys):
    require_module("av", "pip install av")
    from videomamba.cli import main
    from videomamba.data.video import write_video

    clip = write_video(tmp_path / "c.mp4", np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8))
    vm.save_pretrained(vm.create_model("videomamba_tiny", embed_dim=16, depth=1, num_frames=4, img_size=32,
                                       num_classes=3), tmp_path / "m")
    ran: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name.startswith("videomamba"):
                ran.add(name)
    sys.setprofile(profile)
    try:
        assert main(["predict", str(clip), "-k", str(tmp_path / "m")]) == 0
    finally:
        sys.setprofile(None)
    packages = {"videomamba", "videomamba.apps", "videomamba.commands", "videomamba.engine", "videomamba.data",
                "videomamba.models"}
    path = sorted(m for m in ran if not m.startswith(APART) and m not in packages)
    assert len(path) < 12, path
    assert "videomamba.engine.trainer" not in ran and not any(m.startswith("videomamba.commands.t") for m in ran)
