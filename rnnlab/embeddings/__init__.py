"""Word embeddings: word2vec training, keyed vectors, vector files, embedding matrices and word maps."""
from .keyed_vectors import KeyedVectors, rankdata, spearman  # noqa: F401
from .word2vec import LineSentence, Word2Vec, batch_loss_and_grads  # noqa: F401
from .io import load_glove, load_vectors, load_word2vec_format, save_glove, save_word2vec_format  # noqa: F401
from .matrix import embedding_matrix  # noqa: F401
from .viz import pca_2d, plot_word_map  # noqa: F401
from .fasttext import FastText, FastTextKeyedVectors, ft_hash_bytes, ngram_hashes  # noqa: F401
from .fasttext_io import load_facebook_model, load_facebook_vectors, save_facebook_model  # noqa: F401
