"""Meta-training of learned optimizers: unrolls, gradient estimators, the outer loop, evaluation."""
