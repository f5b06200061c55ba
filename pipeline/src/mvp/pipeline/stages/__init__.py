"""The stages of `mvp run`, in order: store, corpus, services, synthesis, evaluation (before),
training, evaluation (after), transfer probe, serving. Each is a function of the run's ``Context``
and the typed results it needs (``mvp.pipeline.artifacts``), returning its result and a one-line
summary; none imports the runner or another stage."""
