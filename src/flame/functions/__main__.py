"""``python -m flame.functions``: the service of function sessions, started by an executor."""

from ._service import main

if __name__ == "__main__":
    main()
