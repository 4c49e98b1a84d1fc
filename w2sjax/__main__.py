from w2sjax.cli import entry

entry()
