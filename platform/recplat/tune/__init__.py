"""Ray Tune over catalog jobs: a profile's `tune:` searches (space.py), one Ray Train V2 driver per
trial (trial.py), the Tuner and its resume (experiment.py), the sweep's table and plots (results.py)."""
