"""A seeded synthetic sequence-classification task for the paper's text-classification experiment (Table II).

The paper trains a small transformer from scratch on "synthetic sequence classification" without saying
what the sequences are. This module pins one down that is cheap, offline, and -- the property that makes an
optimizer comparison on it meaningful -- *provably unsolvable from token counts*: the label is the direction
in which a sequence is written, so a model has to relate neighbouring positions (attention), not count tokens.

The task: which way is the text written?
----------------------------------------
A "language" has ``num_words`` words and a hidden word order, a cycle such as ``w3 -> w0 -> w5 -> ... -> w3``
drawn from the dataset seed. A text is a noisy walk along it: the first word is uniform, and each next word
is the cycle's successor of the previous one with probability ``follow_prob`` and a uniformly random word
otherwise. Label 0: the walk as generated ("forward"); label 1: the same walk written right to left
("backward"). Each sequence is ``seq_len - 1`` words followed by a ``<cls>`` token, the position
``LlamaForSequenceClassification`` pools (it reads the last non-padding token). Example (seed 0, whose
cycle is ``w0 w1 w7 w2 w4 w3 w6 w5``), a forward text with 8 cycle steps and the same text backward::

    w0 w4 w3 w6 w5 w0 w4 w3 w6 w1 w5 w0 w1 w1 w4 <cls>      label 0
    w4 w1 w1 w0 w5 w1 w6 w3 w4 w0 w5 w6 w3 w4 w0 <cls>      label 1

Why counts carry no information about the label: reversing a sequence does not change which tokens it holds,
and the label only decides whether the walk is reversed, so the bag of tokens has exactly the same
distribution under both labels -- *every* classifier of token counts, linear or not, is at chance (50%).
(The walk's transition matrix is doubly stochastic, so its uniform start is stationary and a reversed walk
is distributed exactly as a walk along the reversed cycle: "backward" is a language of its own, not an
artefact of the construction.) A model has to compare each word with its neighbour and aggregate the
evidence over the sequence: a previous-token attention head, a learned table of which pairs follow the
cycle, and a pooling step -- two attention layers' worth of work.

The best possible accuracy is known: the likelihood ratio of the two directions depends only on the counts
of forward and backward cycle steps, so the Bayes-optimal rule is "forward when forward steps outnumber
backward steps" (:func:`bayes_accuracy`; ~99% at the defaults). Difficulty is set by ``follow_prob`` and
``seq_len`` (evidence per sequence), ``num_words`` (pairs to learn) and the dataset size.

Determinism: generation uses ``numpy.random.Generator(PCG64(...))`` only, so a seed gives the same examples
on every platform (numpy keeps PCG64's stream stable). The cycle, the training split and the test split use
independent streams of the same seed, so held-out data never depends on how many training examples were
drawn, and the first ``m`` examples of a larger draw equal a draw of ``m``.

Example:
    >>> from hf_superpositional.tasks.direction import DirectionTaskConfig, generate_direction_task
    >>> cfg = DirectionTaskConfig()
    >>> data = generate_direction_task(4, seed=0, config=cfg)
    >>> data["input_ids"].shape, data["labels"].shape
    ((4, 16), (4,))
    >>> bool((data["input_ids"][:, -1] == cfg.cls_token_id).all())
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DirectionTaskConfig",
    "bayes_accuracy",
    "count_direction_steps",
    "decode_tokens",
    "direction_task_datasets",
    "generate_direction_task",
    "token_counts",
    "word_cycle",
]

_STREAMS = {"cycle": 0, "train": 1, "test": 2}
"""Independent PCG64 streams of one dataset seed."""

_BLOCK = 512
"""Examples drawn per child stream (always a whole block, so prefixes of draws agree)."""

PAD_TOKEN_ID = 0
CLS_TOKEN_ID = 1
FIRST_WORD_ID = 2


@dataclass
class DirectionTaskConfig:
    """Shape of the which-direction task (see the module docstring).

    Token ids: ``0`` is ``<pad>`` (never generated; models need a pad id), ``1`` is ``<cls>``, and the words
    ``w0 .. w{num_words-1}`` are ``2 .. num_words + 1``.

    Args:
        seq_len: tokens per sequence, including the final ``<cls>`` (>= 3).
        num_words: words of the language (>= 3, so no word pair can be a step both ways round the cycle).
        follow_prob: probability that the next word is the cycle's successor, in ``(0, 1]``; the rest of
            the time it is uniformly random. Higher means more evidence per sequence and an easier task.

    Example:
        >>> DirectionTaskConfig().vocab_size
        10
    """

    seq_len: int = field(default=16, metadata={"help": "Tokens per sequence, including the final <cls>."})
    num_words: int = field(default=8, metadata={"help": "Words of the synthetic language (>= 3)."})
    follow_prob: float = field(
        default=0.4, metadata={"help": "Probability the next word follows the hidden cycle (else uniform)."}
    )

    def __post_init__(self):
        for name, minimum in (("seq_len", 3), ("num_words", 3)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
            setattr(self, name, int(value))
        if isinstance(self.follow_prob, bool) or not isinstance(self.follow_prob, (int, float)):
            raise ValueError(f"`follow_prob` must be a number in (0, 1], got {self.follow_prob!r}.")
        if not 0.0 < float(self.follow_prob) <= 1.0:
            raise ValueError(f"`follow_prob` must be in (0, 1], got {self.follow_prob!r}.")
        self.follow_prob = float(self.follow_prob)

    pad_token_id = PAD_TOKEN_ID
    cls_token_id = CLS_TOKEN_ID

    @property
    def vocab_size(self) -> int:
        """Number of token ids (``<pad>`` and ``<cls>`` included)."""
        return FIRST_WORD_ID + self.num_words

    @property
    def num_labels(self) -> int:
        """Two: 0 = forward, 1 = backward."""
        return 2

    def vocabulary(self) -> list[str]:
        """Token strings by id: ``<pad>``, ``<cls>``, ``w0`` ...."""
        return ["<pad>", "<cls>"] + [f"w{i}" for i in range(self.num_words)]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, _STREAMS[stream]]))


def word_cycle(seed: int, config: DirectionTaskConfig | None = None) -> np.ndarray:
    """The hidden successor table of the language of ``seed``: ``successor[i]`` is the word after word ``i``.

    One cycle through all ``num_words`` words (so every word has one successor and one predecessor),
    indices are word numbers (token id minus 2).

    Example:
        >>> succ = word_cycle(0)
        >>> sorted(succ.tolist()) == list(range(8))  # a permutation ...
        True
        >>> w, steps = 0, 0
        >>> while True:
        ...     w, steps = int(succ[w]), steps + 1
        ...     if w == 0: break
        >>> steps  # ... made of a single cycle
        8
    """
    cfg = DirectionTaskConfig() if config is None else config
    seed = _check_int("seed", seed, 0)
    order = _rng(seed, "cycle").permutation(cfg.num_words)
    successor = np.empty(cfg.num_words, dtype=np.int64)
    successor[order] = np.roll(order, -1)
    return successor


def generate_direction_task(
    num_examples: int, seed: int, config: DirectionTaskConfig | None = None, split: str = "train"
) -> dict[str, np.ndarray]:
    """Draw ``num_examples`` labelled sequences of the which-direction task (module docstring).

    Args:
        num_examples: how many sequences (>= 1).
        seed: the dataset seed (>= 0): it fixes the language (the hidden cycle) and the examples.
        config: task shape (default :class:`DirectionTaskConfig()`).
        split: ``"train"`` or ``"test"``: independent streams of the same seed and language.

    Returns:
        ``{"input_ids": int64 [n, seq_len], "labels": int64 [n]}``; labels are balanced in expectation.

    Raises:
        ValueError: a bad ``num_examples``, ``seed`` or ``split``.

    Example:
        >>> data = generate_direction_task(1000, seed=0)
        >>> bool(0.45 < data["labels"].mean() < 0.55)
        True
    """
    num_examples = _check_int("num_examples", num_examples, 1)
    seed = _check_int("seed", seed, 0)
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be one of ['test', 'train'], got {split!r}.")
    cfg = DirectionTaskConfig() if config is None else config
    successor = word_cycle(seed, cfg)
    n_words = cfg.seq_len - 1
    labels = np.empty(num_examples, dtype=np.int64)
    words = np.empty((num_examples, n_words), dtype=np.int64)
    # Vectorised over blocks of examples, each block drawn from its own child stream of (seed, split): a
    # prefix of a larger draw is then exactly a smaller draw, whatever the block boundaries cut.
    for start in range(0, num_examples, _BLOCK):
        rng = np.random.Generator(np.random.PCG64([seed, _STREAMS[split], start // _BLOCK]))
        size = _BLOCK
        block_labels = rng.integers(0, 2, size=size)
        walk = np.empty((size, n_words), dtype=np.int64)
        walk[:, 0] = rng.integers(0, cfg.num_words, size=size)
        follow = rng.random((size, n_words)) < cfg.follow_prob
        noise = rng.integers(0, cfg.num_words, size=(size, n_words))
        for t in range(1, n_words):
            walk[:, t] = np.where(follow[:, t], successor[walk[:, t - 1]], noise[:, t])
        stop = min(start + size, num_examples)
        labels[start:stop] = block_labels[: stop - start]
        words[start:stop] = walk[: stop - start]
    backward = labels == 1
    words[backward] = words[backward, ::-1]
    input_ids = np.empty((num_examples, cfg.seq_len), dtype=np.int64)
    input_ids[:, :n_words] = words + FIRST_WORD_ID
    input_ids[:, n_words] = CLS_TOKEN_ID
    return {"input_ids": input_ids, "labels": labels}


def direction_task_datasets(
    num_train: int, num_test: int, seed: int = 0, config: DirectionTaskConfig | None = None
):
    """Train and held-out splits as a ``datasets.DatasetDict`` with ``input_ids``, ``attention_mask``, ``labels``.

    Sequences have one length and no padding, so the Trainer's default collator stacks them as they are.

    Args:
        num_train: training examples.
        num_test: held-out examples (the ``"test"`` stream of ``seed``: same language, different texts).
        seed: dataset seed.
        config: task shape.

    Example:
        >>> splits = direction_task_datasets(64, 32, seed=0)
        >>> splits["train"].num_rows, splits["test"].num_rows, splits["train"].column_names
        (64, 32, ['input_ids', 'attention_mask', 'labels'])
    """
    from datasets import Dataset, DatasetDict

    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        data = generate_direction_task(count, seed, config, split=split)
        splits[split] = Dataset.from_dict(
            {
                "input_ids": data["input_ids"].tolist(),
                "attention_mask": np.ones_like(data["input_ids"]).tolist(),
                "labels": data["labels"].tolist(),
            }
        )
    return DatasetDict(splits)


def count_direction_steps(
    input_ids: np.ndarray, seed: int, config: DirectionTaskConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, how many neighbouring word pairs step forward and backward along the hidden cycle.

    Returns:
        ``(forward, backward)``, int64 ``[n]`` each. ``<cls>`` and ``<pad>`` are not words and never count.
    """
    cfg = DirectionTaskConfig() if config is None else config
    successor = word_cycle(seed, cfg)
    ids = np.asarray(input_ids)
    words = ids - FIRST_WORD_ID
    valid = (words[:, :-1] >= 0) & (words[:, 1:] >= 0)
    prev, nxt = np.clip(words[:, :-1], 0, None), np.clip(words[:, 1:], 0, None)
    forward = ((successor[prev] == nxt) & valid).sum(axis=1)
    backward = ((successor[nxt] == prev) & valid).sum(axis=1)
    return forward.astype(np.int64), backward.astype(np.int64)


