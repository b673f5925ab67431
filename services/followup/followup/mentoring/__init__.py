"""The Mentor Mothers' own work, in the follow-up service: the staff table, caseloads, the
Mentor Mother's worklist, and what she records (`POST /v1/contacts`): contacts, group sessions,
tracing attempts, disclosure, partner and family (index) testing.

It lives in follow-up because follow-up owns what it acts on: every mother's and infant's case at
its facility, their schedule (the worklist) and their lost-to-follow-up state, which a tracing
outcome changes (docs/architecture.md, "The Mentor Mothers' work"). The package has the service's
shape: models, rules (pure), repository (all SQL), intake, stream, queries, schemas, endpoints.
"""
