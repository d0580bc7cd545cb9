"""ImageBind backend with a tiny randomly initialised model built from Meta's model code.

Skipped unless ImageBind's model code (``imagebind-unofficial``, installed with ``--no-deps``)
and torch are importable; see the README's ImageBind section. No real weights are needed:
the model has the real architecture with tiny widths and depths.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("imagebind") is None:  # importing it would run its torchaudio imports
    pytest.skip("imagebind-unofficial is not installed", allow_module_level=True)

from handlers.search.config import EmbedConfig  # noqa: E402
from handlers.search.embedders import imagebind as ib  # noqa: E402

TINY: dict[str, Any] = {
    "vision_embed_dim": 32, "vision_num_blocks": 1, "vision_num_heads": 2,
    "text_embed_dim": 32, "text_num_blocks": 1, "text_num_heads": 2,
    "audio_embed_dim": 32, "audio_num_blocks": 1, "audio_num_heads": 2,
    "depth_embed_dim": 16, "depth_num_blocks": 1, "depth_num_heads": 2,
    "thermal_embed_dim": 16, "thermal_num_blocks": 1, "thermal_num_heads": 2,
    "imu_embed_dim": 16, "imu_num_blocks": 1, "imu_num_heads": 2,
    "out_embed_dim": 24,
}
DIM = 24


def _ffmpeg(*args: str) -> None:
    subprocess.run([ib._ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A landscape JPEG, a portrait PNG, a 3 s FLAC tone and a 3 s H.264 clip, made here."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("ibmedia")
    x = np.linspace(0, 255, 320, dtype=np.uint8)
    landscape = np.stack([np.tile(x, (240, 1)), np.tile(x[::-1], (240, 1)),
                          np.full((240, 320), 90, np.uint8)], -1)
    Image.fromarray(landscape).save(folder / "land.jpg", quality=90)
    portrait = np.zeros((300, 180, 3), np.uint8)
    portrait[:150] = (200, 30, 30)
    Image.fromarray(portrait).save(folder / "port.png")
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-ar", "44100", str(folder / "tone.flac"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=3:size=320x240:rate=10", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(folder / "clip.mp4"))
    return {"jpg": folder / "land.jpg", "png": folder / "port.png", "flac": folder / "tone.flac",
            "mp4": folder / "clip.mp4"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny ImageBindModel (seeded random weights) and its checkpoint file."""
    torch.manual_seed(1234)
    model = ib.build_model(TINY).eval()
    path = tmp_path_factory.mktemp("ibckpt") / "tiny_imagebind.pth"
    ib.save_checkpoint(model, TINY, path)
    return model, path


def _unit(vectors: np.ndarray, n: int) -> None:
    assert vectors.shape == (n, DIM)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_model_code_imports_without_torchvision_or_torchaudio() -> None:
    code = ("import sys; from handlers.search.embedders.imagebind import import_model_code; "
            "import_model_code(); "
            "heavy = ('torchvision', 'torchaudio', 'pytorchvideo', 'timm'); "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_every_modality_gives_unit_vectors(tiny: tuple[Any, Path], media: dict[str, Path]) -> None:
    _, path = tiny
    embedder = ib.load_imagebind(EmbedConfig(backend="imagebind", checkpoint=path, batch_size=2))
    assert embedder.dim == DIM
    assert embedder.space == "imagebind-tiny_imagebind"
    texts = embedder.embed_texts(["a dog on a beach", "a string quartet", "x" * 2000])
    _unit(texts, 3)
    assert not np.allclose(texts[0], texts[1])
    images = embedder.embed_images([media["jpg"], media["png"], media["jpg"]])
    _unit(images, 3)
    np.testing.assert_allclose(images[0], images[2], atol=1e-6)
    assert not np.allclose(images[0], images[1], atol=1e-3)
    _unit(embedder.embed_audio([media["flac"]]), 1)
    _unit(embedder.embed_video([media["mp4"]]), 1)


def test_saved_checkpoint_gives_the_same_vectors(tiny: tuple[Any, Path], media: dict[str, Path]) -> None:
    model, path = tiny
    direct = ib.ImageBind(model, space="t", model_id="t")
    loaded, arch = ib.load_model(path)
    assert arch == TINY
    reloaded = ib.ImageBind(loaded, space="t", model_id="t")
    for method, inputs in [("embed_texts", ["night train through snow"]),
                           ("embed_images", [media["jpg"]]), ("embed_audio", [media["flac"]])]:
        a = getattr(direct, method)(inputs)
        b = getattr(reloaded, method)(inputs)
        np.testing.assert_allclose(a, b, atol=1e-6)
    other = ib.ImageBind(ib.build_model(TINY).eval(), space="t", model_id="t")  # other random init
    assert not np.allclose(direct.embed_texts(["night train"]), other.embed_texts(["night train"]), atol=1e-3)


def test_preprocessing_shapes(media: dict[str, Path]) -> None:
    assert ib.load_image(media["png"]).shape == (3, 224, 224)
    wave = ib.decode_audio(media["flac"])
    assert abs(len(wave) - 3 * ib.SAMPLE_RATE) < 200
    assert ib.audio_clips(wave).shape == (3, 1, 128, 204)
    assert ib.kaldi_fbank(wave[:32000]).shape == (198, 128)  # 1 + (32000 - 400) // 160
    assert ib.video_clips(media["mp4"]).shape == (15, 3, 2, 224, 224)
    assert ib.clip_starts(10.0, 3) == [0.0, 4.0, 8.0]


def test_wrong_or_missing_weights_fail_clearly(tiny: tuple[Any, Path], tmp_path: Path) -> None:
    from harbord.errors import ConfigError, EmbeddingError

    model, _ = tiny
    raw = tmp_path / "imagebind_huge.pth"  # a raw state dict is read as the huge model: mismatch
    torch.save(model.state_dict(), raw)
    with pytest.raises(EmbeddingError, match="does not match"):
        ib.load_model(raw)
    with pytest.raises(ConfigError, match="never downloaded"):
        ib.load_model(tmp_path / "absent.pth")
    with pytest.raises(ConfigError):
        ib.imagebind_space(EmbedConfig(backend="imagebind"))


async def test_photo_item_is_embedded_from_its_image(tiny: tuple[Any, Path], media: dict[str, Path],
                                                    tmp_path: Path) -> None:
    pytest.importorskip("hnswlib")
    from handlers.search.reader import SpaceReader
    from handlers.search.service import SemanticIndex
    from harbord.catalog import Catalog, open_db
    from harbord.config import Config, PathsConfig
    from harbord.job import Job

    model, _ = tiny
    embedder = ib.ImageBind(model, space="imagebind-tiny", model_id="tiny")
    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "lib"))
    db = open_db(tmp_path / "h.db")
    catalog = Catalog(db)
    catalog.add_object("ab" * 32, 1, ".jpg", str(media["jpg"]))
    job = Job(id="1" * 32, path=str(media["jpg"]), file_hash="ab" * 32, media_type="photo",
              parsed={"title": "land"})
    item_id = catalog.upsert_item(job)
    service = SemanticIndex(config, db, embedder=embedder)
    inp = await service.input_for_item(item_id)
    assert inp.kind == "image" and inp.path == str(media["jpg"])
    assert await service.reembed_item(item_id) == {"imagebind-tiny": 0}
    await service.aclose()
    reader = SpaceReader(config.paths.state, db, "imagebind-tiny")
    hits = reader.search(embedder.embed_images([media["jpg"]])[0], 3)
    assert [h.item_id for h in hits] == [item_id]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
