"""Every original checkpoint layout against the original code's numbers, through the one way in.

For each fixture in ``tests/fixtures`` (outputs of the original public code) this loads the file
with ``create_model(None, pretrained=...)``, converts it with ``videomamba convert`` and reloads the
result, and for classifiers scores the input through ``predict``'s view scoring; it records the
largest absolute difference from the original's tensors.

    python benchmarks/checkpoint_parity.py [--out benchmarks/results/checkpoint_parity.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.machine import cpu_name  # noqa: E402
from harness.paths import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _load(name):
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=True)


def _diff(a, b) -> float:
    return float((a.detach().float() - b.float()).abs().max())


def main(argv=None) -> int:
    import videomamba as vm
    from videomamba.apps.convert import convert_checkpoint
    from videomamba.apps.predict import score_views

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "checkpoint_parity.json"))
    args = p.parse_args(argv)
    rows = []
    tmp = Path(tempfile.mkdtemp())

    def feats(m, x):
        return m.forward_head(m.forward_features(x), pre_logits=True)

    def row(layout, file, route, what, err):
        rows.append({"layout": layout, "file": file, "route": route, "compared": what, "max_abs_error": err})

    with torch.no_grad():
        # 1. video classifier: bare state dict, as the release saves video models
        d = _load("official_tiny_t1.pt")
        src = tmp / "videomamba_t16_tiny_f4_res64.pth"
        torch.save(d["state_dict"], src)
        m = vm.create_model(None, pretrained=src).eval()
        row("video classifier (bare state dict)", "official_tiny_t1.pt", "create_model", "logits", _diff(m(d["input"]), d["logits"]))
        row("video classifier (bare state dict)", "official_tiny_t1.pt", "create_model", "features",
            _diff(feats(m, d["input"]), d["features"]))
        convert_checkpoint(src, tmp / "official")
        m2 = vm.create_model(None, pretrained=tmp / "official").eval()
        row("video classifier (bare state dict)", "official_tiny_t1.pt", "convert + reload", "logits",
            _diff(m2(d["input"]), d["logits"]))
        err = max(_diff(score_views(m, d["input"][i:i + 1]), d["logits"][i].softmax(-1)) for i in range(len(d["input"])))
        row("video classifier (bare state dict)", "official_tiny_t1.pt", "predict scoring", "softmax", err)

        # 2. Vim training file (args Namespace, model + model_ema)
        io = _load("vim_midcls_tiny_io.pt")
        vim = FIXTURES / "vim_midcls_tiny.pth"
        m = vm.create_model(None, pretrained=vim).eval()
        row("Vim training file", "vim_midcls_tiny.pth", "create_model", "logits", _diff(m(io["input"]), io["logits"]))
        row("Vim training file", "vim_midcls_tiny.pth", "create_model", "features", _diff(feats(m, io["input"]), io["features"]))
        e = vm.create_model(None, pretrained=vim, use_ema=True).eval()
        row("Vim training file", "vim_midcls_tiny.pth", "create_model (EMA)", "logits", _diff(e(io["input"]), io["logits_model_ema"]))
        convert_checkpoint(vim, tmp / "vim")
        m2 = vm.create_model(None, pretrained=tmp / "vim").eval()
        row("Vim training file", "vim_midcls_tiny.pth", "convert + reload", "logits", _diff(m2(io["input"]), io["logits"]))
        err = max(_diff(score_views(m, io["input"][i:i + 1].unsqueeze(2)), io["logits"][i].softmax(-1))
                  for i in range(len(io["input"])))
        row("Vim training file", "vim_midcls_tiny.pth", "predict scoring", "softmax", err)

        # 3. masked-pretraining student (norm -> norm_f, decoder skipped)
        io = _load("mask_pt_tiny_io.pt")
        mp = FIXTURES / "mask_pt_tiny.pth"
        m = vm.create_model(None, pretrained=mp).eval()
        row("masked-pretraining student", "mask_pt_tiny.pth", "create_model", "features",
            _diff(feats(m, io["input"]), io["features_unmasked"]))
        row("masked-pretraining student", "mask_pt_tiny.pth", "create_model", "final norm, all tokens",
            _diff(m.forward_features(io["input"]), io["final_norm_unmasked"]))
        convert_checkpoint(mp, tmp / "mask_pt")
        m2 = vm.create_model(None, pretrained=tmp / "mask_pt").eval()
        row("masked-pretraining student", "mask_pt_tiny.pth", "convert + reload", "features",
            _diff(feats(m2, io["input"]), io["features_unmasked"]))

        # 4. video-text checkpoint as the original pre-training script writes it
        mm = _load("official_mm_tiny.pt")
        src = tmp / "videomamba_m16_tiny_f4_res64.pth"
        torch.save(mm["checkpoint"], src)
        bert = mm["config"]["bert_config"]
        v = vm.create_model(None, pretrained=src, vision_only=True).eval()
        row("video-text file", "official_mm_tiny.pt", "create_model (vision tower)", "vision final hidden",
            _diff(v.forward_features(mm["video"]), mm["vision_final_hidden"]))
        for route, model in (("create_model", vm.create_model(None, pretrained=src, text_config=bert).eval()),):
            tt = model.encode_text_tokens(mm["text_ids"], mm["text_mask"])
            row("video-text file", "official_mm_tiny.pt", route, "text tokens", _diff(tt, mm["text_tokens"]))
            row("video-text file", "official_mm_tiny.pt", route, "video embeddings x text embeddings (sim_v2t)",
                _diff(model.encode_video(mm["video"]) @ model.text_embedding(tt).T, mm["sim_v2t"]))
        convert_checkpoint(src, tmp / "mm", text_config=bert)
        m2 = vm.create_model(None, pretrained=tmp / "mm").eval()
        tt = m2.encode_text_tokens(mm["text_ids"], mm["text_mask"])
        row("video-text file", "official_mm_tiny.pt", "convert + reload", "video embeddings x text embeddings (sim_v2t)",
            _diff(m2.encode_video(mm["video"]) @ m2.text_embedding(tt).T, mm["sim_v2t"]))

    out = {"command": "python benchmarks/checkpoint_parity.py", "cpu": cpu_name(), "torch": torch.__version__,
           "tolerance": 1e-4, "rows": rows, "all_within_tolerance": all(r["max_abs_error"] <= 1e-4 for r in rows)}
    written = write_result(args.out, out)
    w = max(len(r["layout"]) for r in rows)
    print(f"{'layout':<{w}}  {'route':<28} {'compared':<46} max |error|")
    for r in rows:
        print(f"{r['layout']:<{w}}  {r['route']:<28} {r['compared']:<46} {r['max_abs_error']:.2e}")
    print(f"wrote {written}")
    return 0 if out["all_within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
