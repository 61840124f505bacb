"""``python -m pycharrnn``: the command line."""

from .cli import main

raise SystemExit(main())
