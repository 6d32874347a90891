"""The CLI imports a command's module only when it runs: ``videomamba info`` pays for no training,
video or application stack."""
import subprocess
import sys


def test_info_imports_no_engine_apps_or_decoders():
    code = ("import sys, io, contextlib\n"
            "from videomamba.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['info', 'videomamba_tiny']) == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[:2] in (['videomamba', 'engine'], "
            "['videomamba', 'apps']) or m in ('av', 'transformers', 'faiss', 'fastapi'))\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
