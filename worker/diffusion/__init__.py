"""The ML core: masking, schedules, sampling, generation, training and evaluation.

Usable without Celery, Flask or a database.
"""
