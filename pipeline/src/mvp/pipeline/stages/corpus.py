"""The corpus: your videos, or procedural train and held-out videos (held-out from distant seeds)
uploaded to the store."""

from __future__ import annotations

from mvp.common.settings import StoreSettings
from mvp.common.storage import Storage
from mvp.pipeline.artifacts import Corpus
from mvp.pipeline.context import Context


def run(ctx: Context, store: StoreSettings) -> tuple[Corpus, str]:
    config = ctx.config
    if config.input:
        return (
            Corpus(inputs={"train": config.input}),
            f"using your corpus {config.input} (no held-out split: bring one with --input)",
        )
    from mvp.common.procedural import write_corpus
    from mvp.common.seeds import corpus_seed

    storage = Storage(store)
    n_held = max(1, config.videos // 4)
    n_train = config.videos - n_held
    # held-out videos use seeds far from the training ones: never seen in training
    counts = {"train": n_train, "heldout": n_held}
    inputs = {}
    uploaded = 0
    for split, count in counts.items():
        paths = write_corpus(
            ctx.out / "corpus" / split, count, seed=corpus_seed(config.seed, split, count), seconds=config.video_seconds
        )
        prefix = f"s3://{config.bucket}/corpus/{split}"
        existing = (
            {o.uri.rsplit("/", 1)[-1]: o.size for o in storage.list(prefix + "/")}
            if storage.bucket_exists(config.bucket)
            else {}
        )
        for path in paths:
            if existing.get(path.name) != path.stat().st_size:
                storage.put_file(str(path), f"{prefix}/{path.name}", "video/mp4")
                uploaded += 1
        inputs[split] = prefix + "/"
    corpus = Corpus(inputs=inputs, videos=counts, uploaded=uploaded)
    return corpus, f"{n_train} train + {n_held} held-out procedural videos ({uploaded} uploaded, rest reused)"
