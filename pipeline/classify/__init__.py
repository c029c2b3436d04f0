"""The noise classifier: learn from labeled alerts and analyst verdicts, suppress noise with a recall guarantee.

    features.py   the versioned feature set (FEATURE_VERSION) and the batch extractor
    content.py    payload content features (token classes, character n-grams) that carry over to unseen rules
    generalize.py rule families, the threshold for unseen rules, leave-rule-family-out
    history.py    streaming state: per tenant+source history, per tenant rule frequencies (plain mappings)
    train.py      labeled data (labels.jsonl, verdicts.jsonl), deterministic split, model selection, threshold
    metrics.py    the core's dedup view, the split-conformal recall threshold, noise / FN rates
    model.py      NoiseClassifier (the core's `classifier=` hook) and its manifest on disk
    scope.py      what a model may judge (known product, rules and feature ranges)
    guardrails.py what it may never suppress (P1/P2 use cases, intel hits, unblocked exploits)
    explain.py    per-alert feature contributions (linear: exact; trees: Saabas path attribution)
    evaluate.py   held-out figures beside the CRS anomaly-score baseline, report and figures (plots.py)
    registry.py   active / shadow models, the promotion gate, the shadow log
    retrain.py    `mdr model retrain|promote` from the ticket store's alert verdicts
    drift.py      per-tenant out-of-scope share and score distribution, notices
    cli.py        `mdr model train|evaluate|retrain|promote|status`
"""
