"""The title tokenizer built from training titles."""

from cpfd.preprocess import build_word_tokenizer


def test_punctuated_training_words_are_not_unknown():
    titles = ["Top 10 days, you won't believe!", "Opinions? Visit https://x.com/a-b now.", "days of opinions"]
    tok = build_word_tokenizer(titles)
    unk = tok.convert_tokens_to_ids("[UNK]")
    ids = tok(titles)["input_ids"]
    assert sum(i == unk for row in ids for i in row) == 0  # every training word and mark is in the vocabulary
    assert tok.tokenize("Days, OPINIONS! unseen") == ["days", ",", "opinions", "!", "[UNK]"]


def test_plain_lowercase_titles_keep_one_token_per_word():
    titles = ["kalo miru tesa", "miru vipe"]
    tok = build_word_tokenizer(titles)
    assert tok.tokenize("kalo miru tesa vipe") == ["kalo", "miru", "tesa", "vipe"]
    assert len(tok) == 5 + 4  # the special tokens and the four words
