"""Decoding image files (lfakit.data.image_decode): PNG checks, OpenCV kept quiet on corrupt
files, DataError naming the file, conversions to 8-bit gray and RGB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lfakit.data import image_decode as dec
from lfakit.errors import DataError, ParameterError


def _png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _gradient(h=64, w=64) -> np.ndarray:
    return (np.arange(h * w) % 251).astype(np.uint8).reshape(h, w)


def _corrupt_pngs(folder: Path) -> dict[str, Path]:
    """PNGs damaged in the ways that make OpenCV or libpng print: a flipped byte in the image
    data, a truncated file, junk after the signature."""
    good = _png_bytes(_gradient())
    i = good.find(b"IDAT")
    flipped = bytearray(good)
    flipped[i + 10] ^= 0xFF
    files = {
        "flipped": (folder / "flipped_byte.png", bytes(flipped)),
        "truncated": (folder / "truncated.png", good[: len(good) // 2]),
        "junk": (folder / "junk.png", dec.PNG_SIGNATURE + b"not an image at all"),
    }
    out = {}
    for key, (path, data) in files.items():
        path.write_bytes(data)
        out[key] = path
    return out


def test_corrupt_png_prints_nothing_and_raises_data_error_naming_the_file(tmp_path):
    files = _corrupt_pngs(tmp_path)
    script = textwrap.dedent(
        """
        import json, sys
        import cv2, numpy as np
        from lfakit.data.image_decode import read_image
        from lfakit.errors import DataError
        before = cv2.utils.logging.getLogLevel()
        out = {}
        for path in sys.argv[1:]:
            try:
                read_image(path)
                out[path] = None
            except DataError as e:
                out[path] = str(e)
        out["level_restored"] = cv2.utils.logging.getLogLevel() == before
        sys.stdout.write(json.dumps(out))
        sys.stdout.flush()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, *map(str, files.values())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # neither OpenCV's logging nor libpng wrote anything
    res = json.loads(proc.stdout)
    assert res.pop("level_restored") is True
    for path in files.values():
        msg = res[str(path)]
        assert msg is not None and str(path) in msg and "Replace it with an intact copy" in msg
    assert "fails its CRC check" in res[str(files["flipped"])]
    assert "truncated" in res[str(files["truncated"])]

    # control: the same files given to OpenCV directly do print (so the check above can fail)
    raw = "import sys, cv2, numpy as np\nfor p in sys.argv[1:]: cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_UNCHANGED)"
    noisy = subprocess.run([sys.executable, "-c", raw, *map(str, files.values())],
                           capture_output=True, text=True, timeout=120)
    assert noisy.stderr.strip() != ""


def test_opencv_failure_after_the_png_check_is_quiet_too(tmp_path, capfd):
    """A file OpenCV cannot read at all (not PNG): its 'can't read'-style logging is silenced."""
    junk = tmp_path / "00000042_000.png"
    junk.write_bytes(b"GIF89a" + b"\x00" * 40)  # claims GIF, is nothing
    with pytest.raises(DataError, match="00000042_000.png"):
        dec.read_image(junk)
    bmp = tmp_path / "short.bmp"
    bmp.write_bytes(b"BM" + b"\x00" * 10)
    with pytest.raises(DataError, match="short.bmp"):
        dec.read_image(bmp, "RGB")
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    # control: OpenCV on its own logs "imdecode_(''): can't read header" for these files
    for p in (junk, bmp):
        assert cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_UNCHANGED) is None
    assert "can't read header" in capfd.readouterr().err


def test_check_png_accepts_sound_files_and_names_what_is_wrong():
    good = _png_bytes(_gradient())
    assert dec.check_png(good) is None
    assert dec.check_png(_png_bytes(np.dstack([_gradient()] * 3 + [np.full((64, 64), 255, np.uint8)]))) is None
    assert dec.check_png(_png_bytes(_gradient().astype(np.uint16) * 257)) is None
    assert dec.check_png(good + b"trailing bytes are ignored") is None
    assert dec.check_png(b"GIF89a") == "no PNG signature"
    cut = dec.check_png(good[:-12])  # IEND removed
    assert cut.startswith("truncated") and "IEND" in cut
    bad = bytearray(good)
    bad[40] ^= 0x01
    assert "CRC" in dec.check_png(bytes(bad))
    # a valid file without image data
    ihdr = good[8:33]
    iend = good[-12:]
    assert dec.check_png(dec.PNG_SIGNATURE + ihdr + iend) == "no IDAT chunk (no image data)"
    # an IHDR with a bit depth PNG does not allow (CRC recomputed so only the content is wrong)
    data = bytearray(ihdr[8:21])
    data[8] = 3
    chunk = len(data).to_bytes(4, "big") + b"IHDR" + bytes(data) + zlib.crc32(b"IHDR" + bytes(data)).to_bytes(4, "big")
    assert "bit depth 3" in dec.check_png(dec.PNG_SIGNATURE + chunk + good[33:])


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nothere.png.*not found"):
        dec.read_image(tmp_path / "nothere.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png.*empty \(0 bytes\)"):
        dec.read_image(tmp_path / "empty.png")
    with pytest.raises(ParameterError, match="mode"):
        dec.read_image(tmp_path / "empty.png", "rgb")


