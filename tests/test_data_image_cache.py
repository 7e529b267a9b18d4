"""The generic pre-resized image cache (lfakit.data.image_cache): gray and RGB images written
here with OpenCV and Pillow, reuse, keys, atomic writes and errors naming the file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lfakit.data import image_cache as ic
from lfakit.data.image_cache import build_image_cache, image_cache_key, resize_to
from lfakit.errors import DataError, ParameterError


def _gray_pngs(folder: Path, n: int = 5, shape=(48, 40)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, size=shape, dtype=np.uint8)
        p = folder / f"g{i}.png"
        assert cv2.imwrite(str(p), img)
        out.append(p)
    return out


def _rgb_photos(folder: Path, n: int = 4, size=(64, 48)) -> list[Path]:
    """Landscape RGB photos (width 64, height 48), JPEG and PNG, written with Pillow."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        arr[: size[1] // 2, :, 0] = 255  # a red top half, to check the channel order
        arr[: size[1] // 2, :, 1:] = 0
        p = folder / (f"p{i}.jpg" if i % 2 else f"p{i}.png")
        Image.fromarray(arr, "RGB").save(p, **({"quality": 95} if p.suffix == ".jpg" else {}))
        out.append(p)
    return out


class Counting:
    """A preprocessing callable that counts its calls (one per decoded image)."""

    def __init__(self, fn=resize_to):
        self.fn, self.calls = fn, 0

    def __call__(self, img, size):
        self.calls += 1
        return self.fn(img, size)


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_gray_cache_holds_the_resized_images_and_is_reused_without_decoding(tmp_path):
    paths = _gray_pngs(tmp_path / "src")
    pre = Counting()
    first = build_image_cache(paths, 16, "L", pre, "area-v1", tmp_path / "cache", progress=False)
    assert isinstance(first, np.memmap) and first.mode == "r"
    assert first.shape == (5, 16, 16) and first.dtype == np.uint8 and pre.calls == 5
    for i, p in enumerate(paths):
        want = cv2.resize(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), (16, 16), interpolation=cv2.INTER_AREA)
        assert np.array_equal(first[i], want)
    files = _cache_files(tmp_path / "cache" / "images")
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".npy", ".json"}
    npy = next((tmp_path / "cache" / "images").glob("*.npy"))
    mtime = npy.stat().st_mtime_ns

    again = build_image_cache(paths, 16, "L", pre, "area-v1", tmp_path / "cache", progress=False)
    assert pre.calls == 5  # nothing decoded or preprocessed again
    assert npy.stat().st_mtime_ns == mtime and Path(again.filename) == npy
    assert np.array_equal(np.asarray(again), np.asarray(first))
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["shape"] == [5, 16, 16] and meta["mode"] == "L" and meta["preprocess"] == "area-v1"


def test_rgb_cache_of_landscape_photos_to_a_given_size(tmp_path):
    paths = _rgb_photos(tmp_path / "src")  # 64 x 48 (width x height)
    pre = Counting()
    arr = build_image_cache(paths, (24, 32), "RGB", pre, {"op": "area", "v": 1}, tmp_path / "c",
                            namespace="photos", progress=False)
    assert arr.shape == (4, 24, 32, 3) and arr.dtype == np.uint8 and pre.calls == 4
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            src = np.asarray(im.convert("RGB"))
        want = cv2.resize(src, (32, 24), interpolation=cv2.INTER_AREA)
        if p.suffix == ".png":
            assert np.array_equal(arr[i], want)
        else:  # two JPEG decoders may differ by a unit here and there
            assert np.abs(arr[i].astype(int) - want).max() <= 2
        top = arr[i, :10].reshape(-1, 3).mean(0)
        assert top[0] > 240 and top[1] < 15 and top[2] < 15, top  # red stays in channel 0 (RGB order)
    # a square size and the same photos in gray are other caches
    sq = build_image_cache(paths, 20, "RGB", pre, {"op": "area", "v": 1}, tmp_path / "c", namespace="photos", progress=False)
    gray = build_image_cache(paths, 20, "L", pre, {"op": "area", "v": 1}, tmp_path / "c", namespace="photos", progress=False)
    assert sq.shape == (4, 20, 20, 3) and gray.shape == (4, 20, 20) and pre.calls == 12
    luma = cv2.cvtColor(np.ascontiguousarray(sq[0]), cv2.COLOR_RGB2GRAY).astype(int)
    assert np.abs(gray[0].astype(int) - luma).max() <= 2  # gray = BT.601 luma (before vs after the resize)
    assert len(list((tmp_path / "c" / "photos").glob("*.npy"))) == 3


