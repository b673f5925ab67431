"""`make bench` (`python -m bench`): the platform measured against the raw limits of this machine."""
