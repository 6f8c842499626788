"""esparse entry point: one Hydra config → prune → eval → bench → a JSON record.

python run.py                                   # embedded default (SmolLM2-135M, esparse 2:4)
python run.py -m metric=magnitude,wanda,esparse pattern=2:4,4:8
python run.py +experiment=esparse_t1_local

A user error (config, data, model, hub) prints its message and exits 2 without a traceback; Ctrl-C,
SIGTERM and SIGHUP end the record ``interrupted``, release the point's claim and exit 130, 143 and
129 with a one-line hint to re-run the same command; HYDRA_FULL_ERROR=1 or ESPARSE_DEBUG=1 shows the
traceback.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf


def _debug() -> bool:
    return any(os.environ.get(k, "").strip() not in ("", "0") for k in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG"))


def _where(resolved: dict) -> str:
    """The record of this config, for the one-line report of an unexpected error."""
    from esparse.records import hashing, store
    from esparse.run.config import normalize

    try:
        cfg = normalize(resolved)
        return str(store.record_path(cfg["results_dir"], hashing.config_hash(cfg)))
    except Exception:  # the report must not fail on the config it reports
        return "the run's record"


def sweep_problems() -> list[str]:
    """In a ``-m`` sweep, every point's config problems (``esparse.run.config.validate``), named by
    the point's overrides; checked by the sweep's first job, so a bad point late in a sweep fails it
    before any point has run. Empty outside a sweep and in every later job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from esparse.run.config import ConfigError, normalize, validate

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or hc.job.num != 0:
        return []
    sweep = OmegaConf.load(os.path.join(hc.sweep.dir, "multirun.yaml"))  # written by the sweeper before any job
    params = [f"{k}={v}" for k, v in (OmegaConf.select(sweep, "hydra.sweeper.params") or {}).items()]
    args = params + list(OmegaConf.select(sweep, "hydra.overrides.task") or [])
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    (points,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    problems = []
    for point in points:
        resolved = OmegaConf.to_container(hydra.compose(config_name="config", overrides=point), resolve=True)
        try:
            validate(normalize(resolved))
        except ConfigError as e:
            swept = [o for o in point if not all(o in other for other in points)]  # what names this point
            problems += [f"point {' '.join(swept) or '(the only one)'}: {p}" for p in e.problems]
    return problems


def protocol_line(resolved: dict, overrides: list[str]) -> str:
    """The protocol this run follows, and where it came from: the command line, a preset, a paper
    model (its config selects the papers' C4 calibration and WikiText-2 evaluation), or the default
    (the embedded models' local protocol)."""
    cal, ppl, model = resolved["calibration"], resolved["eval"]["ppl"], resolved["model"]
    windows = f"{ppl.get('nsamples') or 'all'}×{ppl['seqlen']}"
    what = (f"calibration {cal['name']} {cal['nsamples']}×{cal['seqlen']} (seed {cal['seed']}), "
            f"perplexity on {', '.join(ppl.get('datasets') or []) or 'nothing'} "
            f"({ppl.get('split')} split, {windows} tokens), "
            f"{model.get('dtype')} on {resolved.get('device')}")  # fmt: skip
    named = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if any(k in ("calibration", "eval") or k.startswith(("calibration.", "eval.")) for k in named):
        return f"protocol: {what} (the command line sets it)"
    if resolved.get("experiment"):
        return f"protocol: {what} (preset {resolved['experiment']})"
    if model.get("source") == "hub":
        return (
            f"protocol: {what} (the papers' protocol, as model={model['name']} selects; calibration=/eval= override it)"
        )
    return f"protocol: {what} (the local protocol of the embedded models)"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from esparse.evaluation.zeroshot import ZeroShotDataError
    from esparse.models.arch import ModelMismatchError
    from esparse.models.loading import ModelNotFoundError
    from esparse.records.store import WriteError
    from esparse.run.config import ConfigError
    from esparse.run.data import DataUnavailableError
    from esparse.run.pipeline import run
    from esparse.run.record import summary_row

    log = logging.getLogger("esparse")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    try:
        problems = sweep_problems()
    except Exception as e:  # the early check must never stop a sweep it cannot read; each point still validates
        log.warning("sweep not validated up front (%s: %s); each point is validated as it runs", type(e).__name__, e)
        problems = []
    if problems:
        if _debug():
            raise ConfigError(problems)
        log.error("%s", ConfigError(problems).args[0].replace("invalid config:", "invalid sweep (no point was run):"))
        sys.exit(2)
    from hydra.core.hydra_config import HydraConfig

    print(protocol_line(resolved, list(HydraConfig.get().overrides.task)), flush=True)
    try:
        record = run(resolved)
    except (ConfigError, DataUnavailableError, ModelMismatchError, ModelNotFoundError, ZeroShotDataError) as e:
        if _debug():
            raise
        log.error("%s", e)
        sys.exit(2)
    except WriteError as e:  # a full disk or no permission: the path and the key that chose it
        if _debug():
            raise
        log.error("%s (the record keeps what finished; free space or choose another place, then re-run)", e)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (esparse.run.record.Interrupted)
        if _debug():
            raise
        by = getattr(e, "signal_name", "Ctrl-C")
        again = shlex.join([os.path.basename(sys.executable), *sys.argv])
        log.error(
            "interrupted by %s: %s says how far it got; re-run the same command to resume: %s",
            by,
            _where(resolved),
            again,
        )
        sys.exit(getattr(e, "exit_code", 130))
    except Exception as e:
        if _debug():
            raise
        log.error(
            "%s: %s\n(%s holds the traceback; HYDRA_FULL_ERROR=1 shows it here)", type(e).__name__, e, _where(resolved)
        )
        sys.exit(1)
    if record is None:
        print("skipped: another process is computing this point", flush=True)
        return
    row = summary_row(record)
    width = max(len(k) for k in row)
    print("\n".join(f"{k:>{width}} : {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
