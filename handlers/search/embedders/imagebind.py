"""Optional backend: Meta's ImageBind, one joint space for text, images, audio and video.

Install: ``pip install 'harbord[imagebind]'`` (the light libraries the model code imports:
ftfy, regex, einops, iopath) and then ``pip install --no-deps imagebind-unofficial`` (Meta's
model code; without ``--no-deps`` pip would pull torchvision, torchaudio, pytorchvideo, decord
and timm, and torchvision/torchaudio wheels that do not match the installed torch break
sentence-transformers). The PyPI package named ``imagebind`` is an empty placeholder.

What imports what in ``imagebind-unofficial`` 0.1.1:

- ``imagebind/__init__.py`` imports ``imagebind.data`` -> torchaudio, torchvision,
  pytorchvideo (decord). So ``import imagebind`` fails without them. This module registers a
  bare ``imagebind`` package object (its ``__path__`` only) so that
  ``imagebind.models.imagebind_model`` can be imported without running that ``__init__``.
- ``imagebind.models.*`` needs torch, einops, numpy, ftfy, regex, iopath and
  ``timm.layers.{DropPath, trunc_normal_}``. Every timm release's ``timm.layers`` imports
  torchvision (``create_norm.py``: ``from torchvision.ops.misc import FrozenBatchNorm2d``),
  so unless ``timm.layers`` is already imported, a two-function stand-in is registered while
  the model code is imported (``DropPath`` = stochastic depth, identity at inference;
  ``trunc_normal_`` = ``torch.nn.init.trunc_normal_``; neither has weights, so checkpoints
  are unaffected) and removed afterwards.

Preprocessing is done here with Pillow, numpy, torch and the ffmpeg binary of
``imageio-ffmpeg``, mirroring ``imagebind.data``:

- images: RGB, resize shorter side to 224 (bicubic), center crop 224, CLIP mean/std.
- audio: decode to 16 kHz mono, 3 clips of 2 s evenly spaced over the file, each a Kaldi
  fbank (128 mel bins, 25 ms Hann window, 10 ms shift, pre-emphasis 0.97, 512-point FFT,
  log power; same maths as ``torchaudio.compliance.kaldi.fbank``) padded/cut to 204
  frames, normalised with mean -4.268 and std 9.138; the clip vectors are averaged.
- video: 5 clips of 2 s evenly spaced, 2 frames each (ffmpeg seeks), shorter side scaled to
  224, 3 spatial crops (left/center/right), CLIP mean/std; the 15 clip vectors are averaged.
- text: ImageBind's BPE tokenizer (77 tokens; longer text is cut).

Weights: Meta's ``imagebind_huge.pth`` (about 4.5 GB; a state dict of the "huge" model:
1024-d output) or a file written by :func:`save_checkpoint` (``{"harbord_imagebind": 1,
"arch": {...ImageBindModel kwargs}, "state_dict": ...}``), path in ``[embed] checkpoint``.
Nothing is ever downloaded. Device from ``[embed] device``; a CUDA GPU with >= 8 GB is
recommended (the huge model runs on CPU too, at seconds per item).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handlers.search.config import EmbedConfig
from handlers.search.embedders import SpaceInfo, Vectors, l2_normalise, slug
from harbord.errors import ConfigError, EmbeddingError

HUGE_ARCH: dict[str, Any] = {
    "vision_embed_dim": 1280, "vision_num_blocks": 32, "vision_num_heads": 16,
    "text_embed_dim": 1024, "text_num_blocks": 24, "text_num_heads": 16,
    "out_embed_dim": 1024, "audio_drop_path": 0.1, "imu_drop_path": 0.7,
}
"""``imagebind_model.imagebind_huge`` arguments (the architecture of imagebind_huge.pth)."""

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
SAMPLE_RATE = 16_000
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138
AUDIO_CLIPS, VIDEO_CLIPS, CLIP_SECONDS = 3, 5, 2.0
MEL_BINS, TARGET_FRAMES = 128, 204
INSTALL_HINT = ("pip install 'harbord[imagebind]' && pip install --no-deps imagebind-unofficial "
                "(see the README's ImageBind section)")


def imagebind_space(config: EmbedConfig) -> SpaceInfo:
    """The space an ImageBind config selects: ``imagebind-<checkpoint stem>``.

    Raises ConfigError when no checkpoint is configured.
    """
    if config.checkpoint is None:
        raise ConfigError("the imagebind backend needs the path of a weights file", key="embed.checkpoint")
    stem = Path(config.checkpoint).stem
    dim = 1024 if stem == "imagebind_huge" else None
    return SpaceInfo(f"imagebind-{slug(stem)}", f"imagebind:{Path(config.checkpoint).name}", dim)


# --- importing Meta's model code without torchvision/torchaudio ------------------------------

def _timm_stand_in() -> dict[str, types.ModuleType]:
    import torch
    from torch import nn

    class DropPath(nn.Module):
        """Stochastic depth per sample (timm.layers.DropPath); identity at inference."""

        def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
            super().__init__()
            self.drop_prob = drop_prob
            self.scale_by_keep = scale_by_keep

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.drop_prob == 0.0 or not self.training:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            if keep > 0.0 and self.scale_by_keep:
                mask.div_(keep)
            return x * mask

    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")
    layers.DropPath = DropPath  # type: ignore[attr-defined]
    layers.trunc_normal_ = torch.nn.init.trunc_normal_  # type: ignore[attr-defined]
    timm.layers = layers  # type: ignore[attr-defined]
    return {"timm": timm, "timm.layers": layers}


@contextlib.contextmanager
def _temporary_modules(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    added = [name for name in modules if name not in sys.modules]
    for name in added:
        sys.modules[name] = modules[name]
    try:
        yield
    finally:
        for name in added:
            if sys.modules.get(name) is modules[name]:
                del sys.modules[name]


def import_model_code() -> tuple[types.ModuleType, types.ModuleType]:
    """Import ``imagebind.models.imagebind_model`` and ``.multimodal_preprocessors``.

    See the module docstring for how torchvision/torchaudio/timm are avoided. Raises
    ConfigError with the install command when the package or a light dependency is missing.
    """
    name = "imagebind.models.imagebind_model"
    if name not in sys.modules:
        spec = importlib.util.find_spec("imagebind")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"ImageBind's model code is not installed: {INSTALL_HINT}", key="embed.backend")
        if "imagebind" not in sys.modules:
            package = types.ModuleType("imagebind")
            package.__path__ = list(spec.submodule_search_locations)
            package.__file__ = spec.origin
            sys.modules["imagebind"] = package
        stand_in = {} if "timm.layers" in sys.modules else _timm_stand_in()
        try:
            with _temporary_modules(stand_in):
                importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"ImageBind needs {err.name or err}: {INSTALL_HINT}",
                              key="embed.backend") from err
    return sys.modules[name], sys.modules["imagebind.models.multimodal_preprocessors"]


def build_model(arch: dict[str, Any] | None = None) -> Any:
    """A randomly initialised ``ImageBindModel(**arch)`` (default: the huge architecture)."""
    model_code, _ = import_model_code()
    return model_code.ImageBindModel(**(HUGE_ARCH if arch is None else arch))


def save_checkpoint(model: Any, arch: dict[str, Any], path: Path) -> None:
    """Write ``model``'s weights with its architecture (harbord's checkpoint format)."""
    import torch

    torch.save({"harbord_imagebind": 1, "arch": dict(arch), "state_dict": model.state_dict()}, str(path))


def load_model(path: Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint (Meta's raw state dict or :func:`save_checkpoint` format) into an
    ``ImageBindModel`` in eval mode on ``device``; returns ``(model, arch)``.

    Raises ConfigError for a missing file, EmbeddingError for one that does not fit.
    """
    import torch

    if not Path(path).is_file():
        raise ConfigError(f"ImageBind weights file {path} does not exist (it is never downloaded)",
                          key="embed.checkpoint")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise EmbeddingError(f"cannot read ImageBind weights {path}: {err}") from err
    if isinstance(data, dict) and data.get("harbord_imagebind"):
        arch, state = dict(data["arch"]), data["state_dict"]
    else:
        arch, state = dict(HUGE_ARCH), data
    model = build_model(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise EmbeddingError(f"{path} does not match the ImageBind architecture {arch}: {err}") from err
    return model.eval().to(device), arch


# --- preprocessing ---------------------------------------------------------------------------

def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _resize_crop(image: Any, size: int = 224, crops: Sequence[int] = (1,)) -> list[NDArray[np.float32]]:
    """Resize the shorter side to ``size`` (bicubic) and cut square crops (0 left/top,
    1 center, 2 right/bottom); returns CLIP-normalised ``(3, size, size)`` arrays."""
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    if width <= height:  # torchvision Resize(size): shorter side to size, longer truncated
        new = (size, max(size, int(size * height / width)))
    else:
        new = (max(size, int(size * width / height)), size)
    image = image.resize(new, Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    h, w = array.shape[:2]
    out = []
    for crop in crops:  # pytorchvideo uniform_crop: offsets move along the longer side
        y, x = (h - size + 1) // 2, (w - size + 1) // 2
        if h > w:
            y = [0, y, h - size][crop]
        else:
            x = [0, x, w - size][crop]
        patch = array[y:y + size, x:x + size]
        out.append(np.ascontiguousarray(((patch - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)))
    return out


def load_image(path: str | Path) -> NDArray[np.float32]:
    """One image as a ``(3, 224, 224)`` float32 array. Raises EmbeddingError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _resize_crop(image)[0]
    except (OSError, UnidentifiedImageError) as err:
        raise EmbeddingError(f"{path}: not a readable image: {err}") from err


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> NDArray[np.float32]:
    """Decode any audio ffmpeg reads to mono float32 samples at ``sample_rate`` Hz (``(n,)``).

    Raises EmbeddingError when ffmpeg fails or the file has no audio.
    """
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode(errors="replace")[-300:]
        raise EmbeddingError(f"{path}: ffmpeg cannot decode audio: {detail}")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def _mel(freq: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1127.0 * np.log(1.0 + freq / 700.0))


def mel_banks(num_bins: int = MEL_BINS, fft_size: int = 512, sample_rate: int = SAMPLE_RATE,
              low_freq: float = 20.0) -> NDArray[np.float32]:
    """Kaldi triangular mel filters, ``(num_bins, fft_size // 2 + 1)`` float32 (last column,
    the Nyquist bin, is zero as in Kaldi/torchaudio)."""
    n_fft_bins = fft_size // 2
    high_freq = sample_rate / 2
    mel_low, mel_high = _mel(np.array(low_freq)), _mel(np.array(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = np.arange(num_bins, dtype=np.float64)[:, None]
    left = mel_low + index * delta
    center = mel_low + (index + 1) * delta
    right = mel_low + (index + 2) * delta
    mel = _mel((sample_rate / fft_size) * np.arange(n_fft_bins, dtype=np.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)


def kaldi_fbank(wave: NDArray[np.float32], sample_rate: int = SAMPLE_RATE, num_bins: int = MEL_BINS,
                frame_ms: float = 25.0, shift_ms: float = 10.0) -> NDArray[np.float32]:
    """Log mel filterbank like ``torchaudio.compliance.kaldi.fbank(..., htk_compat=True,
    use_energy=False, window_type="hanning", dither=0.0)``: ``(frames, num_bins)`` float32.

    Frames: snip_edges (``1 + (n - 400) // 160`` at 16 kHz), DC offset removed per frame,
    pre-emphasis 0.97, symmetric Hann window, zero-padded to 512, power spectrum, log with a
    floor of float32 eps.
    """
    size, shift = int(sample_rate * frame_ms / 1000), int(sample_rate * shift_ms / 1000)
    if len(wave) < size:
        return np.zeros((0, num_bins), dtype=np.float32)
    count = 1 + (len(wave) - size) // shift
    frames = np.lib.stride_tricks.as_strided(
        wave.astype(np.float64), shape=(count, size), strides=(shift * 8, 8)).copy()
    frames -= frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames -= 0.97 * previous
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))
    frames *= window
    fft_size = 1 << (size - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, n=fft_size)) ** 2
    energies = power @ mel_banks(num_bins, fft_size, sample_rate).T.astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    out: NDArray[np.float32] = np.log(np.maximum(energies, eps)).astype(np.float32)
    return out


def clip_starts(duration: float, clips: int, clip_seconds: float = CLIP_SECONDS) -> list[float]:
    """Start times (s) of ``clips`` evenly spaced clips (pytorchvideo's
    ConstantClipsPerVideoSampler): ``k * max(duration - clip, 0) / max(clips - 1, 1)``."""
    span = max(duration - clip_seconds, 0.0)
    return [span * k / max(clips - 1, 1) for k in range(clips)]


def audio_clips(wave: NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> NDArray[np.float32]:
    """ImageBind's audio input for one file: ``(3, 1, 128, 204)`` float32."""
    out = []
    for start in clip_starts(len(wave) / sample_rate, AUDIO_CLIPS):
        clip = wave[int(start * sample_rate):int((start + CLIP_SECONDS) * sample_rate)].astype(np.float32)
        clip = clip - clip.mean() if len(clip) else clip
        bank = kaldi_fbank(clip, sample_rate).T
        frames = bank.shape[1]
        if frames < TARGET_FRAMES:
            bank = np.pad(bank, ((0, 0), (0, TARGET_FRAMES - frames)))
        bank = bank[:, :TARGET_FRAMES]
        out.append(((bank - AUDIO_MEAN) / AUDIO_STD)[None])
    return np.stack(out).astype(np.float32)


def _duration(path: str | Path) -> float:
    proc = subprocess.run([_ffmpeg(), "-nostdin", "-i", str(path)], capture_output=True, check=False)
    found = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr.decode(errors="replace"))
    if not found:
        raise EmbeddingError(f"{path}: ffmpeg cannot read a duration")
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _frame_at(path: str | Path, seconds: float) -> Any:
    import io

    from PIL import Image

    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(path),
           "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        return None
    return Image.open(io.BytesIO(proc.stdout))


def video_clips(path: str | Path) -> NDArray[np.float32]:
    """ImageBind's video input for one file: ``(15, 3, 2, 224, 224)`` float32 (5 clips x 3
    spatial crops, 2 frames each). Raises EmbeddingError when no frame can be decoded."""
    duration = _duration(path)
    clips = []
    last = None
    for start in clip_starts(duration, VIDEO_CLIPS):
        frames = []
        for k in range(2):  # 2 frames per 2 s clip, uniformly: at 0 and at the clip end
            at = min(start + k * CLIP_SECONDS, max(duration - 0.05, 0.0))
            image = _frame_at(path, at) or last
            if image is None:
                raise EmbeddingError(f"{path}: ffmpeg cannot decode a video frame")
            last = image
            frames.append(_resize_crop(image, crops=(0, 1, 2)))
        for crop in range(3):
            clips.append(np.stack([frames[0][crop], frames[1][crop]], axis=1))
    return np.stack(clips).astype(np.float32)


# --- the embedder ----------------------------------------------------------------------------

class ImageBind:
    """ImageBind embedder (see the module docstring). Build with :func:`load_imagebind` or
    directly from a loaded model (tests). Output vectors are ``(n, out_embed_dim)`` float32,
    L2-normalised (ImageBind's own heads also scale text/audio logits; that is undone)."""

    modalities = frozenset({"text", "image", "audio", "video"})

    def __init__(self, model: Any, *, space: str, model_id: str, device: str = "cpu",
                 batch_size: int = 16) -> None:
        import torch

        _, preprocessors = import_model_code()
        bpe = Path(next(iter(sys.modules["imagebind"].__path__))) / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
        self._tokenizer = preprocessors.SimpleTokenizer(bpe_path=str(bpe))
        self._torch = torch
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.space = space
        self.model_id = model_id
        head = model.modality_heads["text"].proj[-1]
        self.dim = int(head.out_features)
        self._lock = threading.Lock()

    def _run(self, modality: str, batch: NDArray[Any]) -> NDArray[np.float32]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device)
            out = self.model({modality: tensor})[modality]
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    def _batched(self, modality: str, items: list[NDArray[Any]]) -> Vectors:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        clips = items[0].shape[0] if items[0].ndim >= 4 else 1  # video/audio: clips per file
        step = max(1, self.batch_size // clips)
        parts = [self._run(modality, np.stack(items[i:i + step])) for i in range(0, len(items), step)]
        return l2_normalise(np.concatenate(parts))

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """``(len(texts), dim)`` unit vectors of ``texts`` (77 BPE tokens each at most)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(list(texts)).numpy()
        if tokens.ndim == 1:
            tokens = tokens[None]
        return self._batched("text", list(tokens))

    def embed_images(self, paths: Sequence[str | Path]) -> Vectors:
        """``(len(paths), dim)`` unit vectors of image files. Raises EmbeddingError."""
        return self._batched("vision", [load_image(p) for p in paths])

    def embed_audio(self, paths: Sequence[str | Path]) -> Vectors:
        """``(len(paths), dim)`` unit vectors of audio files (3 clips averaged)."""
        return self._batched("audio", [audio_clips(decode_audio(p)) for p in paths])

    def embed_video(self, paths: Sequence[str | Path]) -> Vectors:
        """``(len(paths), dim)`` unit vectors of video files (15 clips averaged)."""
        return self._batched("vision", [video_clips(p) for p in paths])


def load_imagebind(config: EmbedConfig) -> ImageBind:
    """The embedder for ``[embed] backend = "imagebind"``: loads ``config.checkpoint`` on
    ``config.device``. Raises ConfigError (no checkpoint, extra not installed, CUDA asked but
    absent) or EmbeddingError (weights do not fit)."""
    info = imagebind_space(config)
    assert config.checkpoint is not None
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device is cuda but torch sees no CUDA GPU", key="embed.device")
    model, _arch = load_model(config.checkpoint, config.device)
    return ImageBind(model, space=info.space, model_id=info.model_id, device=config.device,
                     batch_size=config.batch_size)
