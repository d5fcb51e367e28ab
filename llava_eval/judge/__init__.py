"""The GPT judge of LLaVA-Bench (In-the-Wild) and MM-Vet: configuration, an OpenAI-compatible client with
back-off, an SQLite verdict cache, and the judging of a run directory."""
