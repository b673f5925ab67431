"""Follow-up service: HIV-exposed infant schedule, due and overdue follow-ups, Mentor Mother worklists."""
