"""Configs of the Shapes models, built from the upstream classes (diffusers v0.21.4, transformers 4.33.0.dev0)."""
import env  # noqa: F401

IMAGE_SIZE = 128
LATENT_SIZE = IMAGE_SIZE // 8
TEXT_HIDDEN = 64


def text_config_kwargs(vocab_size, bos_id, eos_id):
    # eos_token_id != 2 makes the pooler take the FIRST <|endoftext|> (padding is also <|endoftext|>), as in SD 1.x.
    return dict(vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=bos_id,
                eos_token_id=eos_id, pad_token_id=eos_id, projection_dim=TEXT_HIDDEN)


def sd_text_encoder(tok):
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**text_config_kwargs(len(tok), tok.bos_token_id, tok.eos_token_id)))


def vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(16, 32, 64, 64), layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=IMAGE_SIZE, scaling_factor=1.0)


def unet():
    from diffusers import UNet2DConditionModel
    # Cross-attention at 16x16 (down 0, up 2), 8x8 (down 1, up 1) and 4x4 (mid) latents.
    return UNet2DConditionModel(sample_size=LATENT_SIZE, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
                                cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, flip_sin_to_cos=True,
                                freq_shift=0, act_fn="silu")


def noise_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type="epsilon", clip_sample=False)


def inference_scheduler():
    """The scheduler config shipped with the pipeline: SD 1.5's PNDM."""
    from diffusers import PNDMScheduler
    return PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                         timestep_spacing="leading")


def clip(tok):
    from transformers import CLIPConfig, CLIPModel
    cfg = CLIPConfig(text_config=text_config_kwargs(len(tok), tok.bos_token_id, tok.eos_token_id),
                     vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                                        num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=16,
                                        hidden_act="quick_gelu"),
                     projection_dim=64)
    return CLIPModel(cfg)


def vit_labels():
    import world
    return [f"{c} {s}" for s in world.SHAPES for c in world.COLOURS]


def vit():
    from transformers import ViTConfig, ViTForImageClassification
    labels = vit_labels()
    cfg = ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                    image_size=IMAGE_SIZE, patch_size=16, num_labels=len(labels), hidden_act="gelu",
                    id2label={i: l for i, l in enumerate(labels)}, label2id={l: i for i, l in enumerate(labels)})
    return ViTForImageClassification(cfg)