def bayes_accuracy(
    input_ids: np.ndarray, labels: np.ndarray, seed: int, config: DirectionTaskConfig | None = None
) -> float:
    """Expected accuracy of the Bayes-optimal classifier on these examples (the task's ceiling).

    With ``num_words >= 3`` no word pair is a cycle step both ways, so the log-likelihood ratio of forward
    against backward is ``(forward_steps - backward_steps) * log(1 + follow_prob * num_words / (1 -
    follow_prob))``: the optimal rule predicts "forward" when forward steps outnumber backward ones, and
    guesses on ties (counted as half right).

    Example:
        >>> data = generate_direction_task(2000, seed=0)
        >>> 0.95 < bayes_accuracy(data["input_ids"], data["labels"], seed=0) < 1.0
        True
    """
    forward, backward = count_direction_steps(input_ids, seed, config)
    labels = np.asarray(labels)
    correct = np.where(forward > backward, labels == 0, labels == 1).astype(float)
    correct[forward == backward] = 0.5
    return float(correct.mean())


def token_counts(input_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Bag-of-tokens features: ``counts[i, t]`` = occurrences of token ``t`` in sequence ``i``.

    Example:
        >>> token_counts(np.array([[2, 3, 3]]), vocab_size=4).tolist()
        [[0, 0, 1, 2]]
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must be 2-D [examples, seq_len], got shape {input_ids.shape}.")
    if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(f"`input_ids` must lie in [0, vocab_size={vocab_size}).")
    rows = np.repeat(np.arange(input_ids.shape[0]), input_ids.shape[1])
    counts = np.zeros((input_ids.shape[0], vocab_size), dtype=np.int64)
    np.add.at(counts, (rows, input_ids.reshape(-1)), 1)
    return counts


def decode_tokens(input_ids, config: DirectionTaskConfig | None = None) -> str:
    """One sequence as words, for reading examples (``"w3 w0 w5 ... <cls>"``).

    Example:
        >>> decode_tokens([2, 7, 1])
        'w0 w5 <cls>'
    """
    vocabulary = (DirectionTaskConfig() if config is None else config).vocabulary()
    return " ".join(vocabulary[int(t)] for t in input_ids)
