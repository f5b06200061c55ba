"""The main job (`mvp run`): one module per stage under ``stages/``, driven by ``run.Pipeline``."""
