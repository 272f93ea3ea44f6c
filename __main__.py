"""``python -m hcm``: the same command line as the ``hcm`` script."""

from hcm.cli import app

app(prog_name="hcm")
