"""Statistics behind every claim: mean ± sd over calibration seeds and paired tests (``seeds``),
item-paired zero-shot tests (``items``), and the generated results page (``headline``)."""
