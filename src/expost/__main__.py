"""``python -m expost``: the same as the ``expost`` command."""

from .cli import entry

if __name__ == "__main__":
    entry()
