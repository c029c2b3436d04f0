"""SOAR: tickets (one per incident), YAML playbooks, notification and response connectors, SLA escalation.

    actions     Soar: the one way in from the core's adapters: handle(incidents) opens/updates tickets and starts
                playbooks (idempotent by incident id); tick(now) escalates and resumes due playbook runs
    clock       the streaming workers' SOAR clock: tick on a timer in the one worker holding a lease in the store
    tickets     TicketStore (SQLAlchemy 2; SQLite by default, PostgreSQL via MDR_DB_URL); models, db: schema,
                engines, Alembic upgrade on open (pipeline/migrations)
    playbooks   playbook model, loader and validation (file:line), trigger matching; templates: Jinja2 sandbox
    runner      persistent playbook runs on worker threads (runs: claim/lease/save; steps: the actions)
    sla         response times per priority, escalation once per level
    connectors  DingTalk, WeCom, Slack, e-mail, webhook, TheHive, Jira, response API, log file
    verdicts    verdicts of closed tickets to a JSONL file and registered sinks (mdr.verdicts)
    cli         `mdr tickets ...` and `mdr playbooks ...`
"""
