"""OpenAI-compatible serving of MVP-trained Video LLMs."""
