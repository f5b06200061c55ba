"""The main job (`mvp run`): store -> corpus -> services -> synthesis -> eval -> train -> eval ->
serve -> report, each a visible, timed stage (one module each under ``mvp.pipeline.stages``).
It talks to the services only through their gRPC clients and child processes; everything it
starts is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mvp.common.storage import Storage
from mvp.pipeline.config import RunConfig
from mvp.pipeline.context import Context
from mvp.pipeline.report import write_report
from mvp.pipeline.stages import corpus, evaluation, services, serving, store, synthesis, training
from mvp.pipeline.state import RunState, StageRecord
from mvp.pipeline.supervisor import StageError, Supervisor

log = logging.getLogger(__name__)

T = TypeVar("T")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Pipeline:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.out = config.out.resolve()
        self.state = RunState(config)
        self.ctx = Context(config, self.out, Supervisor(self.out / "logs"))

    def stage(self, name: str, func: Callable[[], tuple[T, str]], *, missing: str | None = None) -> T | None:
        """Runs one stage (timed, recorded, its one-line result printed) and returns its result;
        ``missing`` skips it with that reason (the result is then None)."""
        record = StageRecord(name)
        self.state.stages.append(record)
        say(f"\n== [{len(self.state.stages)}] {name}")
        if missing:
            record.status, record.detail = "skipped", missing
            say(f"   skipped: {missing}")
            return None
        self.ctx.sup.check_interrupted()
        record.status = "running"
        t0 = time.perf_counter()
        try:
            result, record.detail = func()
            record.status = "ok"
        except StageError as exc:
            record.status, record.detail = "failed", str(exc)
            raise StageError(f"stage '{name}' failed: {exc} (logs in {self.out / 'logs'})") from exc
        except Exception as exc:
            record.status, record.detail = "failed", f"{type(exc).__name__}: {exc}"
            raise StageError(f"stage '{name}' failed: {exc} (logs in {self.out / 'logs'})") from exc
        finally:
            record.seconds = round(time.perf_counter() - t0, 2)
        say(f"   done in {record.seconds:.1f}s{': ' + record.detail if record.detail else ''}")
        return result

    def stages(self) -> None:
        """The run: each stage's typed result feeds the next ones and is recorded for the report."""
        st, ctx, models = self.state, self.ctx, self.ctx.models
        st.store = self.stage("store", lambda: store.run(ctx))
        st.corpus = self.stage("corpus", lambda: corpus.run(ctx, st.store))
        st.services = self.stage("services", lambda: services.run(ctx, st.store))
        st.sample_sets = self.stage("synthesis", lambda: synthesis.run(ctx, st.corpus, st.services)) or []
        heldout = st.sets("heldout")
        no_heldout = None if heldout else "no held-out split (bring one with --input)"
        before = self.stage(
            "baseline eval",
            lambda: evaluation.run(ctx, "before", models.base(st.store), heldout, st.store, st.services),
            missing=no_heldout,
        )
        st.evaluations = list(before or [])
        st.checkpoint = self.stage("training", lambda: training.run(ctx, st.sets("train"), st.store, st.services))
        after = self.stage(
            "final eval",
            lambda: evaluation.run(ctx, "after", models.trained, heldout, st.store, st.services),
            missing=no_heldout,
        )
        st.evaluations += after or []
        st.gains = evaluation.gains(before or [], after or [])
        st.transfer = (
            self.stage(
                "transfer probe",
                lambda: evaluation.transfer(ctx, models.base(st.store), models.trained, st.checkpoint.uri),
                missing="transfer_clips is 0" if self.config.transfer_clips == 0 else None,
            )
            or {}
        )
        served_set = (heldout or st.sets("train"))[0]
        st.served = self.stage(
            "serve and query", lambda: serving.run(ctx, st.checkpoint, served_set, st.store, st.services)
        )
        self.stage("report", self.report)

    def report(self) -> tuple[Path, str]:
        own = self.state.stages[-1]
        if own.name == "report":  # writing it is the stage's last act: its own row says done
            own.status = "ok"
        self.state.models_loaded = list(self.ctx.models.loads)
        self.state.report = write_report(self.state, Storage(self.state.store), self.out / "report")
        return self.state.report, str(self.state.report)

    # --- driver -------------------------------------------------------------------------------

    def run(self) -> int:
        def terminate(signum: int, _frame: object) -> None:
            self.ctx.sup.interrupted = signum
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGTERM (a scheduler, `kill`) must stop the children too, exactly like Ctrl-C. SIGINT
        # stays ignored where the run was started with it ignored (a background job).
        stops = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            stops.append(signal.SIGINT)
        previous = {sig: signal.signal(sig, terminate) for sig in stops}
        try:
            self.stages()
        except StageError as exc:
            say(f"\nmvp run FAILED: {exc}")
            self._try_report()
            return 1
        except KeyboardInterrupt:
            say("\nmvp run interrupted; stopping everything it started")
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.ctx.sup.stop_all()
            self.ctx.models.close()
        self._print_table()
        say(f"\nreport: {self.state.report}")
        return 0

    def _print_table(self) -> None:
        """The held-out table (each checkpoint on each task, with its chance and interval) and each
        task's paired after - before, on the console."""
        evaluations = self.state.evaluations
        if not evaluations:
            return
        keys = ("mean_reward", "exact", "selection", "ordering", "format", "chance_exact")
        say(f"\nheld-out ({evaluations[0].metrics['samples']} samples per task; 95% bootstrap intervals)")
        say(f"  {'checkpoint':<20}" + "".join(f"{k:>13}" for k in keys) + f"{'exact 95% CI':>18}")
        for e in evaluations:
            ci = "[{:.3f}, {:.3f}]".format(*e.metrics["exact_ci"])
            say(f"  {e.name:<20}" + "".join(f"{e.metrics[k]:>13.3f}" for k in keys) + f"{ci:>18}")
        for gain in self.state.gains:
            g = gain.exact
            say(f"  {gain.task}: exact after - before {g['mean']:+.3f} [{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (paired)")

    def _try_report(self) -> None:
        if self.state.store is None:
            return
        try:
            self.report()
        except Exception:
            log.debug("report after failure could not be written", exc_info=True)
