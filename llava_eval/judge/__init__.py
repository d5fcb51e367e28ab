"""The LLM judge of the judged tasks (LLaVA-Bench (In-the-Wild), MM-Vet, any task declaring a `judge`
protocol): configuration, an OpenAI-compatible client with back-off, an SQLite verdict cache, and the judging
and rescoring of a run directory."""
