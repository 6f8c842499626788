"""Paper tables from records: the papers' numbers (``reference``), which record fills which cell
(``matching``, ``bench_tables``), the registry (``paper_tables``) and the files (``render``); plus the
records browser (``browser``) and the W&B copy (``wandb_tables``)."""
