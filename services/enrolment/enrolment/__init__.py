"""Enrolment service: the front door for partner clinics' EMRs.

Mother events in, client identity out, personal data kept (encrypted) in this schema only.
"""
