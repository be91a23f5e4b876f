"""Readers for the real datasets (MNIST's IDX files, Penn Treebank text), the data-folder
resolver, checksum verification and :func:`download`. rnnlab ships no data; see
``data/README.md`` for where the files come from and how rnnlab finds them."""
from .files import (CHECKSUMS, ENV_FOLDER, ENV_NO_VERIFY, data_folder, download, find_file,
                    ptb_char_text, sha256_of, verify_file)
from .idx import read_idx, write_idx

__all__ = ["CHECKSUMS", "ENV_FOLDER", "ENV_NO_VERIFY", "data_folder", "download", "find_file",
           "ptb_char_text", "read_idx", "sha256_of", "verify_file", "write_idx"]
