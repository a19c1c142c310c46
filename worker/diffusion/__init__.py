"""The ML core: masking, schedules, sampling, generation, training and evaluation.

Usable without Celery, Flask or a database; of the rest of the repository it imports only
`shared.contracts` (the specs).

"The seed project", where a docstring compares with it, is the design this package grew
from: the Hugging Face `Trainer` with a variable-ratio masking collator (one mask ratio
per batch from a grid, mean cross-entropy over the masked tokens), a `--quick-test` preset
on distilroberta-base and wikitext-2, and generation by random re-masking (fill every
position, then re-mask a random subset) under a linear, cosine or exponential schedule.
"""
