#!/usr/bin/env python3
"""Run the acmix-deploy command line from a checkout: `python cli.py --help`."""

from acmix_deploy.cli import main

if __name__ == "__main__":
    main()
