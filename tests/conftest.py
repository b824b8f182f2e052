import pytest
import torch

from encoder_book.core import tiny_corpus, tiny_sentiment
from encoder_book.tokenizer import WordPieceTokenizer


@pytest.fixture(scope="session")
def texts():
    return tiny_corpus(200) + tiny_sentiment(400, seed=5)[0]


@pytest.fixture(scope="session")
def tok(texts):
    return WordPieceTokenizer.train(texts, vocab_size=300, progress=False)


@pytest.fixture(scope="session")
def vocab_dir(tok, tmp_path_factory):
    return tok.save_pretrained(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def hf_tok(vocab_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast.from_pretrained(str(vocab_dir))


@pytest.fixture(scope="module")
def one_thread():
    "Tiny models: threads would only wait for each other (and for the other jobs on a 2-core machine)."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
