"""The experiment harness: data sets, models, regimes, training, evaluation and storage."""