def test_read_image_gray_and_rgb_from_files_written_by_pillow(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 9, np.uint8)]), "RGBA").save(tmp_path / "c4.png")
    Image.fromarray(rgb[:, :, 0], "L").save(tmp_path / "g.png")
    Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.jpg", quality=92)

    assert np.array_equal(dec.read_image(tmp_path / "c.png", "RGB"), rgb)  # RGB order, not BGR
    assert np.array_equal(dec.read_image(tmp_path / "c4.png", "RGB"), rgb)  # alpha dropped
    assert np.array_equal(dec.read_image(tmp_path / "g.png", "RGB"), np.dstack([rgb[:, :, 0]] * 3))
    assert np.array_equal(dec.read_image(tmp_path / "g16.png", "L"), rgb[:, :, 1])  # 16 -> 8 bits by range
    assert np.array_equal(dec.read_image(tmp_path / "c.png", "L"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    jpg = dec.read_image(tmp_path / "c.jpg", "RGB")
    with Image.open(tmp_path / "c.jpg") as im:
        assert np.abs(jpg.astype(int) - np.asarray(im)).max() <= 2
    assert jpg.shape == (20, 30, 3) and jpg.dtype == np.uint8


def test_to_uint8_rgb_conversions():
    g16 = np.array([[0, 257], [32768, 65535]], np.uint16)
    out = dec.to_uint8_rgb(g16)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[:, :, 0].tolist() == [[0, 1], [128, 255]] and (out[:, :, 0] == out[:, :, 2]).all()
    bgra = np.zeros((1, 2, 4), np.uint8)
    bgra[0, 0] = (255, 0, 0, 7)  # blue in OpenCV's order
    assert dec.to_uint8_rgb(bgra, "bgr")[0, 0].tolist() == [0, 0, 255]
    assert dec.to_uint8_rgb(np.array([[0.0, 1.0]]))[0, 1].tolist() == [255, 255, 255]
    with pytest.raises(DataError, match="shape"):
        dec.to_uint8_rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ParameterError):
        dec.to_uint8_rgb(bgra, "brg")


def test_quiet_opencv_nests_across_threads_and_restores_the_level():
    log = cv2.utils.logging
    before = log.getLogLevel()
    try:
        log.setLogLevel(log.LOG_LEVEL_INFO)
        inside, entered, go = [], threading.Event(), threading.Event()

        def worker():
            with dec.quiet_opencv():
                entered.set()
                go.wait(5)
                inside.append(log.getLogLevel())

        t = threading.Thread(target=worker)
        with dec.quiet_opencv():
            t.start()
            assert entered.wait(5)
            with dec.quiet_opencv():
                assert log.getLogLevel() == log.LOG_LEVEL_SILENT
        # the main thread's blocks ended, the worker's has not: still silent
        assert log.getLogLevel() == log.LOG_LEVEL_SILENT
        go.set()
        t.join(5)
        assert inside == [log.LOG_LEVEL_SILENT]
        assert log.getLogLevel() == log.LOG_LEVEL_INFO
    finally:
        log.setLogLevel(before)


# ------------------------------------------------------------------ the cheap check of a file's two ends


def test_check_image_ends_finds_cut_and_foreign_files_but_not_inner_damage(tmp_path):
    """check_image_ends reads 33 bytes and the last 4 KB: truncation, an empty file and a bad
    IHDR are named; damage inside the image data is left to the decoder (read_image)."""
    bad = _corrupt_pngs(tmp_path)
    good_png = tmp_path / "good.png"
    good_png.write_bytes(_png_bytes(_gradient()))
    ok, jpg = cv2.imencode(".jpg", np.dstack([_gradient(256, 256)] * 3))
    good_jpg = tmp_path / "good.jpg"
    good_jpg.write_bytes(jpg.tobytes())
    cut_jpg = tmp_path / "cut.jpg"
    cut_jpg.write_bytes(jpg.tobytes()[: len(jpg) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ihdr = bytearray(good_png.read_bytes())
    ihdr[17] ^= 0x01  # the width changes, the IHDR CRC no longer matches
    bad_ihdr = tmp_path / "bad_ihdr.png"
    bad_ihdr.write_bytes(bytes(ihdr))
    other = tmp_path / "image.bmp"
    other.write_bytes(b"BM" + b"\0" * 100)

    assert dec.check_image_ends(good_png) is None and dec.check_image_ends(good_jpg) is None
    assert "truncated PNG" in dec.check_image_ends(bad["truncated"])
    assert "without a complete IHDR" in dec.check_image_ends(bad["junk"])
    assert "truncated JPEG" in dec.check_image_ends(cut_jpg)
    assert dec.check_image_ends(empty) == "empty (0 bytes)"
    assert "IHDR chunk fails its CRC" in dec.check_image_ends(bad_ihdr)
    assert dec.check_image_ends(tmp_path / "absent.png") == "missing"
    assert dec.check_image_ends(other) is None  # another format: the decoder's to judge
    assert dec.check_image_ends(bad["flipped"]) is None  # inner damage: found when decoded
    with pytest.raises(DataError, match="flipped_byte.png"):
        dec.read_image(bad["flipped"])


def test_check_image_files_names_the_bad_files_and_the_fix(tmp_path):
    bad = _corrupt_pngs(tmp_path)
    good = []
    for i in range(7):
        p = tmp_path / f"ok_{i}.png"
        p.write_bytes(_png_bytes(_gradient()))
        good.append(p)
    dec.check_image_files(good, "test images")  # sound files: no error
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DataError) as err:
        dec.check_image_files([*good, bad["truncated"], bad["junk"], bad["flipped"]], "test images")
    msg = str(err.value)
    assert msg.startswith("2 of 10 test images are damaged:")
    assert "truncated.png' is a truncated PNG" in msg and "junk.png" in msg and "flipped_byte.png" not in msg
    assert dec.FIX_HINT in msg
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # only read
