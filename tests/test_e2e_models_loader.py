"""The one model loader (``resolve_model``) on the files a user names: a model file that
imports the file beside it, a Python file without its factory, PyTorch checkpoints (never
unpickled), a factory that fails. In process: ``sys.path`` is what it was afterwards."""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest
import torch

from deploylens import UserError, analyze
from deploylens.capture.loader import resolve_model


class _Evil:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_model_file_imports_its_sibling_and_sys_path_is_restored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the model's folder
    folder = tmp_path / "repvgg"
    _write(folder, "loader_sibling_block.py", """
        import torch.nn as nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1, bias=False)

            def forward(self, x):
                return self.conv(x)
        """)
    model = _write(folder, "net.py", """
        import torch.nn as nn
        from loader_sibling_block import Block

        def create():
            from loader_sibling_lazy import LAZY  # a factory may import too
            return nn.Sequential(Block(), nn.ReLU())
        """)
    _write(folder, "loader_sibling_lazy.py", "LAZY = 1\n")
    before = list(sys.path)
    profile = analyze(f"{model}:create", (1, 3, 4, 4))
    assert profile.totals.macs == 16 * 4 * 3 and profile.model == f"{model}:create"
    assert sys.path == before
    _write(folder, "broken.py", "def create():\n    raise RuntimeError('no weights here')\n")
    with pytest.raises(UserError, match=r"broken.py:create\(\) raised RuntimeError: no weights here$"):
        resolve_model(f"{folder / 'broken.py'}:create")
    assert sys.path == before


def test_a_python_file_without_a_factory_lists_what_could_build_the_model_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = _write(tmp_path, "mymodel.py", f"""
        import torch.nn as nn
        open({str(marker)!r}, "w").close()

        class Net(nn.Module):
            def __init__(self, classes=10, *, width=1.0):
                super().__init__()

        class NeedsArgs(nn.Module):
            def __init__(self, cfg):
                super().__init__()

        class _Private(nn.Module):
            pass

        def create_model(pretrained=False):
            return Net()

        def build(width, depth=2):
            return Net()

        async def fetch():
            return None

        variant = create_model
        """)
    with pytest.raises(UserError) as refused:
        resolve_model(str(path))
    assert str(refused.value) == (f"{path} is Python code: name the function or class in it that builds the model, "
                                  f"as {path}:NAME (callable without arguments in it: Net, create_model)")
    assert not marker.exists()
    one = _write(tmp_path / "one", "m.py", "def create():\n    pass\n")
    with pytest.raises(UserError, match=r"name the function or class in it that builds the model, as .*m\.py:create "
                                        r"\(callable without arguments in it: create\)$"):
        resolve_model(str(one))
    with pytest.raises(UserError, match=r"m\.py:create \(callable"):
        resolve_model(f"{one}:")  # the colon without a name
    with pytest.raises(UserError, match=r"has no callable 'nope' \(callable without arguments in it: create\)$"):
        resolve_model(f"{one}:nope")
    with pytest.raises(UserError, match=r"^no such file: .*missing\.py$"):
        resolve_model(str(tmp_path / "missing.py"))


@pytest.mark.parametrize("name", ["model.pt", "model.PTH", "best.ckpt", "checkpoint.pth.tar", "model.pkl"])
def test_a_checkpoint_is_never_unpickled(tmp_path, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(marker)}, f)
    for reference in (str(path), f"{path}:create"):
        with pytest.raises(UserError) as refused:
            resolve_model(reference)
        assert str(refused.value) == (
            f"{path} is a PyTorch checkpoint: it holds weights or a pickled object, which deploylens will not "
            "unpickle (loading one can run code); give file.py:factory, the code that builds the model (load the "
            "weights there with model.load_state_dict(torch.load(PATH, weights_only=True))), or an ONNX export")
    assert not marker.exists()


def test_a_model_file_that_exits_at_import_is_one_error(tmp_path):
    path = _write(tmp_path, "script.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(UserError, match=r"^cannot import '.*script\.py': SystemExit: exit\(3\)$"):
        resolve_model(f"{path}:create")


def test_a_module_and_an_onnx_model_pass_through():
    module = torch.nn.ReLU()
    assert resolve_model(module) == (module, "ReLU")
