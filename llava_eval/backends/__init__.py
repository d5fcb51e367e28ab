"""Model backends behind `--model`: the registry (`registry.py`: a spec -> the backend that opens it), the
entry a backend module registers (`entry.py`), and one adapter module per backend (`llava.py`: LLaVA-1.5;
`served.py`: a model behind an OpenAI-compatible endpoint; `vllm_engine.py`: vLLM's offline engine), with what
those two share (`exact_inputs.py`: the paper's images and prompts; `chat_templates/`: the Jinja templates) and
the served one's concurrency (`inflight.py`).
"""
