"""`python -m bounded`: the `bounded` command line."""

from bounded.cli import main

if __name__ == "__main__":
    main()
