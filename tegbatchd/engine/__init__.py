"""The job engine: the states of jobs, stages, intents and batches (`states`), the pure decision of what
a job does next (`decide`), the one loop that carries it out for batch mode and `--now` (`loop`), and the
job-level operations built on it (`retry`, `outcome`). See docs/architecture.md."""
