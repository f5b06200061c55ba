"""Shared infrastructure of every MVP-Train component: settings, logging, metrics, storage and the
gRPC server bootstrap. Nothing here knows about MVP itself; the sample schema is in ``mvp.v1``."""
