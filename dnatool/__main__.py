"""`python -m dnatool` (also what `torchrun -m dnatool` runs)."""

from dnatool.cli.main import main

if __name__ == "__main__":
    main()
