"""`python -m dlcli ...`, as torchrun and srun start it."""

from .cli import main

main()
