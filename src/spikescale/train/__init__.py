"""Training: objectives (decoders + losses), regularisers, the trainer and metrics."""
