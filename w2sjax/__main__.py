from w2sjax.cli.main import entry

entry()
