"""The analyst console: a web application and JSON API over the SOAR store (a thin adapter, no business logic).

    web        the app (FastAPI/Starlette + Jinja2): security headers, authentication, CSRF, error pages
    pages      HTML pages and forms          api       the JSON API (OpenAPI at /api/openapi.json)
    queries    tenant-scoped reads           actions   tenant-scoped, role-checked, audited writes through
                                                        TicketStore, Runner.decide and soar.verdicts
    auth       users (argon2id), API tokens, sessions, CSRF tokens, login rate limit
    live       the store's change feed behind the server-sent events of the live queue
    health     consumer lag, worker metrics, store figures       audit  the audit log
    redact     secrets masked before anything reaches a page     views  template filters
    cli        `mdr console`, `mdr users ...`
"""
