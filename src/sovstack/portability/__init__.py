"""Exit rights: a whole deployment exported to an open, verifiable BagIt bag, and imported anywhere."""
