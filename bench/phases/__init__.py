"""The benchmark's phases: each a function of the run's Context that returns its bench.json fields."""
