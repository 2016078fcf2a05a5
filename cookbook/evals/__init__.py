"""Eval tasks from YAML (``kind: eval``): examples (:mod:`.tasks`), the generate adapter over
any backend's sampling client (:mod:`.generate`), metrics and confidence intervals
(:mod:`.metrics`), the runner (:mod:`.runner`), ``cookbook-run specs/evals/X.yaml``
(:mod:`.command`) and tasks attached to a recipe's eval steps (:mod:`.attach`).

Nothing is imported here: :mod:`cookbook.supervised.recipe` imports :mod:`.attach`, and
:mod:`.command` imports the recipe module back.
"""
