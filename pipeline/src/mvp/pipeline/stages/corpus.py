"""The corpus: your videos, or procedural train and held-out videos (held-out from distant seeds)
uploaded to the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvp.pipeline.run import Pipeline


def run(job: Pipeline) -> str:
    from mvp.common.storage import Storage

    storage = Storage(job.state.store)
    if job.config.input:
        job.state.splits = {"train": {"input": job.config.input}}
        return f"using your corpus {job.config.input} (no held-out split: bring one with --input)"
    from mvp.common.procedural import write_corpus
    from mvp.common.seeds import corpus_seed

    n_held = max(1, job.config.videos // 4)
    n_train = job.config.videos - n_held
    local = job.out / "corpus"
    # held-out videos use seeds far from the training ones: never seen in training
    splits = {
        "train": (corpus_seed(job.config.seed, "train", n_train), n_train),
        "heldout": (corpus_seed(job.config.seed, "heldout", n_held), n_held),
    }
    uploaded = 0
    for split, (seed, count) in splits.items():
        paths = write_corpus(local / split, count, seed=seed, seconds=job.config.video_seconds)
        prefix = f"s3://{job.config.bucket}/corpus/{split}"
        existing = (
            {o.uri.rsplit("/", 1)[-1]: o.size for o in storage.list(prefix + "/")}
            if storage.bucket_exists(job.config.bucket)
            else {}
        )
        for path in paths:
            if existing.get(path.name) != path.stat().st_size:
                storage.put_file(str(path), f"{prefix}/{path.name}", "video/mp4")
                uploaded += 1
        job.state.splits[split] = {"input": prefix + "/", "videos": count}
    return f"{n_train} train + {n_held} held-out procedural videos ({uploaded} uploaded, rest reused)"
