"""Contracts shared by every layer, from the Django apps to the Django-free engines.

Plain Python with no imports from the project, so it sits below every layer (import-linter
checks it): schemas and their built-in seed data, nothing that reads a database or a model.
"""
