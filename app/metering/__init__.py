"""Token and money arithmetic: the only place it happens. No Flask imports here."""
