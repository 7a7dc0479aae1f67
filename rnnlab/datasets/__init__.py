"""Datasets: generated tasks and file loaders. Each module is self-contained; import what you need."""
from .seq2seq_data import (  # noqa: F401
    Vocabulary, addition_pairs, addition_splits, date_pairs, date_splits, load_pairs, pad_ids, split_pairs,
    keras_addition_pairs,
)
from .imdb import (  # noqa: F401
    decode_review, download_imdb, load_imdb_csv, load_imdb_folder, load_imdb_npz, load_word_index, read_imdb_csv,
    read_imdb_folder, save_imdb_npz,
)
from .text_corpus import (  # noqa: F401
    build_ptb_corpus, build_vocab, load_char_corpus, load_word_corpus, read_text, read_token_file, split_text,
)
