"""`python -m llava_eval ...` (and `torchrun ... -m llava_eval run ...`) runs the command line."""

from .cli import main

main()
