"""Model backends behind `--model`: the registry (`registry.py`: a spec -> the backend that opens it), the
entry a backend module registers (`entry.py`), and one adapter module per backend (`llava.py`: LLaVA-1.5).
"""
