"""Paper tables from run records alone (``results/runs/*.json``), beside the papers' numbers.

``python -m analysis tables`` writes ``results/tables/<name>.{md,csv,tex}``; see README.md here.
Nothing in this package imports torch or esparse, so tables build in seconds anywhere.
"""
