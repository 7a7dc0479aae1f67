"""Datasets: generated tasks and file loaders. Each module is self-contained; import what you need."""
from .imdb import (  # noqa: F401
    decode_review, download_imdb, load_imdb_csv, load_imdb_folder, load_imdb_npz, load_word_index, read_imdb_csv,
    read_imdb_folder, save_imdb_npz,
)
