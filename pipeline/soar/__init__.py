"""SOAR: tickets (one per incident), YAML playbooks, notification and response connectors, SLA escalation.

    actions     act(incident) / Soar: the entry point the core's adapters call (act, act_many, submit, tick)
    tickets     TicketStore (SQLAlchemy 2; SQLite by default, PostgreSQL via MDR_DB_URL); models, db: schema,
                engines, Alembic upgrade on open (pipeline/migrations)
    playbooks   playbook model, loader and validation (file:line), trigger matching; templates: Jinja2 sandbox
    runner      persistent playbook runs on worker threads (runs: claim/lease/save; steps: the actions)
    sla         response times per priority, escalation once per level
    connectors  DingTalk, WeCom, Slack, e-mail, webhook, TheHive, Jira, response API, log file
    verdicts    verdicts of closed tickets to a JSONL file and registered sinks (mdr.verdicts)
    cli         `mdr tickets ...` and `mdr playbooks ...`
"""
