"""The MVP fine-grained reward: a pure library (``mvp.reward.core``) and the services that wrap it."""
