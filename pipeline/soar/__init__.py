"""SOAR: tickets (one per incident), YAML playbooks, notification and response connectors, SLA escalation.

pipeline.soar.actions    act(incident) / Soar: the entry point the core's adapters call
pipeline.soar.tickets    TicketStore (SQLAlchemy 2; SQLite by default, PostgreSQL via MDR_DB_URL)
pipeline.soar.playbooks  playbook model, loader and validation, trigger matching
pipeline.soar.runner     persistent playbook runs on a thread pool (steps in pipeline.soar.steps)
pipeline.soar.sla        response times per priority, escalation
pipeline.soar.connectors DingTalk, WeCom, Slack, e-mail, webhook, TheHive, Jira, response API, log file
pipeline.soar.cli        `mdr tickets ...` and `mdr playbooks ...`
"""
