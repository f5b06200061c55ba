"""MVP-Train orchestration: the main job (`mvp run`), GRPO training and evaluation."""
