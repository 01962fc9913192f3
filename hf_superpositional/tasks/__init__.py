"""The tasks tier: what the paper trains on.

- :mod:`.gsm8k`: GSM8K data, chat formatting, evaluation, the accuracy metric, the offline tokenizer, and
  the arguments of the GSM8K scripts;
- :mod:`.direction`: the seeded synthetic text-classification task of the Table II reproduction.
"""
