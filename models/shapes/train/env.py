"""Puts the upstream libraries on sys.path for the Shapes training scripts.

Versions used: diffusers v0.21.4, transformers commit 49b69fe0 (4.33.0.dev0), huggingface_hub v0.17.3, all as
source trees under $REFSRC (default /work/refsrc), on Debian's python3 3.11 with python3-torch 1.13 (OpenBLAS).
safetensors, tokenizers and accelerate are not installable here, so this module writes metadata-only
dist-info folders (transformers checks installed versions at import) and a stub `safetensors` package;
everything is saved with safe_serialization=False. Import this module before diffusers / transformers.
"""
import os
import sys
import tempfile

REFSRC = os.environ.get("REFSRC", "/work/refsrc")
_STUB_ROOT = os.path.join(tempfile.gettempdir(), "heed-shapes-pystubs")

_VERSIONS = {"huggingface_hub": "0.17.3", "safetensors": "0.3.3", "transformers": "4.33.0.dev0", "diffusers": "0.21.4"}

_SAFETENSORS_INIT = '''__version__ = "0.3.3"
def safe_open(*a, **k):
    raise ImportError("safetensors stub: weights are saved as .bin")
'''
_SAFETENSORS_TORCH = '''def storage_ptr(tensor):
    return tensor.storage().data_ptr()
def storage_size(tensor):
    return tensor.storage().size() * tensor.storage().element_size()
def load_file(*a, **k):
    raise ImportError("safetensors stub: use .bin weights")
def save_file(*a, **k):
    raise ImportError("safetensors stub: save with safe_serialization=False")
'''


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def setup():
    for name, version in _VERSIONS.items():
        _write(os.path.join(_STUB_ROOT, f"{name}-{version}.dist-info", "METADATA"),
               f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    _write(os.path.join(_STUB_ROOT, "safetensors", "__init__.py"), _SAFETENSORS_INIT)
    _write(os.path.join(_STUB_ROOT, "safetensors", "torch.py"), _SAFETENSORS_TORCH)
    for p in [os.path.join(REFSRC, "hfhub/src"), os.path.join(REFSRC, "transformers/src"),
              os.path.join(REFSRC, "diffusers/src"), _STUB_ROOT]:
        if p not in sys.path:
            sys.path.insert(0, p)
    # transformers' pure-Python AddedToken (no `tokenizers`) lacks __str__, which breaks bos/eos ids.
    from transformers import tokenization_utils_base as tub
    tub.AddedToken.__str__ = lambda self: self.content


setup()
