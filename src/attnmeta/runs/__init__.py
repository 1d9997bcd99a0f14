"""Where a config becomes a run: config schemas and reader, config -> objects, the run
folder, and one module per run kind (supervised episodes, meta-RL, the sinusoid demo)."""
