"""Enrolment service: The front door for partner clinics' EMRs: mother events in, client identity, PII kept in this schema only."""