def test_key_changes_with_the_preprocessing_size_mode_and_files(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=3)
    base = image_cache_key(paths, 16, "L", {"clip": 2.0, "grid": [8, 8]})
    assert base == image_cache_key(paths, 16, "L", {"grid": [8, 8], "clip": 2.0})  # order of keys
    others = {
        image_cache_key(paths, 16, "L", {"clip": 3.0, "grid": [8, 8]}),
        image_cache_key(paths, 16, "L", {"clip": 2.0, "grid": [4, 4]}),
        image_cache_key(paths, 17, "L", {"clip": 2.0, "grid": [8, 8]}),
        image_cache_key(paths, (16, 17), "L", {"clip": 2.0, "grid": [8, 8]}),
        image_cache_key(paths, 16, "RGB", {"clip": 2.0, "grid": [8, 8]}),
        image_cache_key(paths[::-1], 16, "L", {"clip": 2.0, "grid": [8, 8]}),
        image_cache_key(paths[:2], 16, "L", {"clip": 2.0, "grid": [8, 8]}),
        image_cache_key(paths, 16, "L", {"clip": 2.0, "grid": [8, 8]}, fingerprint="content"),
    }
    assert base not in others and len(others) == 8

    pre = Counting()
    build_image_cache(paths, 16, "L", pre, "k1", tmp_path / "c", progress=False)
    build_image_cache(paths, 16, "L", pre, "k2", tmp_path / "c", progress=False)  # new key: rebuilt
    assert pre.calls == 6
    st = paths[1].stat()  # a source file rewritten (new mtime): rebuilt
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    build_image_cache(paths, 16, "L", pre, "k1", tmp_path / "c", progress=False)
    assert pre.calls == 9
    assert len(list((tmp_path / "c" / "images").glob("*.npy"))) == 3


def test_content_fingerprint_and_ids_keep_a_cache_across_touch_and_move(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=3)
    pre = Counting()
    kw = dict(cache_dir=tmp_path / "c", progress=False)
    build_image_cache(paths, 8, "L", pre, "k", fingerprint="content", **kw)
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
    build_image_cache(paths, 8, "L", pre, "k", fingerprint="content", **kw)
    assert pre.calls == 3
    build_image_cache(paths, 8, "L", pre, "k", fingerprint="stat", **kw)
    assert pre.calls == 6

    names = [p.name for p in paths]
    build_image_cache(paths, 8, "L", pre, "k", ids=names, **kw)
    assert pre.calls == 9
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "src", moved, copy_function=shutil.copy2)  # keeps mtimes
    new_paths = [moved / n for n in names]
    build_image_cache(new_paths, 8, "L", pre, "k", ids=names, **kw)
    assert pre.calls == 9  # keyed on the names: reused
    build_image_cache(new_paths, 8, "L", pre, "k", **kw)
    assert pre.calls == 12  # keyed on the (new) absolute paths by default: rebuilt


def _truncated_png(path: Path) -> Path:
    ok, buf = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8))
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    return path


