"""Event handlers of the referrals service: one small function per consumed event type."""

from pmtct_events import Event
from servicekit.consumer import Handler

HANDLERS: dict[type[Event], Handler] = {}
