"""Running the method on one config: validate it, check what it points at before the model loads,
read the corpora and calibration windows, and execute prune -> eval -> bench into one record.

Imports the method (``esparse.*``) and the bookkeeping (``esparse.records``); neither imports it.
"""
