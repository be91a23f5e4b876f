"""IDX reading, the data-folder resolver and checksum verification, on tiny generated files."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from rnnlab.datasets import (CHECKSUMS, ENV_FOLDER, ENV_NO_VERIFY, data_folder, find_file,
                             read_idx, sha256_of, verify_file, write_idx)
from rnnlab.errors import ConfigError


def _one_line(exc):
    text = str(exc.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip_images_and_labels(tmp_path, name):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    write_idx(tmp_path / name, images)
    write_idx(tmp_path / ("labels-" + name), labels)
    got = read_idx(tmp_path / name, ndim=3)
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / ("labels-" + name), ndim=1), labels)
    raw = (gzip.open if name.endswith(".gz") else open)(tmp_path / name, "rb").read()
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:8] == (5).to_bytes(4, "big")  # the spec


def test_idx_multibyte_types_are_big_endian(tmp_path):
    a = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    write_idx(tmp_path / "a.idx", a)
    assert open(tmp_path / "a.idx", "rb").read()[:4] == b"\x00\x00\x0c\x02"
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    assert read_idx(tmp_path / "a.idx").dtype.isnative


def _write(path, data: bytes, gz=False):
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("data, ndim, words", [
    (b"\x01\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x01\x02", None, "bad magic"),
    (b"\x00\x00\x07\x01" + (2).to_bytes(4, "big") + b"\x01\x02", None, "unknown type code"),
    (b"\x00\x00\x08\x00", None, "0 dimensions"),
    (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x01\x02", 3, "expected 3"),
    (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), None, "inside its header"),
    (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02", None, "truncated"),
    (b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x01\x02", None, "longer than"),
    (b"\x00\x00", None, "truncated"),
])
def test_each_corruption_is_one_clear_error(tmp_path, gz, data, ndim, words):
    path = _write(tmp_path / ("f.gz" if gz else "f"), data, gz)
    with pytest.raises(ConfigError) as exc:
        read_idx(path, ndim=ndim)
    text = _one_line(exc)
    assert words in text and str(path) in text


def test_missing_and_broken_gzip_files(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_idx(tmp_path / "nothing.gz")
    assert "does not exist" in _one_line(exc)
    write_idx(tmp_path / "x.gz", np.zeros((100, 28, 28), np.uint8))
    whole = open(tmp_path / "x.gz", "rb").read()
    _write(tmp_path / "cut.gz", whole[: len(whole) // 2])
    with pytest.raises(ConfigError) as exc:
        read_idx(tmp_path / "cut.gz")
    assert "cannot be read" in _one_line(exc) and "cut.gz" in str(exc.value)
    _write(tmp_path / "junk.gz", b"\x1f\x8b" + b"junk" * 20)
    with pytest.raises(ConfigError):
        read_idx(tmp_path / "junk.gz")


def test_folder_comes_from_the_option_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_FOLDER, raising=False)
    with pytest.raises(ConfigError) as exc:
        data_folder(None)
    assert ENV_FOLDER in _one_line(exc) and "folder" in str(exc.value)
    monkeypatch.setenv(ENV_FOLDER, str(tmp_path))
    assert data_folder(None) == str(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert data_folder(str(other)) == str(other)  # the option wins over the environment
    with pytest.raises(ConfigError) as exc:
        data_folder(str(tmp_path / "absent"))
    assert "is not a folder" in _one_line(exc)


def test_files_are_found_in_the_dataset_subfolder_or_the_folder_itself(tmp_path):
    (tmp_path / "mnist").mkdir()
    _write(tmp_path / "mnist" / "a", b"1")
    _write(tmp_path / "b", b"2")
    assert find_file(str(tmp_path), "mnist", ("a.gz", "a")) == (
        os.path.join(str(tmp_path), "mnist", "a"), "mnist/a")
    assert find_file(str(tmp_path), "mnist", "b")[1] == "mnist/b"
    with pytest.raises(ConfigError) as exc:
        find_file(str(tmp_path), "mnist", ("c.gz", "c"))
    text = _one_line(exc)
    assert "c.gz or c" in text and "not found" in text and "yann.lecun.com" in text


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_NO_VERIFY, raising=False)
    path = str(_write(tmp_path / "train-labels-idx1-ubyte.gz", b"not mnist"))
    key = "mnist/train-labels-idx1-ubyte.gz"
    with pytest.raises(ConfigError) as exc:
        verify_file(path, key)
    text = _one_line(exc)
    assert path in text and CHECKSUMS[key] in text and sha256_of(path) in text
    verify_file(path, key, verify=False)            # the option skips it
    monkeypatch.setenv(ENV_NO_VERIFY, "1")
    verify_file(path, key)                          # and so does the environment
    verify_file(path, "mnist/unknown-file")         # files without a checksum are not checked


def test_known_checksums_match_the_shared_list():
    """The table covers every file of the data README's SHA256SUMS layout."""
    assert {k for k in CHECKSUMS if k.endswith(".gz") or k.startswith("ptb/")} == {
        "mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz",
        "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz",
        "ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt",
        "ptb/ptb.char.train.txt", "ptb/ptb.char.valid.txt", "ptb/ptb.char.test.txt"}
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in CHECKSUMS.values())


