"""The stages of `mvp run`, in order: store, corpus, services, synthesis, evaluation (before),
training, evaluation (after), serving; each ``run(job) -> str`` returns its one-line result."""