@pytest.mark.parametrize("workers", [1, 3])
def test_corrupt_image_is_a_data_error_naming_it_and_leaves_no_cache(tmp_path, workers):
    paths = _gray_pngs(tmp_path / "src", n=6)
    bad = _truncated_png(tmp_path / "src" / "broken_0004.png")
    paths.insert(4, bad)
    pre = Counting()
    with pytest.raises(DataError) as err:
        build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", num_workers=workers, progress=False)
    msg = str(err.value)
    assert str(bad) in msg and "truncated" in msg and "Replace it with an intact copy" in msg
    assert _cache_files(tmp_path / "c" / "images") == []  # no cache, no temporary file
    bad_jpg = tmp_path / "src" / "cut.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad_jpg)
    bad_jpg.write_bytes(bad_jpg.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.jpg"):
        build_image_cache([paths[0], bad_jpg], 16, "RGB", pre, "k", tmp_path / "c", num_workers=workers, progress=False)
    assert _cache_files(tmp_path / "c" / "images") == []
    paths.remove(bad)
    assert build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", progress=False).shape == (6, 16, 16)


def test_missing_and_empty_files_are_reported_before_anything_is_written(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=2)
    pre = Counting()
    with pytest.raises(DataError, match="nope.png"):
        build_image_cache(paths + [tmp_path / "src" / "nope.png"], 8, "L", pre, "k", tmp_path / "c", progress=False)
    (tmp_path / "src" / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero\.png.*Replace it"):
        build_image_cache(paths + [tmp_path / "src" / "zero.png"], 8, "L", pre, "k", tmp_path / "c", progress=False)
    assert pre.calls == 0 and not (tmp_path / "c").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_build_leaves_nothing_and_the_next_call_builds(tmp_path, workers):
    paths = _gray_pngs(tmp_path / "src", n=8)

    class Interrupt(Counting):
        def __call__(self, img, size):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().__call__(img, size)

    with pytest.raises(KeyboardInterrupt):
        build_image_cache(paths, 16, "L", Interrupt(), "k", tmp_path / "c", num_workers=workers, progress=False)
    assert _cache_files(tmp_path / "c" / "images") == []
    pre = Counting()
    arr = build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", num_workers=workers, progress=False)
    assert pre.calls == 8 and arr.shape == (8, 16, 16)


def test_preprocessing_must_return_uint8_of_the_stated_shape(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=2)
    with pytest.raises(ParameterError, match=r"must return uint8 of shape \(16, 16\)"):
        build_image_cache(paths, 16, "L", lambda img, size: resize_to(img, 8), "k", tmp_path / "c", progress=False)
    with pytest.raises(ParameterError, match="dtype float32"):
        build_image_cache(paths, 16, "L", lambda img, size: resize_to(img, size).astype(np.float32), "k",
                          tmp_path / "c", progress=False)
    assert _cache_files(tmp_path / "c" / "images") == []

    def fails(img, size):
        raise ValueError("my bug")

    with pytest.raises(ValueError, match="my bug") as err:
        build_image_cache(paths, 16, "L", fails, "k", tmp_path / "c", num_workers=1, progress=False)
    if sys.version_info >= (3, 11):  # exceptions carry notes: the file being preprocessed is named
        assert any(str(paths[0]) in note for note in err.value.__notes__)
    assert _cache_files(tmp_path / "c" / "images") == []


def test_arguments_are_checked(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=1)
    with pytest.raises(ParameterError, match="give a key"):
        build_image_cache(paths, 8, "L", resize_to, None, tmp_path / "c")
    with pytest.raises(ParameterError, match="mode must be one of 'L', 'RGB'"):
        build_image_cache(paths, 8, "RGBA", None, None, tmp_path / "c")
    for size in (0, (8,), (8, 0), 2.5, True):
        with pytest.raises(ParameterError, match="size must be"):
            build_image_cache(paths, size, "L", cache_dir=tmp_path / "c")
    with pytest.raises(ParameterError, match="JSON"):
        build_image_cache(paths, 8, "L", resize_to, {"f": resize_to}, tmp_path / "c")
    with pytest.raises(ParameterError, match="namespace"):
        build_image_cache(paths, 8, "L", cache_dir=tmp_path / "c", namespace="../escape")
    with pytest.raises(ParameterError, match="fingerprint"):
        build_image_cache(paths, 8, "L", cache_dir=tmp_path / "c", fingerprint="sha")
    with pytest.raises(DataError, match="empty"):
        build_image_cache([], 8, "L", cache_dir=tmp_path / "c")
    with pytest.raises(ParameterError, match="list"):
        build_image_cache(str(paths[0]), 8, "L", cache_dir=tmp_path / "c")
    # the default preprocessing (INTER_AREA resize) needs no key; any iterable of paths works
    arr = build_image_cache(paths, (6, 10), "L", cache_dir=tmp_path / "c", progress=False)
    assert arr.shape == (1, 6, 10)
    again = build_image_cache(pd.Series([str(p) for p in paths]), (6, 10), "L", cache_dir=tmp_path / "c", progress=False)
    assert again.filename == arr.filename


def test_a_disk_without_room_is_reported_before_writing(tmp_path, monkeypatch):
    paths = _gray_pngs(tmp_path / "src", n=2)
    monkeypatch.setattr(ic.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    pre = Counting()
    with pytest.raises(DataError) as err:
        build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", progress=False)
    assert str(tmp_path / "c" / "images") in str(err.value) and "GiB free" in str(err.value)
    assert "cache_dir" in str(err.value) and pre.calls == 0
    assert _cache_files(tmp_path / "c" / "images") == []


def test_a_damaged_cache_file_is_rebuilt(tmp_path):
    paths = _gray_pngs(tmp_path / "src", n=3)
    pre = Counting()
    arr = build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", progress=False)
    want = np.array(arr)
    npy = Path(arr.filename)
    del arr
    npy.write_bytes(npy.read_bytes()[:100])  # cut short
    again = build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", progress=False)
    assert pre.calls == 6 and np.array_equal(np.asarray(again), want)
    npy.with_suffix(".json").write_text("{not json")
    build_image_cache(paths, 16, "L", pre, "k", tmp_path / "c", progress=False)
    assert pre.calls == 9


def test_resize_to_keeps_the_channel_axis_and_the_orientation():
    img = np.zeros((30, 40, 3), np.uint8)
    img[:, :20] = 200
    out = resize_to(img, (15, 20))
    assert out.shape == (15, 20, 3) and (out[:, :10] == 200).all() and (out[:, 10:] == 0).all()
    assert resize_to(img[:, :, :1], 10).shape == (10, 10, 1)
    same = resize_to(img, (30, 40))
    assert np.array_equal(same, img)


def test_progress_bar_counts_the_images(tmp_path, monkeypatch, capfd):
    paths = _gray_pngs(tmp_path / "src", n=4)
    monkeypatch.setenv("LFAKIT_PROGRESS", "text")  # plain tqdm, as under `lfakit run`
    build_image_cache(paths, 8, "L", cache_dir=tmp_path / "c", desc="my cache", num_workers=2)
    err = capfd.readouterr().err
    assert "my cache" in err and "4/4" in err


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_disk_filling_up_during_the_build_is_a_data_error(tmp_path, monkeypatch):
    import errno

    paths = _gray_pngs(tmp_path / "src", n=2)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ic.os, "posix_fallocate", full)
    with pytest.raises(DataError, match="which is full"):
        build_image_cache(paths, 16, "L", cache_dir=tmp_path / "c", progress=False)
    assert _cache_files(tmp_path / "c" / "images") == []

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(ic.os, "posix_fallocate", unsupported)  # e.g. a file system without it
    assert build_image_cache(paths, 16, "L", cache_dir=tmp_path / "c", progress=False).shape == (2, 16, 16)
