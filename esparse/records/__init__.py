"""Bookkeeping of runs: a record's name (``hashing``), its file (``store``), what made it
(``provenance``), its peak memory (``memory``), its W&B mirror (``wandb_logger``), the lock of a point
being computed (``claims``) and the pruned weights kept until it is done (``resume``).

Never imports ``esparse.run``: the run writes records, records know nothing of the run.
"""
