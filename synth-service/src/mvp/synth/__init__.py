"""MVP sample synthesis: decode -> de-duplicate -> mask -> hard negatives -> prompt -> write."""
