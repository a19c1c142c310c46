"""Pure contracts: the job specs and the bound's arithmetic.

Only pydantic and the standard library. This is the one part of ``shared`` that the ML core
(``worker/diffusion``) may import; database, queue, settings and storage modules it may not
(``tests/test_layers.py`` enforces it).
"""
