"""`python -m acmix_deploy.cli ...` (also what `torchrun -m acmix_deploy.cli train ...` runs)."""

from acmix_deploy.cli import main

if __name__ == "__main__":
    main()
