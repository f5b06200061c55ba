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

from mvp.common.storage import Storage
from mvp.pipeline.config import RunConfig
from mvp.pipeline.stages import corpus, evaluation, services, serving, store, synthesis, training
from mvp.pipeline.state import RunState, StageRecord
from mvp.pipeline.supervisor import StageError, Supervisor

log = logging.getLogger(__name__)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Pipeline:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.out = config.out.resolve()
        self.state = RunState(config)
        self.sup = Supervisor(self.out / "logs")
        self.served_name = "mvp-tiny" if config.model == "tiny" else "mvp-smol"

    def stage(self, name: str, func: Callable[[], str | None], *, missing: str | None = None) -> None:
        record = StageRecord(name)
        self.state.stages.append(record)
        say(f"\n== [{len(self.state.stages)}] {name}")
        if missing:
            record.status, record.detail = "skipped", missing
            say(f"   skipped: {missing}")
            return
        self.sup.check_interrupted()
        record.status = "running"
        t0 = time.perf_counter()
        try:
            record.detail = func() or ""
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

    def samples_uri(self, split: str) -> str:
        return self.state.splits[split]["output"] + "/samples.jsonl"

    def report(self) -> str:
        from mvp.pipeline.report import write_report

        own = self.state.stages[-1]
        if own.name == "report":  # writing it is the stage's last act: its own row says done
            own.status = "ok"
        path = write_report(self.state, Storage(self.state.store), self.out / "report")
        self.state.artifacts["report"] = str(path)
        return str(path)

    # --- driver -------------------------------------------------------------------------------

    def run(self) -> int:
        def terminate(signum: int, _frame: object) -> None:
            self.sup.interrupted = signum
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGTERM (a scheduler, `kill`) must stop the children too, exactly like Ctrl-C. SIGINT
        # stays ignored where the run was started with it ignored (a background job).
        stops = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            stops.append(signal.SIGINT)
        previous = {sig: signal.signal(sig, terminate) for sig in stops}
        try:
            self.stage("store", lambda: store.run(self))
            self.stage("corpus", lambda: corpus.run(self))
            self.stage("services", lambda: services.run(self))
            self.stage("synthesis", lambda: synthesis.run(self))
            no_heldout = None if "heldout" in self.state.splits else "no held-out split (bring one with --input)"
            self.stage("baseline eval", lambda: evaluation.before(self), missing=no_heldout)
            self.stage("training", lambda: training.run(self))
            self.stage("final eval", lambda: evaluation.after(self), missing=no_heldout)
            no_transfer = "transfer_clips is 0" if self.config.transfer_clips == 0 else None
            self.stage("transfer probe", lambda: evaluation.transfer(self), missing=no_transfer)
            self.stage("serve and query", lambda: serving.run(self))
            self.stage("report", self.report)
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
            self.sup.stop_all()
        self._print_table()
        say(f"\nreport: {self.state.artifacts.get('report')}")
        return 0

    def _print_table(self) -> None:
        """The held-out table (each checkpoint on each task, with its chance and interval) and each
        task's paired after - before, on the console."""
        if not self.state.evals:
            return
        keys = ("mean_reward", "exact", "selection", "ordering", "format", "chance_exact")
        say(
            f"\nheld-out ({next(iter(self.state.evals.values()))['samples']} samples per task; 95% bootstrap intervals)"
        )
        say(f"  {'checkpoint':<20}" + "".join(f"{k:>13}" for k in keys) + f"{'exact 95% CI':>18}")
        for name, r in self.state.evals.items():
            ci = "[{:.3f}, {:.3f}]".format(*r["exact_ci"])
            say(f"  {name:<20}" + "".join(f"{r[k]:>13.3f}" for k in keys) + f"{ci:>18}")
        for task, gain in self.state.gains.items():
            g = gain["exact"]
            say(f"  {task}: exact after - before {g['mean']:+.3f} [{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (paired)")

    def _try_report(self) -> None:
        if self.state.store is None:
            return
        try:
            self.report()
        except Exception:
            log.debug("report after failure could not be written", exc_info=True)
