"""Runtime shared by the four PMTCT services: one envelope, one outbox, one consumer loop."""
