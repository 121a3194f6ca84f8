"""Language models against a proxy, scored by a gold reward: assets, models, tasks, optimizers."""
