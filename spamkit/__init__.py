"""spamkit: a Bayesian spam classifier and training toolkit for a mail server.

Data flow: bytes -> spamkit.message.parse_message -> spamkit.tokenizer -> 8-byte hashes
-> spamkit.store (counts) -> spamkit.bayes (chi-square probability) -> verdict.
spamkit.learn writes counts; spamkit.cli is the `spamkit` command.
"""

__version__ = "0.1.0"
