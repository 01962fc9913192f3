"""A small tokenizer trained offline, so recipes and tests run without the Hugging Face Hub.

Real runs use the base model's own tokenizer (``AutoTokenizer.from_pretrained(model_id)``). For the
tiny offline configurations we train a byte-level BPE on the bundled GSM8K sample in about a second
and give it a chat template in the same shape as instruction-tuned models have, so that exactly the
same formatting code runs offline and at full scale. :func:`load_tokenizer` picks the tokenizer that a
run's :class:`~.arguments.ModelArguments` ask for.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerFast

from ...integrations.transformers import ArgumentsError
from .arguments import ModelArguments

SPECIAL_TOKENS = {
    "bos_token": "<|bos|>",
    "eos_token": "<|eos|>",
    "pad_token": "<|pad|>",
    "unk_token": "<|unk|>",
}
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")

# Same structure as common instruction templates: each turn is "<|role|>content<|end|>", and the
# generation prompt opens the assistant turn. `{% generation %}` marks the assistant content so
# `return_assistant_tokens_mask=True` can locate it for loss masking.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% else %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_offline_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``, with special tokens and a chat template.

    Deterministic for the same texts and vocabulary size.

    Args:
        texts: training corpus (e.g. GSM8K questions and answers).
        vocab_size: target vocabulary size, at least 300 (256 byte symbols plus specials).

    Returns:
        A ``PreTrainedTokenizerFast`` that can be saved with ``save_pretrained`` and reloaded with
        ``AutoTokenizer.from_pretrained(folder)``.

    Example:
        >>> tok = train_offline_tokenizer(["Natalia sold 48 clips.", "#### 72"], vocab_size=300)
        >>> tok.decode(tok("#### 72")["input_ids"])
        '#### 72'
    """
    if not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size must be an int >= 300 (256 bytes + special tokens), got {vocab_size!r}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + list(ROLE_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        additional_special_tokens=list(ROLE_TOKENS),
        **SPECIAL_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(model_args: ModelArguments, training_texts: Iterable[str] | None = None):
    """The tokenizer ``model_args`` asks for, with a pad token.

    Args:
        model_args: the model arguments.
        training_texts: the corpus for ``train_tokenizer`` (e.g. GSM8K questions and answers).

    Returns:
        A ``PreTrainedTokenizerFast`` with a chat template and a pad token (the end-of-sequence token when
        the tokenizer has none, as for Llama 3).

    Example:
        >>> from hf_superpositional.tasks.gsm8k.arguments import ModelArguments
        >>> tok = load_tokenizer(ModelArguments(model_type="llama", train_tokenizer=True, tokenizer_vocab_size=300),
        ...                      ["What is 2+2?", "#### 4"])
        >>> tok.pad_token
        '<|pad|>'
    """
    if model_args.train_tokenizer:
        if training_texts is None:
            raise ArgumentsError("`train_tokenizer` needs the training texts.")
        tokenizer = train_offline_tokenizer(list(training_texts), vocab_size=model_args.tokenizer_vocab_size)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss, so reusing EOS as pad changes nothing.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise ArgumentsError(
            f"the tokenizer of {model_args.tokenizer_name or model_args.model_name_or_path!r} has no chat template; "
            "GSM8K formatting needs one (use an instruction-tuned model's tokenizer)."
        )
    return tokenizer
