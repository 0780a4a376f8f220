from spamkit.cli import run

run()
