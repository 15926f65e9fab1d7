"""Training: raw IMDB review text to an evaluated Keras model directory."""
