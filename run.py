"""esparse entry point: one Hydra config → prune → eval → bench → a JSON record.

python run.py                                   # embedded default (SmolLM2-135M, esparse 2:4)
python run.py -m metric=magnitude,wanda,esparse pattern=2:4,4:8
python run.py +experiment=esparse_t1_local
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from esparse.config import ConfigError
    from esparse.pipeline import run, summary_row

    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    try:
        record = run(resolved)
    except ConfigError as e:
        logging.getLogger("esparse").error("%s", e)
        sys.exit(2)
    row = summary_row(record)
    width = max(len(k) for k in row)
    print("\n".join(f"{k:>{width}} : {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