# ----------------------------------------------------------------------------- download
def _fake_server(monkeypatch, files):
    """urllib's urlopen answering from ``files`` (url -> bytes); records the urls asked for."""
    import io
    import urllib.error

    from rnnlab.datasets import files as module

    asked = []

    def urlopen(url, timeout=None):
        asked.append(url)
        if url not in files:
            raise urllib.error.URLError("Temporary failure in name resolution")
        return io.BytesIO(files[url])

    monkeypatch.setattr(module.urllib.request, "urlopen", urlopen)
    return asked


def test_download_command_fetches_verifies_derives_and_keeps(tmp_path, monkeypatch, capsys):
    """`rnnlab download` writes the PTB word files it fetches, derives the character files,
    checks every checksum, and on a second call keeps what is there without asking again."""
    from rnnlab.cli import main
    from rnnlab.datasets import files as module
    from rnnlab.datasets import ptb_char_text

    words = {s: f" the {s} cat sat \n a dog \n".encode() for s in ("train", "valid", "test")}
    served, sums = {}, dict(CHECKSUMS)
    for split, text in words.items():
        key = f"ptb/ptb.{split}.txt"
        served[module.URLS[key]] = text
        sums[key] = __import__("hashlib").sha256(text).hexdigest()
        char = ptb_char_text(text.decode()).encode()
        sums[f"ptb/ptb.char.{split}.txt"] = __import__("hashlib").sha256(char).hexdigest()
    monkeypatch.setattr(module, "CHECKSUMS", sums)
    asked = _fake_server(monkeypatch, served)
    assert main(["download", "--data", str(tmp_path), "--datasets", "ptb"]) == 0
    assert "6 files in place" in capsys.readouterr().out
    assert (tmp_path / "ptb" / "ptb.char.valid.txt").read_bytes() == ptb_char_text(
        words["valid"].decode()).encode()
    assert len(asked) == 3
    assert main(["download", "--data", str(tmp_path), "--datasets", "ptb"]) == 0
    assert len(asked) == 3  # nothing fetched again


def test_download_offline_or_corrupt_says_what_to_do(tmp_path, monkeypatch, capsys):
    from rnnlab.cli import main
    from rnnlab.datasets import files as module

    _fake_server(monkeypatch, {})
    assert main(["download", "--data", str(tmp_path), "--datasets", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot download" in err and "yann.lecun.com" in err
    assert str(tmp_path / "mnist") in err
    assert not list((tmp_path / "mnist").glob("*.part"))  # no partial file left behind
    _fake_server(monkeypatch, {url: b"not the file" for url in module.URLS.values()})
    assert main(["download", "--data", str(tmp_path), "--datasets", "mnist"]) == 2
    assert "checksum" in capsys.readouterr().err
    assert not list((tmp_path / "mnist").iterdir())


def test_download_needs_a_folder(monkeypatch, capsys):
    from rnnlab.cli import main

    monkeypatch.delenv(ENV_FOLDER, raising=False)
    assert main(["download"]) == 2
    assert ENV_FOLDER in capsys.readouterr().err
