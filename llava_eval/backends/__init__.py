"""Model backends behind `--model`: the registry (`registry.py`: a spec -> the backend that opens it), the
entry a backend module registers (`entry.py`), and one adapter module per backend (`llava.py`: LLaVA-1.5;
`served.py`: a model behind an OpenAI-compatible endpoint), with what the served one shares (`exact_inputs.py`:
the paper's images and prompts; `inflight.py`: concurrent requests; `chat_templates/`: the Jinja templates).
"""
