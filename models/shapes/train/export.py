"""Exports the trained Shapes models to ONNX, the way the real exporters do.

- SD: builds a diffusers StableDiffusionPipeline folder (PyTorch, .bin weights) from the checkpoints, then runs
  diffusers v0.21.4's own `scripts/convert_stable_diffusion_checkpoint_to_onnx.py --opset 14` on it, unmodified.
  That script ends by building an OnnxStableDiffusionPipeline, which needs python onnxruntime (not packaged in
  Debian): a placeholder `onnxruntime` module whose InferenceSession only remembers its path stands in (the same
  deviation as ../shared/reference's sd-tiny-v1).
- CLIP and ViT: torch.onnx.export (opset 14, constant folding) in the Optimum layout (model.onnx at the folder root,
  config.json, preprocessor_config.json, and for CLIP the tokenizer files at the root and under tokenizer/).

  python3 export.py [--workdir /root/heed-shapes] [--out ../] [--only sd,clip,vit] [--raw-unet]
"""
import argparse
import os
import runpy
import shutil
import sys
import tempfile

import env
import torch

import architectures as arch
import tokenizer as shapes_tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

_ORT_PLACEHOLDER = '''"""Placeholder for python onnxruntime (absent on Debian): the export only needs the session objects to exist."""
__version__ = "1.16.0"
def get_available_providers():
    return ["CPUExecutionProvider"]
class SessionOptions:
    pass
class InferenceSession:
    def __init__(self, path, *args, **kwargs):
        self.path = path
'''


def install_onnxruntime_placeholder():
    root = os.path.join(tempfile.gettempdir(), "heed-shapes-ort-placeholder")
    os.makedirs(os.path.join(root, "onnxruntime"), exist_ok=True)
    os.makedirs(os.path.join(root, "onnxruntime-1.16.0.dist-info"), exist_ok=True)
    with open(os.path.join(root, "onnxruntime", "__init__.py"), "w") as f:
        f.write(_ORT_PLACEHOLDER)
    with open(os.path.join(root, "onnxruntime-1.16.0.dist-info", "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: onnxruntime\nVersion: 1.16.0\n")
    sys.path.insert(0, root)


def load_checkpoint(workdir, name):
    return torch.load(os.path.join(workdir, name, "ckpt.pt"))


def export_sd(workdir, out, raw_unet):
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    state = load_checkpoint(workdir, "sd")
    unet = arch.unet()
    unet.load_state_dict(state["modules"]["unet"] if raw_unet or state["ema"] is None else state["ema"])
    text_encoder = arch.sd_text_encoder(tok)
    # The EMA text encoder goes with the EMA UNet (train.py averages both); raw weights with raw weights.
    ema_text = state.get("extra_emas", {}).get("text_encoder")
    text_encoder.load_state_dict(state["modules"]["text_encoder"] if raw_unet or state["ema"] is None or ema_text is None else ema_text)
    vae = AutoencoderKL.from_pretrained(os.path.join(workdir, "vae", "vae"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                   scheduler=arch.inference_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    torch_dir = os.path.join(workdir, "sd-torch")
    pipe.save_pretrained(torch_dir, safe_serialization=False)
    target = os.path.join(out, "sd")
    if os.path.exists(target):
        shutil.rmtree(target)
    script = os.path.join(env.REFSRC, "diffusers/scripts/convert_stable_diffusion_checkpoint_to_onnx.py")
    sys.argv = [script, "--model_path", torch_dir, "--output_path", target, "--opset", "14"]
    runpy.run_path(script, run_name="__main__")
    # diffusers' converter writes no component configs, and its OnnxStableDiffusionPipeline hard-codes SD's VAE
    # scaling factor 0.18215. Optimum copies each component's config.json beside its model.onnx; do the same, so that
    # a reader (Heed) takes this VAE's own scaling_factor and the UNet's sample_size (the default image size).
    for component, source in [("unet", "unet"), ("vae_decoder", "vae"), ("vae_encoder", "vae"), ("text_encoder", "text_encoder")]:
        shutil.copy(os.path.join(torch_dir, source, "config.json"), os.path.join(target, component, "config.json"))


def write_tokenizer(tok, folder):
    tok.save_pretrained(folder)
    for extra in ["added_tokens.json"]:
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)


class ClipOnnx(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, pixel_values, attention_mask):
        o = self.m(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        return o.logits_per_image, o.logits_per_text, o.text_embeds, o.image_embeds


class VitOnnx(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).logits


def export_clip(workdir, out):
    from transformers import CLIPImageProcessor
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    model = arch.clip(tok)
    model.load_state_dict(load_checkpoint(workdir, "clip")["modules"]["clip"])
    model.eval()
    target = os.path.join(out, "clip")
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    model.config.save_pretrained(target)
    CLIPImageProcessor(size={"shortest_edge": arch.IMAGE_SIZE},
                       crop_size={"height": arch.IMAGE_SIZE, "width": arch.IMAGE_SIZE}).save_pretrained(target)
    write_tokenizer(tok, target)
    write_tokenizer(tok, os.path.join(target, "tokenizer"))
    enc = tok(["a red circle", "a blue square and a green triangle"], padding="max_length",
              max_length=tok.model_max_length, return_tensors="pt")
    pix = torch.randn(1, 3, arch.IMAGE_SIZE, arch.IMAGE_SIZE)
    torch.onnx.export(ClipOnnx(model), (enc.input_ids, pix, enc.attention_mask), os.path.join(target, "model.onnx"),
                      input_names=["input_ids", "pixel_values", "attention_mask"],
                      output_names=["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
                      dynamic_axes={"input_ids": {0: "text_batch", 1: "sequence"},
                                    "pixel_values": {0: "image_batch"},
                                    "attention_mask": {0: "text_batch", 1: "sequence"},
                                    "logits_per_image": {0: "image_batch", 1: "text_batch"},
                                    "logits_per_text": {0: "text_batch", 1: "image_batch"},
                                    "text_embeds": {0: "text_batch"}, "image_embeds": {0: "image_batch"}},
                      opset_version=14, do_constant_folding=True)


def export_vit(workdir, out):
    from transformers import ViTImageProcessor
    model = arch.vit()
    model.load_state_dict(load_checkpoint(workdir, "vit")["modules"]["vit"])
    model.eval()
    target = os.path.join(out, "vit")
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    model.config.save_pretrained(target)
    ViTImageProcessor(size={"height": arch.IMAGE_SIZE, "width": arch.IMAGE_SIZE}).save_pretrained(target)
    torch.onnx.export(VitOnnx(model), (torch.randn(1, 3, arch.IMAGE_SIZE, arch.IMAGE_SIZE),),
                      os.path.join(target, "model.onnx"), input_names=["pixel_values"], output_names=["logits"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=14, do_constant_folding=True)


def main():
    # Before diffusers is imported: it decides at import time whether onnxruntime is available.
    install_onnxruntime_placeholder()
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default=os.environ.get("HEED_SHAPES_WORKDIR", "/root/heed-shapes"))
    p.add_argument("--out", default=os.path.dirname(HERE))
    p.add_argument("--only", default="sd,clip,vit")
    p.add_argument("--raw-unet", action="store_true", help="export the raw UNet weights instead of their EMA")
    args = p.parse_args()
    torch.set_num_threads(1)
    parts = args.only.split(",")
    if "vit" in parts:
        export_vit(args.workdir, args.out)
    if "clip" in parts:
        export_clip(args.workdir, args.out)
    if "sd" in parts:
        export_sd(args.workdir, args.out, args.raw_unet)


if __name__ == "__main__":
    main()
