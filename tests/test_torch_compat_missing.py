"""Without torch, pycharrnn.torch_compat raises an ImportError that says how to install it,
and the rest of the package never imports torch."""

import subprocess
import sys

import pytest

import pycharrnn as pc
from pycharrnn import torch_compat


def test_import_error_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    m = pc.CharRNN(5, hidden_size=4, cell="rnn")
    with pytest.raises(ImportError, match="pip install torch"):
        torch_compat.to_torch(m)
    with pytest.raises(ImportError, match="pip install torch"):
        torch_compat.from_torch(object(), 5)


def test_package_does_not_import_torch(tmp_path):
    code = ("import sys, pycharrnn as pc, pycharrnn.torch_compat; "
            "m = pc.CharRNN(5, hidden_size=4, cell='lstm'); m.forward([[1, 2]]); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
