"""`python -m llava_eval ...` (and `torchrun ... -m llava_eval run ...`) runs the command line."""

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process (served image encoding) imports the main module
    main()
