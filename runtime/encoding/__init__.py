"""Text to model inputs: the one tokenizer (text), vocabulary (vocab) and encoders (features)."""
