"""The transformers backend: one generation thread that batches concurrent requests.

Requests queue up; the thread takes the first and, for ``batch_wait_ms``, every compatible one
behind it (same sampling parameters, no per-request seed) up to ``max_batch_size`` sequences,
left-pads them into one ``generate`` call, and streams each new token back to its request's
asyncio queue as it is produced. A request with a ``seed`` runs alone after seeding, so its output
is reproducible whatever else is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from mvp.inference import metrics
from mvp.inference.api import Admission
from mvp.model.policy import Encoded, Policy

log = logging.getLogger(__name__)


@dataclass
class GenRequest:
    enc: Encoded
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrival: float = field(default_factory=time.perf_counter)
    # set when the client went away: a queued request is dropped, a running batch whose requests
    # are all cancelled stops generating
    cancelled: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple:
        return (self.temperature, self.top_p, self.max_tokens)

    def emit(self, event: tuple) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class _Streamer:
    """transformers' streamer protocol: put() gets the prompt once, then one token per sequence."""

    def __init__(self, slots: list[tuple[GenRequest, int]], model_name: str, eos_id: int) -> None:
        self.slots = slots
        self.eos_id = eos_id
        self.model_name = model_name
        self.started = False
        self.last: float | None = None
        self.done = [False] * len(slots)

    def put(self, value: torch.Tensor) -> None:
        if not self.started:
            self.started = True  # the prompt
            return
        now = time.perf_counter()
        if self.last is None:
            seen: set[int] = set()
            for req, _ in self.slots:
                if id(req) not in seen:
                    seen.add(id(req))
                    metrics.TTFT.labels(self.model_name).observe(now - req.arrival)
        else:
            metrics.ITL.labels(self.model_name).observe(now - self.last)
        self.last = now
        for column, token in enumerate(value.view(-1).tolist()):
            if self.done[column]:
                continue
            if token == self.eos_id:
                self.done[column] = True  # what follows is padding
                continue
            req, index = self.slots[column]
            req.emit(("token", index, token))

    def end(self) -> None:
        return None


class _AllCancelled(StoppingCriteria):
    """Stops a batch once every request in it was cancelled (their clients disconnected)."""

    def __init__(self, batch: list[GenRequest]) -> None:
        self.batch = batch

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        stop = all(r.cancelled.is_set() for r in self.batch)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    def __init__(
        self, policy: Policy, model_name: str, max_batch_size: int, batch_wait_ms: float, admission: Admission
    ) -> None:
        self.policy = policy
        self.model_name = model_name
        self.admission = admission
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.queue: queue.Queue[GenRequest | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="generate", daemon=True)
        self.thread.start()

    def submit(self, request: GenRequest) -> None:
        """Queues an admitted request (``Admission.enter``); it leaves the admission count when its
        batch starts."""
        self.queue.put(request)

    def stop(self) -> None:
        self.queue.put(None)

    def _run(self) -> None:
        pending: list[GenRequest] = []
        while True:
            first = pending.pop(0) if pending else self.queue.get()
            if first is None:
                return
            batch = [first]
            if first.seed is None:
                deadline = time.perf_counter() + self.batch_wait_s
                while sum(r.n for r in batch) < self.max_batch_size:
                    try:
                        nxt = self.queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                    except queue.Empty:
                        break
                    if nxt is None:
                        pending.append(nxt)  # type: ignore[arg-type]
                        break
                    fits = sum(r.n for r in batch) + nxt.n <= self.max_batch_size
                    if nxt.seed is None and nxt.key() == first.key() and fits:
                        batch.append(nxt)
                    else:
                        pending.append(nxt)
            self.admission.leave(len(batch))
            dropped = [r for r in batch if r.cancelled.is_set()]  # their clients left while they waited
            batch = [r for r in batch if not r.cancelled.is_set()]
            if dropped:
                metrics.SUCCESS.labels(self.model_name, "abort").inc(len(dropped))  # vLLM's label for it
            if not batch:
                continue
            metrics.RUNNING.labels(self.model_name).inc(len(batch))
            try:
                self._generate(batch)
            except Exception as exc:  # a failed batch fails its requests, never the server
                log.exception("generation failed")
                for req in batch:
                    req.emit(("error", f"generation failed: {exc}"))
            finally:
                metrics.RUNNING.labels(self.model_name).dec(len(batch))

    @torch.no_grad()
    def _generate(self, batch: list[GenRequest]) -> None:
        p = self.policy
        slots = [(req, i) for req in batch for i in range(req.n)]
        encs = [req.enc for req, _ in slots]
        width = max(len(e.input_ids) for e in encs)
        ids = torch.full((len(slots), width), p.pad_id, dtype=torch.long)
        mask = torch.zeros((len(slots), width), dtype=torch.long)
        for row, e in enumerate(encs):
            ids[row, width - len(e.input_ids) :] = e.input_ids
            mask[row, width - len(e.input_ids) :] = 1
        kwargs: dict = {}
        if any(len(e.image_grid_thw) for e in encs):
            kwargs["pixel_values"] = torch.cat([e.pixel_values for e in encs if len(e.image_grid_thw)])
            kwargs["image_grid_thw"] = torch.cat([e.image_grid_thw for e in encs if len(e.image_grid_thw)])
            kwargs["mm_token_type_ids"] = p.token_types(ids)  # M-RoPE positions, as the processor gives
        first = batch[0]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        greedy = first.temperature == 0
        streamer = _Streamer(slots, self.model_name, p.eos_id)
        out = p.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=first.max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else first.temperature,
            top_p=None if greedy else first.top_p,
            top_k=None if greedy else 0,
            eos_token_id=p.eos_id,
            pad_token_id=p.pad_id,
            suppress_tokens=p.suppress_ids,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_AllCancelled(batch)]),
            **kwargs,
        )
        completions = out[:, width:]
        lengths = p.completion_mask(completions).sum(1).long().tolist()
        for req in batch:
            rows = [k for k, (r, _) in enumerate(slots) if r is req]
            results = []
            for k in rows:
                tokens = completions[k, : lengths[k]].tolist()
                finished = "stop" if tokens and tokens[-1] == p.eos_id else "length"
                if finished == "stop":
                    tokens = tokens[:-1]
                results.append((tokens, finished))
            metrics.PROMPT_TOKENS.labels(self.model_name).inc(len(req.enc.input_ids))
            # the end-of-sequence token is a generated token (vLLM counts it too)
            generated = sum(len(t) + (finished == "stop") for t, finished in results)
            metrics.GENERATION_TOKENS.labels(self.model_name).inc(generated)
            req.emit(("done", results))
