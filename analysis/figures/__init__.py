"""Figures from records, bench files and observations: the catalogue by name (``catalogue``), what
they share (``plotting``), the papers' observation figures (``observations``) and figures of our runs
(``from_records``)."""
