from spamkit.cli import main

main()
