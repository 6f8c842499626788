"""Checks of records against the committed reference records (``drift``)."""
