"""The folder sweep (LearnAsSpam/LearnAsHam over Maildir and IMAP): not built yet, see issue 4."""
