"""Referrals service: Closed-loop referrals, automatic referrals from the schedule, and the ministry referral feed."""
