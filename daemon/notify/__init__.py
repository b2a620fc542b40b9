"""Reaching on-call: receivers, templates, the durable outbox and its delivery
worker, the notification policy and escalation.

    incident changes -> policy (listener + timers) -> outbox rows (same transaction)
                     -> deliverer (daemon only) -> webhook / Slack / PagerDuty / email
"""
